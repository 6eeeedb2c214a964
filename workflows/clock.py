"""The clock a certificate's workflow decides by, guarded against a stale reading.

With the sticky cache on, the SDK (temporalio 1.35, its Rust core) can run workflow code with
the previous workflow task's time. A query dispatched straight to a worker carries the
history as it is when the worker picks it up; if a timer fired or a signal arrived after the
query was dispatched, the core applies those events and runs the workflow on them with the
clock of the last task it saw, then keeps the run cached and sends the commands that run
produced as the answer to the real workflow task that follows. A replay, with the real task's
time, then decides otherwise, and the history never replays again (found with
`tools/chaos.py --cached-workflows 500`; reproduced by `tests/e2e/test_stale_clock.py`).

A real workflow task always starts later than the one before it, so a new point in the
history read at the same time (or earlier) can only be such a stale run: `read` raises, the
SDK fails that activation and evicts the run (for a query, the query fails; its caller asks
again), and the workflow task that follows replays the history with the right time. Pure,
so it is tested on its own (`tests/unit/test_clock.py`).
"""

from __future__ import annotations

from datetime import datetime

# In every refusal's message: how a caller whose query met one knows to ask again.
STALE_CLOCK = "stale run of the SDK's workflow cache"


class StaleClockError(RuntimeError):
    """Not a failure of the certificate: the SDK retries the task from the history."""


class TaskClock:
    def __init__(self) -> None:
        self._history_length: int | None = None
        self._now: datetime | None = None

    def read(self, now: datetime, history_length: int, replaying: bool) -> datetime:
        """`now`, once it is known to be this workflow task's own time."""
        if history_length != self._history_length:
            if not replaying and self._now is not None and now <= self._now:
                raise StaleClockError(
                    f"workflow clock {now.isoformat()} at history event {history_length} is not later than "
                    f"{self._now.isoformat()}, read at event {self._history_length}: a {STALE_CLOCK}; the "
                    "task is retried from the history")
            self._history_length = history_length
        # The latest time read, also at an unchanged history length: replaying a local activity
        # resolved in a later task, the SDK reports that task's time with the earlier task's
        # history length, and a stale run at the time of that later task must still be refused.
        if self._now is None or now > self._now:
            self._now = now
        return now

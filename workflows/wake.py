"""The one timer a certificate sleeps on until its next deadline.

Activity moves a certificate's deadline later, and most certificates receive activity far more
often than they fall due. Waiting with `wait_condition(..., timeout=...)` would cancel the
running timer and start another for every event: two history events and a server timer
operation each time. Instead the timer that is running is kept while the deadline is no
earlier than it; when it fires, the run loop asks the rules again and, if activity moved the
deadline, arms a new timer for it. A deadline brought earlier (a shorter policy, a follow-up)
gets a timer of its own at once.

A timer is never cancelled: one overtaken by an earlier deadline is left to fire, which costs
an empty workflow task, while a cancel is a command the time-skipping test server refuses
when the timer fired during the same workflow task (it then never hands the run another
task), so the engine's own tests could not run a long history.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow

# A deadline already reached is acted on by the rules, never waited for; this only keeps a
# timer's duration positive.
SHORTEST_WAIT = timedelta(milliseconds=1)


class WakeTimer:
    def __init__(self) -> None:
        self._fired: asyncio.Task[None] | None = None
        self._until: datetime | None = None

    def arm(self, until: datetime, now: datetime, summary: str) -> None:
        """Be woken no later than `until`: keeps the running timer when it fires no later."""
        if self._fired is not None and not self._fired.done() and self._until is not None and self._until <= until:
            return
        self._until = until
        self._fired = asyncio.create_task(workflow.sleep(max(until - now, SHORTEST_WAIT), summary=summary))

    def rang(self) -> bool:
        return self._fired is not None and self._fired.done()

    def consume(self) -> None:
        """After a wait: a timer that fired is spent, so the next wait arms a new one."""
        if self.rang():
            self._fired, self._until = None, None

"""Roll-outs: telling every open certificate about a new policy version or a declared outage.

The certificates come from the registry and the ledger (the system of record), not from
Temporal visibility, which is eventually consistent and would miss one started a second ago.
They are taken into the roll-out's target list in the database (oldest clock, so oldest
deadline, first: a shortened policy notifies the longest-inactive first) and each is marked
once told, so an interrupted roll-out resumes with the others and tells no one twice. The
operator sets the rate (a token bucket); one process at a time runs a roll-out (an advisory
lock held by its database connection, released if the process dies).

Why no open certificate is missed: the version (or outage) is committed before the roll-out
starts, and a review reads the registry when it starts. So a certificate whose review starts
after the commit has it already; one whose review started before it is in the registry or
the ledger, and is taken into the target list. The list is taken again whenever it runs dry,
after a short pause (`SETTLE`) that covers a review started just before the commit whose
first event reaches the ledger a moment later; the roll-out ends when nothing new appears.

What a crash costs: a signal sent but not yet marked (at most `CONCURRENCY` of them) is sent
again on resume; the signal only makes the certificate read the registry again, so a repeat
changes nothing. An interruption (Ctrl-C, SIGTERM) lets the signals in flight finish and be
marked first, so then nobody is told twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient
from icr.domain.models import RolloutKind, RolloutRecord

log = structlog.get_logger(__name__)

BATCH = 500
CONCURRENCY = 16
SETTLE = 2.0  # seconds
DEFAULT_RATE = 100.0  # signals per second
RECORD_EVERY = 5.0  # seconds between progress counts written to the roll-out's row


class RolloutBusy(Exception):
    """Another process is running this roll-out."""

    def __init__(self, rollout_id: int) -> None:
        super().__init__(f"roll-out {rollout_id} is being run by another process; wait for it, or stop it")
        self.rollout_id = rollout_id


class TokenBucket:
    """At most `rate` takes a second on average, with bursts of at most a tenth of a second's worth."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("the rate must be more than 0")
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
        self.tokens = 1.0
        self.last = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass(frozen=True)
class RolloutProgress:
    rollout_id: int
    done: int
    total: int
    per_second: float  # measured in this run
    seconds_left: float | None
    finished: bool = False


ProgressListener = Callable[[RolloutProgress], None]


def _now() -> datetime:
    return datetime.now(UTC)


async def run_rollout(store: Store, certificates: CertificateClient, rollout: RolloutRecord, *,
                      actor: str, rate: float | None = None,
                      on_progress: ProgressListener | None = None,
                      settle: float = SETTLE, batch: int = BATCH) -> RolloutRecord:
    """Tell the roll-out's remaining certificates, at `rate` a second (default: the rate it was
    started with). Returns the roll-out as it finished; on cancellation (Ctrl-C) records how
    far it got and re-raises. Raises RolloutBusy when another process is running it."""
    signal: Callable[[str], Awaitable[bool]] = (
        certificates.policy_changed if rollout.kind == RolloutKind.POLICY else certificates.outages_changed)
    bucket = TokenBucket(rate or rollout.rate)
    gate = asyncio.Semaphore(CONCURRENCY)
    rollout_id = rollout.rollout_id
    async with store.rollout_lock(rollout_id) as held:
        if not held:
            raise RolloutBusy(rollout_id)
        found = await store.rollout(rollout_id)
        assert found is not None
        current: RolloutRecord = found
        if current.status in ("finished", "superseded"):
            return current
        if current.done or current.status == "interrupted":
            current = await store.record_rollout_progress(rollout_id, _now(), "running", actor)
        started = recorded = time.monotonic()
        sent_here = 0
        in_flight: set[asyncio.Task[None]] = set()

        async def tell(case_reference: str) -> None:
            nonlocal sent_here
            try:
                running = await signal(case_reference)
                await store.mark_reached(rollout_id, case_reference, running, _now())
                sent_here += 1
                current.done += 1
                report()
            finally:
                gate.release()

        def report(finished: bool = False) -> None:
            if on_progress is None:
                return
            elapsed = time.monotonic() - started
            per_second = sent_here / elapsed if elapsed > 0 else 0.0
            left = current.total - current.done
            on_progress(RolloutProgress(rollout_id, current.done, current.total, per_second,
                                        left / per_second if per_second > 0 else None, finished))

        try:
            await store.add_rollout_targets(current)
            current = await store.record_rollout_progress(rollout_id, _now())
            report()
            while True:
                refs = await store.next_rollout_targets(rollout_id, batch)
                if not refs:
                    await asyncio.sleep(settle)
                    if await store.add_rollout_targets(current) == 0:
                        break
                    current = await store.record_rollout_progress(rollout_id, _now())
                    continue
                tasks = []
                for ref in refs:
                    await bucket.take()
                    await gate.acquire()
                    task = asyncio.create_task(tell(ref))
                    tasks.append(task)
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    if time.monotonic() - recorded > RECORD_EVERY:  # for `rollout list` meanwhile
                        recorded = time.monotonic()
                        await store.record_rollout_progress(rollout_id, _now())
                # asyncio.wait, unlike gather, leaves the signals running if we are cancelled.
                await asyncio.wait(tasks)
                for task in tasks:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                current = await store.record_rollout_progress(rollout_id, _now())
        except BaseException as stopped:  # Ctrl-C, SIGTERM, a server that stopped answering
            if in_flight:
                await asyncio.wait(set(in_flight))
            current = await store.record_rollout_progress(rollout_id, _now(), "interrupted", actor)
            log.warning("rollout_interrupted", rollout_id=rollout_id, done=current.done, total=current.total,
                        reason=type(stopped).__name__)
            raise
        current = await store.record_rollout_progress(rollout_id, _now(), "finished", actor)
        report(finished=True)
        log.info("rollout_finished", rollout_id=rollout_id, done=current.done, total=current.total,
                 not_running=current.not_running)
        return current

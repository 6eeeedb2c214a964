"""The daily digest: at most one "outstanding actions" e-mail per provider user a day."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio.client import WorkflowExecutionStatus

from icr.domain.models import CloseNotification, DailyDigestResult, NotificationStatus, RaiseNotification
from icr.domain.rules import NOTIFICATION_SUBJECT, UK, notification_letter
from tests.conftest import Engine
from workflows.digest import DailyDigestWorkflow


async def run_digest(engine: Engine, run: int) -> DailyDigestResult:
    """Run it in real time: awaiting a result on the time-skipping server lets it jump ahead."""
    handle = await engine.client.start_workflow(
        DailyDigestWorkflow.run, id=f"digest-test-{engine.ref}-{run}", task_queue=engine.task_queue)
    for _ in range(100):
        if (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED:
            # From the history, not result(): that too would unlock time skipping.
            history = await handle.fetch_history()
            payloads = history.events[-1].workflow_execution_completed_event_attributes.result.payloads
            [result] = await engine.client.data_converter.decode(payloads, [DailyDigestResult])
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("the digest workflow did not complete in 10 seconds")


async def notify(engine: Engine, ref: str, contact: str, at: datetime) -> str:
    notification_id = f"ICR-{ref}-001"
    await engine.store.raise_notification(RaiseNotification(
        case_reference=ref, notification_id=notification_id, cycle=1, provider_firm_id="26517",
        assigned_to=contact, date_assigned=at, due_date=at + timedelta(days=14),
        return_date=at + timedelta(days=21), subject=NOTIFICATION_SUBJECT,
        letter=notification_letter(ref, at + timedelta(days=14), response_due=timedelta(days=14),
                                   return_after=timedelta(days=21))))
    return notification_id


async def test_one_digest_per_user_per_day_listing_every_open_notification(engine: Engine) -> None:
    now = await engine.now()
    a1 = await notify(engine, "300000000101", "ALICE", now - timedelta(hours=2))
    a2 = await notify(engine, "300000000102", "ALICE", now - timedelta(hours=1))
    b1 = await notify(engine, "300000000103", "BOB", now)
    closed = await notify(engine, "300000000104", "CAROL", now)
    await engine.store.close_notification(CloseNotification(
        case_reference="300000000104", notification_id=closed, status=NotificationStatus.RESPONDED, at=now))

    today = now.astimezone(UK).date()
    first = await run_digest(engine, 1)
    assert (first.digest_date, first.queued) == (today, 2)
    rows = await engine.store.digests_on(today)
    assert [(r.login_id, r.notification_ids) for r in rows] == [("ALICE", [a1, a2]), ("BOB", [b1])]

    second = await run_digest(engine, 2)  # the same day again: nothing more
    assert (second.digest_date, second.queued) == (today, 0)
    assert len(await engine.store.digests_on(today)) == 2

    await engine.env.sleep(timedelta(days=1))
    third = await run_digest(engine, 3)
    assert (third.digest_date, third.queued) == (today + timedelta(days=1), 2)

"""What a certificate asks of the server: activity keeps the timer that is running (no cancel
and restart per event), safe steps run as local activities, and a local step that keeps
failing (a database outage) is handed to a regular activity, so the history stays bounded."""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from benchmarks.protocol import count
from icr.adapters.db.store import Store
from icr.domain.models import ActivityEvent
from tests.conftest import Engine, Postgres, add_certificate, add_user, running_engine
from tests.impatient_steps import ImpatientCertificateWorkflow
from tests.workflow_helpers import DAY, database_outage, started_certificate, status
from workflows.certificate import CertificateWorkflow


async def counts(handle: WorkflowHandle) -> dict[str, object]:
    """The run's protocol (as the benchmark counts it), with the activities it scheduled."""
    events = (await handle.fetch_history()).events
    protocol = count(events)
    return {
        "timers_started": protocol.timers_started,
        "timers_canceled": protocol.timers_cancelled,
        "activities": [e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                       if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED],
        "markers": protocol.local_activities,
        "length": protocol.history_events,
    }


async def test_activity_keeps_the_running_timer_and_the_certificate_falls_due_on_its_new_deadline(
        engine: Engine) -> None:
    handle = await started_certificate(engine, 10 * DAY)
    first_deadline = (await status(handle)).inactivity_deadline
    assert first_deadline is not None
    for n in range(5):
        await handle.signal(CertificateWorkflow.record_activity,
                            ActivityEvent(event_id=f"e{n}", kind="amendment", occurred_at=await engine.now()))
        await engine.env.sleep(DAY)
    moved = await status(handle)
    assert moved.last_activity_at is not None and moved.inactivity_deadline == moved.last_activity_at + 608 * DAY
    seen = await counts(handle)
    # One timer, for the first deadline, never cancelled; the registry read and every ledger
    # write ran as local activities (markers), none as a scheduled activity.
    assert (seen["timers_started"], seen["timers_canceled"]) == (1, 0), seen
    assert "record_activity_events" not in seen["activities"] and "load_certificate" not in seen["activities"]
    assert seen["markers"] >= 6

    # The first timer fires at the old deadline: nothing falls due, a timer for the new one.
    await engine.env.sleep(first_deadline - await engine.now() + DAY)
    woken = await status(handle)
    assert woken.open_notification is None and woken.notifications_raised == 0
    assert (await counts(handle))["timers_started"] == 2

    await engine.env.sleep(moved.inactivity_deadline - await engine.now() + DAY)
    due = await status(handle)
    assert due.open_notification is not None
    assert abs(due.open_notification.date_assigned - moved.inactivity_deadline) < DAY


async def test_a_local_step_outlasted_by_an_outage_runs_as_a_regular_activity(
        time_env: WorkflowEnvironment, store: Store, postgres: Postgres) -> None:
    async with running_engine(time_env, store, certificate_workflow=ImpatientCertificateWorkflow) as engine:
        now = await engine.now()
        await add_user(store, "CASEWORKER1", ["case_management"])
        await add_certificate(store, engine.ref, last_activity_at=now - 10 * DAY)
        async with database_outage(postgres, store):
            handle = await engine.start(engine.ref)
            await asyncio.sleep(4)  # longer than the two attempts
        for _ in range(100):
            s = await status(handle)
            if s.registered:
                break
            await asyncio.sleep(0.2)
        assert s.registered and s.inactivity_deadline == now - 10 * DAY + 608 * DAY
        seen = await counts(handle)
        # The read gave up as a local activity (its failure recorded) and went through as a
        # regular one; the workflow neither failed nor retried its task.
        assert seen["markers"] == 1 and seen["activities"] == ["load_certificate"], seen
        assert isinstance(seen["length"], int) and seen["length"] < 40, seen

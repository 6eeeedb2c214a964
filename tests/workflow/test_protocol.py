"""What a certificate asks of the server: activity keeps the timer that is running (no cancel
and restart per event), and the certificate still falls due on its new deadline."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from icr.domain.models import ActivityEvent
from tests.conftest import Engine
from tests.workflow_helpers import DAY, started_certificate, status
from workflows.certificate import CertificateWorkflow


async def counts(handle: WorkflowHandle) -> dict[str, object]:
    history = await handle.fetch_history()
    events = history.events
    return {
        "timers_started": sum(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in events),
        "timers_canceled": sum(e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED for e in events),
        "activities": [e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                       if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED],
        "length": len(events),
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
    # One timer, for the first deadline, never cancelled; each event one ledger write.
    assert (seen["timers_started"], seen["timers_canceled"]) == (1, 0), seen
    assert seen["activities"] == ["load_certificate"] + ["record_activity_events"] * 5, seen

    # The first timer fires at the old deadline: nothing falls due, a timer for the new one.
    await engine.env.sleep(first_deadline - await engine.now() + DAY)
    woken = await status(handle)
    assert woken.open_notification is None and woken.notifications_raised == 0
    assert (await counts(handle))["timers_started"] == 2

    await engine.env.sleep(moved.inactivity_deadline - await engine.now() + DAY)
    due = await status(handle)
    assert due.open_notification is not None
    assert abs(due.open_notification.date_assigned - moved.inactivity_deadline) < DAY

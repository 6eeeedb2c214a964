"""Each branch of a certificate's review on the time-skipping server, asserting on the
PostgreSQL rows and on the `status` query."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from icr.adapters.db.store import Store
from icr.domain import rules
from icr.domain.models import (
    ActivityEvent,
    CertificateInput,
    CertificateStatus,
    CloseCertificateRequest,
    ExerciseResponse,
    LaaDecisionRequest,
    ReassignContactRequest,
    Response,
)
from icr.domain.rules import financial_year_end_after
from tests.conftest import Engine, add_certificate, add_user, running_engine
from tests.short_history import ShortHistoryCertificateWorkflow
from tests.workflow_helpers import DAY, due_certificate, respond, run_id, search_attributes, status
from workflows.certificate import CertificateWorkflow


async def test_due_certificate_raises_one_notification_to_its_contact(engine: Engine) -> None:
    handle = await due_certificate(engine)
    s = await status(handle)
    assert s.stage == "AwaitingResponse"
    assert s.notification_cycle == 1 and s.policy_version == 2
    n = s.open_notification
    assert n is not None and n.assigned_to == "CASEWORKER1"
    assert n.due_date - n.date_assigned == 14 * DAY
    assert n.return_date - n.date_assigned == 21 * DAY
    rows = await engine.store.notifications_of(engine.ref)
    assert len(rows) == 1
    row = rows[0]
    assert row.notification_id == n.notification_id
    assert row.subject == "Inactive Case Please Review"
    assert row.status == "Open" and row.is_open and row.provider_firm_id == "26517"
    assert row.due_date == n.due_date
    assert len(row.available_responses) == 5
    attrs = await search_attributes(engine, handle)
    assert attrs["IcrStage"] == "AwaitingResponse"
    assert attrs["CaseReference"] == engine.ref and attrs["ProviderFirmId"] == "26517"
    assert attrs["NotificationCycle"] == 1 and attrs["PolicyVersion"] == 2
    assert datetime.fromisoformat(attrs["ResponseDueDate"]) == n.due_date


async def test_case_ongoing_renews_the_clock(engine: Engine) -> None:
    handle = await due_certificate(engine)
    result = await respond(handle, "case_ongoing")
    assert result.outcome == "clock restarted"
    s = await status(handle)
    assert s.stage == "Active" and s.open_notification is None and s.notification_cycle == 0
    assert s.last_activity_at is not None
    assert s.inactivity_deadline == s.last_activity_at + 608 * DAY
    rows = await engine.store.notifications_of(engine.ref)
    assert [(r.status, r.response, r.responded_by) for r in rows] == [
        ("Responded", "case_ongoing", "CASEWORKER1")]
    ledger = await engine.store.ledger_of(engine.ref)
    assert [r.kind for r in ledger] == ["icr_ongoing_response"]
    attrs = await search_attributes(engine, handle)
    assert attrs["IcrStage"] == "Active" and attrs["ResponseDueDate"] is None
    assert attrs["NotificationCycle"] == 0


@pytest.mark.parametrize("response", ["complete_to_be_billed", "complete_costs_negotiated",
                                      "complete_court_assessment"])
@pytest.mark.parametrize("decision", ["close", "keep_open"])
async def test_review_response_then_caseworker_decision(engine: Engine, response: str, decision: str) -> None:
    handle = await due_certificate(engine, poa_paid="2500.00", poa_recouped="1000.00")
    result = await respond(handle, response)
    assert result.outcome == "LAA review task raised"
    s = await status(handle)
    assert s.stage == "LaaReview" and s.open_task is not None and s.open_task.kind == "review"
    tasks = await engine.store.tasks_of(engine.ref)
    assert [(t.kind, t.response, t.is_open) for t in tasks] == [("review", response, True)]
    await handle.signal(CertificateWorkflow.laa_decision, LaaDecisionRequest(caseworker="LAA-CW-7", decision=decision,
                                                           reason="checked"))
    await engine.env.sleep(1)
    tasks = await engine.store.tasks_of(engine.ref)
    assert [(t.decision, t.decided_by, t.is_open) for t in tasks] == [(decision, "LAA-CW-7", False)]
    if decision == "close":
        final = CertificateStatus.model_validate(await handle.result())
        assert final.stage == "Closed"
        assert [r.amount for r in final.recoupments] == ["1500.00"]
        recoupments = await engine.store.recoupments_of(engine.ref)
        assert [r.amount for r in recoupments] == [Decimal("1500.00")]
        cert = await engine.store.certificate_row(engine.ref)
        assert cert.closed_at is not None and cert.poa_recouped == Decimal("2500.00")
    else:
        s = await status(handle)
        assert s.stage == "Active" and s.open_task is None
        decided_at = tasks[0].decided_at
        assert s.inactivity_deadline == decided_at + 608 * DAY
        assert s.follow_up_due_at == financial_year_end_after(tasks[0].raised_at)
        assert await engine.store.recoupments_of(engine.ref) == []


async def test_no_bill_due_closes_and_recoups_exactly_the_outstanding_amount(engine: Engine) -> None:
    handle = await due_certificate(engine, poa_paid="1500.00", poa_recouped="500.00")
    await respond(handle, "complete_no_bill_due")
    final = CertificateStatus.model_validate(await handle.result())
    assert final.stage == "Closed"
    assert [r.amount for r in final.recoupments] == ["1000.00"]
    recoupments = await engine.store.recoupments_of(engine.ref)
    assert [(r.amount, r.actor) for r in recoupments] == [(Decimal("1000.00"), "CASEWORKER1")]
    cert = await engine.store.certificate_row(engine.ref)
    assert cert.poa_recouped == Decimal("1500.00") and cert.closed_at is not None
    attrs = await search_attributes(engine, handle)
    assert attrs["IcrStage"] == "Closed" and attrs["InactivityDeadline"] is None


async def test_no_bill_due_with_nothing_outstanding_recoups_nothing(engine: Engine) -> None:
    handle = await due_certificate(engine, poa_paid="800.00", poa_recouped="800.00")
    await respond(handle, "complete_no_bill_due")
    final = CertificateStatus.model_validate(await handle.result())
    assert final.stage == "Closed" and final.recoupments == []
    assert await engine.store.recoupments_of(engine.ref) == []


async def test_overdue_then_answered(engine: Engine) -> None:
    handle = await due_certificate(engine)
    await engine.env.sleep(14 * DAY - timedelta(minutes=1))
    assert (await status(handle)).stage == "AwaitingResponse"
    await engine.env.sleep(timedelta(minutes=2))
    s = await status(handle)
    assert s.stage == "Overdue" and s.open_notification is not None and s.open_notification.overdue
    assert [r.status for r in await engine.store.notifications_of(engine.ref)] == ["Overdue"]
    assert (await search_attributes(engine, handle))["IcrStage"] == "Overdue"
    await respond(handle, "case_ongoing")
    s = await status(handle)
    assert s.stage == "Active"
    assert [(r.status, r.response) for r in await engine.store.notifications_of(engine.ref)] == [
        ("Responded", "case_ongoing")]


async def test_three_unanswered_cycles_then_escalation(engine: Engine) -> None:
    handle = await due_certificate(engine)
    await engine.env.sleep(21 * DAY + timedelta(minutes=1))
    s = await status(handle)
    assert s.stage == "AwaitingResponse" and s.notification_cycle == 2
    assert s.open_task is not None and s.open_task.kind == "no_response"
    await engine.env.sleep(42 * DAY)
    s = await status(handle)
    assert s.stage == "Escalated" and s.open_notification is None
    assert s.open_task is not None and s.open_task.kind == "escalation"
    notifications = await engine.store.notifications_of(engine.ref)
    assert [(r.cycle, r.status) for r in notifications] == [
        (1, "No Response"), (2, "No Response"), (3, "No Response")]
    tasks = await engine.store.tasks_of(engine.ref)
    assert [(t.kind, t.is_open) for t in tasks] == [
        ("no_response", False), ("no_response", False), ("escalation", True)]
    # Nothing more is sent while the caseworker decides.
    await engine.env.sleep(30 * DAY)
    assert len(await engine.store.notifications_of(engine.ref)) == 3
    await handle.signal(CertificateWorkflow.laa_decision, LaaDecisionRequest(caseworker="CM-1", decision="close", reason="no contact"))
    final = CertificateStatus.model_validate(await handle.result())
    assert final.stage == "Closed"


async def test_activity_during_open_notification_closes_it_and_restarts_the_clock(engine: Engine) -> None:
    handle = await due_certificate(engine)
    now = await engine.now()
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="bill-1", kind="bill", occurred_at=now))
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.stage == "Active" and s.open_notification is None and s.notification_cycle == 0
    assert s.inactivity_deadline == now + 608 * DAY
    assert [r.status for r in await engine.store.notifications_of(engine.ref)] == ["Activity Recorded"]
    assert [r.event_id for r in await engine.store.ledger_of(engine.ref)] == ["bill-1"]


async def test_duplicate_and_older_events_move_nothing(engine: Engine) -> None:
    now = await engine.now()
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 10 * DAY)
    handle = await engine.start(engine.ref)
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="e1", kind="amendment", occurred_at=now))
    await engine.env.sleep(1)
    deadline = (await status(handle)).inactivity_deadline
    assert deadline == now + 608 * DAY
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="e1", kind="amendment",
                                                         occurred_at=now + timedelta(minutes=1)))
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="e0", kind="bill", occurred_at=now - 5 * DAY))
    await engine.env.sleep(1)
    assert (await status(handle)).inactivity_deadline == deadline
    ledger = await engine.store.ledger_of(engine.ref)
    assert [(r.event_id, r.occurred_at) for r in ledger] == [("e0", now - 5 * DAY), ("e1", now)]


async def test_exercise_response_is_applied_instead_of_a_notification(engine: Engine) -> None:
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 608 * DAY)
    await engine.store.upsert_exercise_response(ExerciseResponse(
        case_reference=engine.ref, response=Response.CASE_ONGOING, reported_on=datetime(2024, 1, 31).date()),
        "test", now)
    handle = await engine.start(engine.ref)
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.stage == "Active" and s.on_exercise_list and s.open_notification is None
    assert await engine.store.notifications_of(engine.ref) == []
    audit = [(a.actor, a.action) for a in await engine.store.audit_of(engine.ref)]
    assert ("LAA (exercise)", "response_recorded") in audit
    # Used once: the next cycle notifies as usual, and an unanswered one is not resent.
    await engine.env.sleep(608 * DAY + timedelta(minutes=1))
    s = await status(handle)
    assert s.stage == "AwaitingResponse"
    await engine.env.sleep(21 * DAY)
    s = await status(handle)
    assert s.stage == "LaaReview" and s.open_notification is None
    assert s.open_task is not None and s.open_task.kind == "no_response"
    assert len(await engine.store.notifications_of(engine.ref)) == 1


async def test_close_certificate_ends_the_workflow_and_nothing_reopens_it(engine: Engine) -> None:
    handle = await due_certificate(engine, poa_paid="900.00")
    now = await engine.now()
    await handle.signal(CertificateWorkflow.close_certificate, CloseCertificateRequest(reason="discharged", occurred_at=now))
    final = CertificateStatus.model_validate(await handle.result())
    assert final.stage == "Closed" and final.recoupments == []
    assert [r.status for r in await engine.store.notifications_of(engine.ref)] == ["Certificate Closed"]
    assert (await engine.store.certificate_row(engine.ref)).closed_at is not None
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    with pytest.raises(WorkflowAlreadyStartedError):
        await engine.client.start_workflow(
            CertificateWorkflow.run, CertificateInput(case_reference=engine.ref), id=handle.id, task_queue=engine.task_queue,
            start_signal=CertificateWorkflow.record_activity.__name__,
            start_signal_args=[ActivityEvent(event_id="late", kind="bill", occurred_at=now)],
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)


async def test_policy_of_608_days_then_365(engine: Engine) -> None:
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 400 * DAY)
    handle = await engine.start(engine.ref)
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.stage == "Active" and s.policy_version == 2
    assert s.inactivity_deadline == now - 400 * DAY + 608 * DAY
    policy = await engine.store.add_policy_version(365, now, "ops", "back to 12 months", now)
    await handle.signal(CertificateWorkflow.policy_changed)
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.policy_version == policy.version and s.stage == "AwaitingResponse"
    assert (await search_attributes(engine, handle))["PolicyVersion"] == policy.version


async def test_policy_version_taking_effect_later_applies_on_its_date(engine: Engine) -> None:
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 400 * DAY)
    await engine.store.add_policy_version(365, now + 10 * DAY, "ops", "from next week", now)
    handle = await engine.start(engine.ref)
    await engine.env.sleep(9 * DAY)
    assert (await status(handle)).stage == "Active"
    await engine.env.sleep(2 * DAY)
    s = await status(handle)
    assert s.stage == "AwaitingResponse" and s.policy_version == 3


async def test_unregistered_certificate_falls_due_to_an_laa_task(engine: Engine) -> None:
    now = await engine.now()
    await engine.client.start_workflow(
        CertificateWorkflow.run, CertificateInput(case_reference=engine.ref), id=f"certificate-{engine.ref}",
        task_queue=engine.task_queue, start_signal=CertificateWorkflow.record_activity.__name__,
        start_signal_args=[ActivityEvent(event_id="a1", kind="application", occurred_at=now - 700 * DAY)])
    handle = engine.client.get_workflow_handle(f"certificate-{engine.ref}")
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.stage == "LaaReview" and not s.registered
    assert s.open_task is not None and s.open_task.kind == "registration_missing"
    assert await engine.store.notifications_of(engine.ref) == []
    assert [e.event_id for e in await engine.store.ledger_of(engine.ref)] == ["a1"]


async def test_follow_up_when_no_bill_by_31_march(engine: Engine) -> None:
    handle = await due_certificate(engine)
    await respond(handle, "complete_to_be_billed")
    await handle.signal(CertificateWorkflow.laa_decision, LaaDecisionRequest(caseworker="CW", decision="keep_open", reason=""))
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.follow_up_due_at is not None
    await engine.env.sleep(s.follow_up_due_at - await engine.now() + timedelta(minutes=1))
    s = await status(handle)
    assert s.stage == "LaaReview" and s.open_task is not None and s.open_task.kind == "follow_up"
    assert [t.kind for t in await engine.store.tasks_of(engine.ref)] == ["review", "follow_up"]


async def test_a_bill_before_31_march_cancels_the_follow_up(engine: Engine) -> None:
    handle = await due_certificate(engine)
    await respond(handle, "complete_to_be_billed")
    await handle.signal(CertificateWorkflow.laa_decision, LaaDecisionRequest(caseworker="CW", decision="keep_open", reason=""))
    await engine.env.sleep(1)
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="b1", kind="bill", occurred_at=await engine.now()))
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.follow_up_due_at is None
    await engine.env.sleep(366 * DAY)
    assert [t.kind for t in await engine.store.tasks_of(engine.ref)] == ["review"]


async def test_cross_office_user_reassigns_the_contact_for_later_notifications(engine: Engine) -> None:
    handle = await due_certificate(engine)
    await add_user(engine.store, "XOFFICE", ["case_management", "cross_office"])
    await add_user(engine.store, "NEWCONTACT", ["case_management"])
    result = await handle.execute_update(CertificateWorkflow.reassign_contact, ReassignContactRequest(
        user_login_id="XOFFICE", new_contact_login_id="NEWCONTACT"))
    assert result.provider_contact_login == "NEWCONTACT"
    assert (await engine.store.certificate_row(engine.ref)).provider_contact_login == "NEWCONTACT"
    await engine.env.sleep(21 * DAY + timedelta(minutes=1))  # returned and resent
    s = await status(handle)
    assert s.open_notification is not None and s.open_notification.assigned_to == "NEWCONTACT"


async def current_details(handle: WorkflowHandle) -> str:
    """What the Web UI shows under Current Details (the SDK's built-in metadata query)."""
    metadata = await handle.query("__temporal_workflow_metadata")
    return str(metadata.current_details)


async def plain(engine: Engine, payload: Payload) -> Any:
    """A payload as the Web UI shows it through the codec server: decrypted, then JSON."""
    codec = engine.client.data_converter.payload_codec
    assert codec is not None
    [decoded] = await codec.decode([payload])
    return json.loads(decoded.data)


async def test_the_web_ui_reads_the_review_at_a_glance(engine: Engine) -> None:
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 608 * DAY, poa_paid="900.00",
                          poa_recouped="150.00")
    assert await engine.certificates.start(engine.ref, "26517")
    handle = engine.client.get_workflow_handle(f"certificate-{engine.ref}")
    await engine.env.sleep(1)
    # The start input is the case reference alone (the engine's own fields are left out).
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert [await plain(engine, p) for p in started.input.payloads] == [{"case_reference": engine.ref}]
    # The static summary and details, as the client started it.
    meta = history.events[0].user_metadata
    assert await plain(engine, meta.summary) == f"Certificate {engine.ref} · firm 26517"
    assert f"**{engine.ref}**, provider firm **26517**" in await plain(engine, meta.details)

    details = await current_details(handle)
    assert details.startswith("**Awaiting the provider's response**")
    assert "**Payments on account outstanding** £750.00" in details
    assert "CASEWORKER1" not in details
    due = (await status(handle)).open_notification.due_date
    assert f"due {rules.uk_time(due)}" in details

    timers = [e.timer_started_event_attributes for e in history.events if e.HasField("timer_started_event_attributes")]
    summaries = [await plain(engine, e.user_metadata.summary) for e in history.events
                 if e.HasField("user_metadata") and e.user_metadata.HasField("summary")]
    assert timers and f"wait for response: due {rules.uk_time(due)}" in summaries, summaries
    assert "read the registry" in summaries
    assert any(s.startswith("raise notification ICR-") for s in summaries), summaries

    await respond(handle, "complete_court_assessment", message="a private message")
    details = await current_details(handle)
    assert details.startswith("**LAA review: a task awaits a caseworker's decision**")
    assert "provider answered Case Complete Court Assessment" in details
    assert "a private message" not in details and "CASEWORKER1" not in details
    assert (await search_attributes(engine, handle))["OpenTaskKind"] == "review"
    await handle.execute_update(CertificateWorkflow.decide, LaaDecisionRequest(
        caseworker="LAA-CW-7", decision="close", reason="nothing more to come"))
    await handle.result()
    details = await current_details(handle)
    assert details.startswith("**Closed**") and "£750.00 on" in details
    assert "LAA-CW-9" not in details and "nothing more to come" not in details
    assert (await search_attributes(engine, handle)).get("OpenTaskKind") is None


async def test_long_lived_certificate_continues_as_new_without_losing_state(time_env: WorkflowEnvironment,
                                                                             store: Store) -> None:
    async with running_engine(time_env, store, certificate_workflow=ShortHistoryCertificateWorkflow) as engine:
        await continues_as_new_without_losing_state(engine)


async def continues_as_new_without_losing_state(engine: Engine) -> None:
    now = await engine.now()
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 10 * DAY)
    handle = await engine.start(engine.ref)
    first_run = await run_id(engine, handle)
    for i in range(30):
        await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(
            event_id=f"e{i}", kind="amendment", occurred_at=now + timedelta(seconds=i)))
        await engine.env.sleep(1)
    s = await status(handle)
    latest = now + timedelta(seconds=29)
    assert s.last_activity_at == latest and s.inactivity_deadline == latest + 608 * DAY
    assert len(await engine.store.ledger_of(engine.ref)) == 30
    assert await run_id(engine, handle) != first_run

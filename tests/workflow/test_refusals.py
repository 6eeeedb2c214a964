"""Bad input on the time-skipping server: each refused with a clear error, nothing changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError

from icr.domain.models import (
    ActivityEvent,
    LaaDecisionRequest,
    RespondRequest,
)
from tests.conftest import OTHER_FIRM, Engine, add_certificate, add_user
from tests.workflow_helpers import (
    DAY,
    due_certificate,
    respond,
    start_refused,
    started_certificate,
    status,
)
from workflows.certificate import CertificateWorkflow


async def refused(handle: WorkflowHandle, request: RespondRequest | LaaDecisionRequest) -> ApplicationError:
    """The refusal a `respond` (or, for a decision, `decide`) update comes back with."""
    update = CertificateWorkflow.decide if isinstance(request, LaaDecisionRequest) else CertificateWorkflow.respond
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(update, request)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def assert_notification_untouched(engine: Engine, handle: WorkflowHandle) -> None:
    s = await status(handle)
    assert s.stage == "AwaitingResponse" and s.open_notification is not None
    rows = await engine.store.notifications_of(engine.ref)
    assert [(r.status, r.response, r.responded_by) for r in rows] == [("Open", None, None)]
    assert await engine.store.tasks_of(engine.ref) == []


@pytest.mark.parametrize(("request_fields", "error_type", "words"), [
    ({"response": "maybe"}, "unknown_response", "case_ongoing, complete_to_be_billed"),
    ({"response": "case_ongoing", "message": "x" * 2001}, "message_too_long", "2001 characters"),
    ({"response": "case_ongoing", "user_login_id": "RIVAL"}, "wrong_firm", "not a user of the certificate's provider firm"),
    ({"response": "case_ongoing", "user_login_id": "MANAGER"}, "not_permitted", "Office Manager"),
    ({"response": "case_ongoing", "user_login_id": "BILLS"}, "not_permitted", "bill_preparation"),
    ({"response": "case_ongoing", "user_login_id": "COLLEAGUE"}, "not_assigned", "Cross Office"),
    ({"response": "case_ongoing", "user_login_id": "NOBODY"}, "unknown_user", "not in the user directory"),
])
async def test_bad_response_is_refused_and_changes_nothing(engine: Engine, request_fields: dict,
                                                           error_type: str, words: str) -> None:
    handle = await due_certificate(engine)
    await add_user(engine.store, "RIVAL", ["case_management", "cross_office"], firm=OTHER_FIRM)
    await add_user(engine.store, "MANAGER", ["office_manager"])
    await add_user(engine.store, "BILLS", ["bill_preparation"])
    await add_user(engine.store, "COLLEAGUE", ["case_management"])
    request = RespondRequest(**{"user_login_id": "CASEWORKER1", **request_fields})
    error = await refused(handle, request)
    assert error.type == error_type
    assert words in error.message
    await assert_notification_untouched(engine, handle)


async def test_cross_office_user_may_answer_for_a_pre_silas_contact(engine: Engine) -> None:
    now = await engine.now()
    await add_user(engine.store, "LEGACY01", ["case_management"], pre_silas=True)
    await add_user(engine.store, "XOFFICE", ["case_management", "cross_office"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 700 * DAY, contact="LEGACY01")
    handle = await engine.start(engine.ref)
    await engine.env.sleep(1)
    assert (await status(handle)).open_notification.assigned_to == "LEGACY01"
    await respond(handle, "case_ongoing", user="XOFFICE")
    rows = await engine.store.notifications_of(engine.ref)
    assert [(r.status, r.responded_by) for r in rows] == [("Responded", "XOFFICE")]


async def test_response_with_no_open_notification_is_refused(engine: Engine) -> None:
    handle = await started_certificate(engine, 10 * DAY)
    error = await refused(handle, RespondRequest(user_login_id="CASEWORKER1", response="case_ongoing"))
    assert error.type == "no_open_notification"
    assert (await status(handle)).stage == "Active"
    assert await engine.store.notifications_of(engine.ref) == []


async def test_second_response_to_the_same_notification_is_refused(engine: Engine) -> None:
    handle = await due_certificate(engine)
    await respond(handle, "complete_to_be_billed")
    error = await refused(handle, RespondRequest(user_login_id="CASEWORKER1", response="complete_no_bill_due"))
    assert error.type == "no_open_notification"
    s = await status(handle)
    assert s.stage == "LaaReview" and s.recoupments == []
    rows = await engine.store.notifications_of(engine.ref)
    assert [r.response for r in rows] == ["complete_to_be_billed"]
    assert (await engine.store.certificate_row(engine.ref)).closed_at is None


async def test_malformed_case_reference_fails_the_workflow_with_a_clear_error(engine: Engine) -> None:
    handle = await engine.client.start_workflow(
        CertificateWorkflow.run, {"case_reference": "12345"}, id="certificate-12345",
        task_queue=engine.task_queue)
    cause = await start_refused(handle, "invalid_case_reference")
    assert "12 digits starting 3000" in cause.message


async def test_unknown_and_future_activity_is_audited_and_moves_nothing(engine: Engine) -> None:
    now = await engine.now()
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 10 * DAY)
    handle = await engine.start(engine.ref)
    await engine.env.sleep(1)
    before = await status(handle)
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="q1", kind="case_enquiry", occurred_at=now))
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="f1", kind="bill",
                                                         occurred_at=now + timedelta(minutes=6)))
    await engine.env.sleep(1)
    after = await status(handle)
    assert after.inactivity_deadline == before.inactivity_deadline
    assert after.last_activity_at == before.last_activity_at
    assert await engine.store.ledger_of(engine.ref) == []
    refusals = [(a.action, a.detail) for a in await engine.store.audit_of(engine.ref)
                if a.action == "activity_refused"]
    assert len(refusals) == 2
    assert "accepted kinds: application, amendment" in refusals[0][1]["reason"]
    assert "in the future" in refusals[1][1]["reason"]


async def test_malformed_payloads_never_fail_a_workflow_task(engine: Engine) -> None:
    now = await engine.now()
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 10 * DAY)
    handle = await engine.start(engine.ref)
    for garbage in [{}, {"event_id": 7}, {"event_id": "x", "kind": "bill", "occurred_at": "yesterday"},
                    {"event_id": "y", "kind": "bill", "occurred_at": "2026-01-01T00:00:00"}, "text", [1, 2],
                    {"event_id": "z" * 500, "kind": "bill", "occurred_at": now.isoformat()}]:
        await handle.signal(CertificateWorkflow.record_activity, garbage)
    await handle.signal(CertificateWorkflow.laa_decision, {"caseworker": "", "decision": "maybe"})
    await handle.signal(CertificateWorkflow.laa_decision, LaaDecisionRequest(caseworker="CW", decision="close", reason=""))
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="ok", kind="bill", occurred_at=now))
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.stage == "Active" and s.last_activity_at == now
    assert [r.event_id for r in await engine.store.ledger_of(engine.ref)] == ["ok"]
    actions = [a.action for a in await engine.store.audit_of(engine.ref)]
    # Decodable but wrong: refused and audited (no fields, a naive time, an over-long id, an
    # unknown decision, a decision with no open task); undecodable payloads (a number for a
    # text field, a time that does not parse) are dropped by the SDK with a warning.
    assert actions.count("activity_refused") == 3
    assert actions.count("decision_refused") == 2


async def test_decide_update_answers_a_refusal_with_its_reason_and_changes_nothing(engine: Engine) -> None:
    handle = await due_certificate(engine)
    keep_open = LaaDecisionRequest(caseworker="LAA-CW-1", decision="keep_open", reason="bill expected")
    nothing = await refused(handle, keep_open)
    assert nothing.type == "no_open_task" and "has no open LAA task to decide" in nothing.message
    await respond(handle, "complete_to_be_billed")
    before = await status(handle)
    assert before.stage == "LaaReview" and before.open_task is not None
    maybe = await refused(handle, LaaDecisionRequest(caseworker="LAA-CW-1", decision="maybe"))
    assert maybe.type == "unknown_decision" and "'maybe' is not a decision; use one of: close, keep_open" in maybe.message
    nobody = await refused(handle, LaaDecisionRequest(caseworker=" ", decision="close"))
    assert nobody.type == "missing_caseworker"
    assert await status(handle) == before
    assert [t.is_open for t in await engine.store.tasks_of(engine.ref)] == [True]

    decided = await handle.execute_update(CertificateWorkflow.decide, keep_open)
    assert (decided.task_id, decided.decision, decided.stage) == (before.open_task.task_id, "keep_open", "Active")
    tasks = await engine.store.tasks_of(engine.ref)
    assert [(t.decision, t.decided_by, t.decision_reason) for t in tasks] == [
        ("keep_open", "LAA-CW-1", "bill expected")]
    again = await refused(handle, keep_open)  # the task is decided: a second click is refused
    assert again.type == "no_open_task"

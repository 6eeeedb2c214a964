"""Crashes, bad input and forged starts on the time-skipping server: no event lost, no
certificate wedged, no state taken from outside."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from icr.adapters.db.store import Store
from icr.domain.models import (
    ActivityEvent,
    CertificateInput,
    CertificateState,
    CertificateStatus,
    LaaDecisionRequest,
    OpenTask,
    Policy,
    Registration,
    TaskKind,
)
from icr.runtime.engine import build_worker
from icr.runtime.settings import Settings
from tests.conftest import FIRM, Engine, add_certificate, add_user, running_engine
from tests.crash import CrashAfterStep
from tests.workflow_helpers import (
    DAY,
    due_certificate,
    respond,
    start_refused,
    started_certificate,
    status,
    task_failures,
)
from workflows.certificate import MAX_PENDING_EVENTS, CertificateWorkflow


async def settled(handle: WorkflowHandle, done: Callable[[CertificateStatus], bool], what: str,
                  timeout: float = 20) -> CertificateStatus:
    """The status once `done` holds; fails (instead of hanging) if the certificate is wedged."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await asyncio.wait_for(handle.query(CertificateWorkflow.status), 5)
            if done(last):
                return last
        except (TimeoutError, Exception) as err:  # a wedged workflow answers no query
            last = err
        await asyncio.sleep(0.2)
    raise AssertionError(f"certificate never reached: {what} (last: {last!r})")


# --- a worker that dies between a step and the end of its workflow task ------------------


async def test_an_event_written_by_an_attempt_that_did_not_finish_is_applied(
        time_env: WorkflowEnvironment, store: Store) -> None:
    crash = CrashAfterStep("record_activity_events")
    async with running_engine(time_env, store, interceptors=[crash]) as engine:
        now = await engine.now()
        await add_certificate(store, engine.ref, last_activity_at=now - 10 * DAY)
        handle = await engine.start(engine.ref)
        await engine.env.sleep(1)
        await handle.signal(CertificateWorkflow.record_activity,
                            ActivityEvent(event_id="e1", kind="amendment", occurred_at=now))
        await settled(handle, lambda s: crash.calls >= 2, "the step run again after the crash")
        await engine.env.sleep(1)
        s = await status(handle)
        assert crash.crashed == {handle.id}
        # The retried task found the row already written: it is applied all the same.
        assert s.last_activity_at == now and s.inactivity_deadline == now + 608 * DAY
        assert [r.event_id for r in await store.ledger_of(engine.ref)] == ["e1"]
        # A duplicate sent later counts once: no second history line, nothing moves.
        history_lines = len(s.history)
        await handle.signal(CertificateWorkflow.record_activity,
                            ActivityEvent(event_id="e1", kind="amendment", occurred_at=now))
        await engine.env.sleep(1)
        again = await status(handle)
        assert len(again.history) == history_lines and again.inactivity_deadline == s.inactivity_deadline


async def test_a_retried_task_writes_what_the_workflow_adopts(time_env: WorkflowEnvironment, store: Store) -> None:
    """The notification the database holds is the one the workflow holds, though the task
    that raised it was retried (with a later `now`)."""
    crash = CrashAfterStep("raise_notification")
    async with running_engine(time_env, store, interceptors=[crash]) as engine:
        handle = await due_certificate(engine)
        s = await settled(handle, lambda s: s.open_notification is not None and crash.calls >= 1,
                          "a notification raised")
        assert crash.crashed == {handle.id}
        rows = await store.notifications_of(engine.ref)
        n = s.open_notification
        assert n is not None and len(rows) == 1
        row = rows[0]
        assert (row.notification_id, row.assigned_to, row.date_assigned, row.due_date,
                row.return_date, row.is_open) == (
            n.notification_id, n.assigned_to, n.date_assigned, n.due_date, n.return_date, True)
        assert s.notifications_raised == 1
        audit = [a.action for a in await store.audit_of(engine.ref)]
        assert audit.count("notification_raised") == 1


# --- poison messages: refused, audited once, and the certificate carries on --------------

NUL = "\x00"
MEGABYTE = "x" * 1_000_000


def event(**fields: Any) -> dict[str, Any]:
    return {"event_id": "p1", "kind": "bill", "occurred_at": "2020-01-01T00:00:00+00:00", **fields}


POISON_EVENTS = {
    "nul_in_event_id": event(event_id=f"e{NUL}1"),
    "nul_in_source": event(source=f"CCMS{NUL}"),
    "year_1_with_an_offset": event(occurred_at="0001-01-01T00:00:00+01:00"),
    "year_9999": event(occurred_at="9999-12-31T23:00:00-01:00"),
    "megabyte_source": event(source=MEGABYTE),
    "megabyte_event_id": event(event_id=MEGABYTE),
}


@pytest.mark.parametrize("name", list(POISON_EVENTS))
async def test_a_poison_event_is_refused_once_and_later_events_apply(engine: Engine, name: str) -> None:
    handle = await started_certificate(engine, 10 * DAY)
    await handle.signal("record_activity", POISON_EVENTS[name])
    now = await engine.now()
    await handle.signal(CertificateWorkflow.record_activity,
                        ActivityEvent(event_id="good", kind="bill", occurred_at=now))
    s = await settled(handle, lambda s: s.last_activity_at == now, "the good event applied")
    assert s.inactivity_deadline == now + 608 * DAY
    assert [r.event_id for r in await engine.store.ledger_of(engine.ref)] == ["good"]
    refusals = [a for a in await engine.store.audit_of(engine.ref) if a.action == "activity_refused"]
    assert len(refusals) == 1, refusals
    assert len(str(dict(refusals[0]))) < 5_000  # the audit row is bounded too
    assert await task_failures(handle) == 0


async def decision_pending(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine, poa_paid="500.00")
    await respond(handle, "complete_to_be_billed")
    return handle


POISON_DECISIONS = {
    "nul_in_caseworker": {"caseworker": f"CW{NUL}", "decision": "close", "reason": "x"},
    "nul_in_reason": {"caseworker": "CW", "decision": "close", "reason": f"done{NUL}"},
    "megabyte_reason": {"caseworker": "CW", "decision": "close", "reason": MEGABYTE},
    "megabyte_caseworker": {"caseworker": MEGABYTE, "decision": "close", "reason": ""},
}


@pytest.mark.parametrize("name", list(POISON_DECISIONS))
async def test_a_poison_decision_is_refused_once_and_a_good_one_then_applies(engine: Engine, name: str) -> None:
    handle = await decision_pending(engine)
    await handle.signal("laa_decision", POISON_DECISIONS[name])
    await engine.env.sleep(1)
    s = await settled(handle, lambda s: s.stage == "LaaReview", "still under review")
    assert await engine.store.recoupments_of(engine.ref) == []
    refusals = [a for a in await engine.store.audit_of(engine.ref) if a.action == "decision_refused"]
    assert len(refusals) == 1 and len(str(dict(refusals[0]))) < 5_000
    await handle.signal(CertificateWorkflow.laa_decision,
                        LaaDecisionRequest(caseworker="CW", decision="keep_open", reason="fine"))
    s = await settled(handle, lambda s: s.stage == "Active", "the good decision applied")
    assert s.open_task is None
    assert await task_failures(handle) == 0


async def test_a_close_with_a_poison_reason_is_refused_and_a_good_one_then_closes(engine: Engine) -> None:
    handle = await due_certificate(engine, poa_paid="500.00")
    now = await engine.now()
    await handle.signal("close_certificate", {"reason": f"discharged{NUL}", "occurred_at": now.isoformat()})
    await engine.env.sleep(1)
    await handle.signal("close_certificate", {"reason": "ok", "occurred_at": "0001-01-01T00:00:00+01:00"})
    await engine.env.sleep(1)
    s = await settled(handle, lambda s: s.stage == "AwaitingResponse", "still open")
    audit = [a.action for a in await engine.store.audit_of(engine.ref)]
    assert audit.count("close_refused") == 2 and "certificate_closed" not in audit
    await handle.signal("close_certificate", {"reason": "discharged", "occurred_at": now.isoformat()})
    final = CertificateStatus.model_validate(await handle.result())
    assert final.stage == "Closed" and final.recoupments == []
    assert s.open_notification is not None
    assert await task_failures(handle) == 0


UPDATE_POISONS: list[tuple[str, dict[str, Any], str]] = [
    ("respond", {"user_login_id": f"CASEWORKER1{NUL}", "response": "case_ongoing"}, "invalid_user"),
    ("respond", {"user_login_id": "CASEWORKER1", "response": "case_ongoing", "message": f"hi{NUL}"},
     "invalid_message"),
    ("respond", {"user_login_id": MEGABYTE, "response": "case_ongoing"}, "invalid_user"),
    ("reassign_contact", {"user_login_id": "XOFFICE", "new_contact_login_id": f"NEW{NUL}"}, "invalid_user"),
]


@pytest.mark.parametrize(("update", "payload", "code"), UPDATE_POISONS)
async def test_a_poison_update_is_refused_with_a_clear_error(engine: Engine, update: str,
                                                             payload: dict[str, Any], code: str) -> None:
    handle = await due_certificate(engine)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await asyncio.wait_for(handle.execute_update(update, payload), 20)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == code, cause
    assert len(cause.message) < 500
    result = await respond(handle, "case_ongoing")  # the certificate carries on
    assert result.outcome == "clock restarted"
    assert await task_failures(handle) == 0


async def test_the_pending_queue_is_capped_and_the_overflow_audited(time_env: WorkflowEnvironment,
                                                                    store: Store) -> None:
    """Messages that pile up while no worker serves the certificate: the first
    MAX_PENDING_EVENTS wait, the rest are dropped and audited, and nothing fails."""
    task_queue = f"icr-test-{uuid.uuid4().hex[:8]}"
    ref = f"3000{uuid.uuid4().int % 10**8:08d}"
    now = await time_env.get_current_time()
    await add_certificate(store, ref, last_activity_at=now - 10 * DAY)
    # No worker yet: every signal waits in the history for the first workflow task.
    handle = await time_env.client.start_workflow(
        CertificateWorkflow.run, CertificateInput(case_reference=ref), id=f"certificate-{ref}",
        task_queue=task_queue)
    sent = MAX_PENDING_EVENTS + 5
    for i in range(sent):
        await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(
            event_id=f"e{i:04d}", kind="amendment", occurred_at=now - timedelta(seconds=sent - i)))
    last_kept = now - timedelta(seconds=sent - (MAX_PENDING_EVENTS - 1))
    async with build_worker(time_env.client, store, Settings(task_queue=task_queue)):
        s = await settled(handle, lambda s: s.last_activity_at == last_kept, "the queued events applied",
                          timeout=120)
        await time_env.sleep(1)
        audit = [a for a in await store.audit_of(ref) if a.action == "messages_dropped"]
        assert len(await store.ledger_of(ref)) == MAX_PENDING_EVENTS
        assert [a.detail["events"] for a in audit] == ["5"]
        assert s.stage == "Active" and await task_failures(handle) == 0


# --- starts: undecodable, and forged ----------------------------------------------------


@pytest.mark.parametrize("payload", [
    {"case_reference": 300001416143}, {"case_reference": None}, {}, "text", [1, 2], None, "no input"])
async def test_a_start_that_cannot_be_used_ends_with_a_clear_failure(engine: Engine, payload: Any) -> None:
    workflow_id = f"certificate-{engine.ref}"
    args = [] if payload == "no input" else [payload]
    handle = await engine.client.start_workflow("CertificateWorkflow", args=args, id=workflow_id,
                                                task_queue=engine.task_queue)
    cause = await start_refused(handle, "invalid_case_reference")
    assert "12 digits starting 3000" in cause.message
    assert await task_failures(handle) == 0


def forged_state(case_reference: str) -> dict[str, Any]:
    """Another certificate's state with an open task, as a forger would write it."""
    now_policy = Policy(version=2, inactivity_days=608, effective_from="2026-05-17T00:00:00+01:00")
    state = CertificateState(
        case_reference=case_reference, loaded=True, policy=now_policy,
        registration=Registration(provider_firm_id=FIRM, office_code="2L847Q",
                                  provider_contact_login="CASEWORKER1", granted_on="2020-01-06"),
        task=OpenTask(task_id=f"TASK-{case_reference}-001", kind=TaskKind.REVIEW,
                      raised_at="2026-01-01T00:00:00+00:00"),
        tasks_raised=1)
    return state.model_dump(mode="json")


async def test_a_forged_start_cannot_set_the_engines_state(engine: Engine) -> None:
    now = await engine.now()
    victim = engine.ref
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, victim, last_activity_at=now - 10 * DAY, poa_paid="2500.00")
    close = {"caseworker": "FORGER", "decision": "close", "reason": "forged"}
    forgeries = {
        # The fields the input used to accept from anyone:
        "old": {"state": forged_state(victim), "pending_decisions": [close], "history_limit": 1},
        # The engine's own continue-as-new field, from outside:
        "carried": {"carried": {"state": forged_state(victim), "pending_decisions": [close]}},
    }
    for n, (kind, fields) in enumerate(forgeries.items()):
        unused = f"3000{(int(victim[4:]) + n + 1) % 10**8:08d}"
        await add_certificate(engine.store, unused, last_activity_at=now - 10 * DAY)
        handle = await engine.client.start_workflow(
            "CertificateWorkflow", {"case_reference": unused, **fields}, id=f"certificate-{unused}",
            task_queue=engine.task_queue)
        await engine.env.sleep(1)
        s = CertificateStatus.model_validate(await handle.query("status"))
        assert (s.case_reference, s.stage, s.open_task) == (unused, "Active", None), kind
        assert s.inactivity_deadline == now - 10 * DAY + 608 * DAY  # read from the registry
        assert await task_failures(handle) == 0
    # The victim's payments on account are untouched and it is still open.
    assert await engine.store.recoupments_of(victim) == []
    cert = await engine.store.certificate_row(victim)
    assert cert.closed_at is None and cert.poa_recouped == Decimal("0.00")
    assert [a.actor for a in await engine.store.audit_of(victim) if a.actor == "FORGER"] == []


async def test_the_engines_own_continue_as_new_carries_its_state(time_env: WorkflowEnvironment,
                                                                store: Store) -> None:
    """The other side of the forged start: state carried by the engine itself is kept."""
    from tests.short_history import ShortHistoryCertificateWorkflow

    async with running_engine(time_env, store, certificate_workflow=ShortHistoryCertificateWorkflow) as engine:
        handle = await due_certificate(engine)
        for i in range(12):  # enough history to continue as new, with the notification open
            await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(
                event_id=f"old{i}", kind="bill", occurred_at=await engine.now() - 700 * DAY))
            await engine.env.sleep(1)
        history = await handle.fetch_history()
        s = await status(handle)
        assert s.open_notification is not None and s.notifications_raised == 1
        assert history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        assert len(await store.notifications_of(engine.ref)) == 1


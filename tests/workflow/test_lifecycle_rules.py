"""The review rules of docs/rules.md that the first engine left open, each driven on the
time-skipping server through the public names: the CSV imports (icr.services.importer with the
CertificateClient), the signals and updates of the contract, and checked on the `status`
query, the search attributes and the PostgreSQL rows.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle

from icr.adapters.temporal.client import CertificateClosed, MessageRefused
from icr.domain.models import (
    ActivityEvent,
    CertificateInput,
    CertificateStatus,
    CloseCertificateRequest,
    LaaDecisionRequest,
    ReassignContactRequest,
    RespondRequest,
)
from icr.domain.rules import UK, start_of_day_uk, workflow_id_for
from icr.services.importer import import_certificates, import_exercise_responses, import_users
from tests.conftest import FIRM, Engine
from tests.workflow_helpers import DAY, eventually, search_attributes
from workflows.certificate import CertificateWorkflow

MINUTE = timedelta(minutes=1)
USERS = [
    "login_id,provider_firm_id,roles,pre_silas",
    f"CASEWORKER1,{FIRM},case_management,false",
    f"CASEWORKER2,{FIRM},case_management,false",
    f"XOFFICE,{FIRM},case_management;cross_office,false",
    f"XBILLS,{FIRM},bill_preparation;cross_office,false",
    f"LEGACY01,{FIRM},case_management;cross_office,true",
]
CERT_HEADER = ("case_reference,provider_firm_id,office_code,provider_contact_login,granted_on,"
               "last_activity_at,poa_paid,poa_recouped")


def csv_file(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def import_registry(engine: Engine, tmp_path: Path, *, last_activity_at: datetime | None,
                          contact: str = "CASEWORKER1", name: str = "certificates.csv") -> Path:
    """The users and this test's certificate, through the CSV imports; returns the certificates file."""
    now = await engine.now()
    users = await import_users(engine.store, csv_file(tmp_path, "users.csv", USERS), actor="ops", now=now)
    assert users.ok, users.refused
    at = last_activity_at.isoformat() if last_activity_at else ""
    path = csv_file(tmp_path, name, [CERT_HEADER, f"{engine.ref},{FIRM},2L847Q,{contact},2020-01-06,{at},"
                                                  "900.00,0.00"])
    report = await import_certificates(engine.store, engine.certificates, path, actor="ops", now=now)
    assert report.ok and report.imported == 1, report.summary()
    return path


def handle_of(engine: Engine) -> WorkflowHandle:
    return engine.client.get_workflow_handle(workflow_id_for(engine.ref), result_type=CertificateStatus)


async def status(engine: Engine) -> CertificateStatus:
    return await engine.certificates.status(engine.ref)


async def until(engine: Engine, ok) -> CertificateStatus:  # noqa: ANN001
    return await eventually(lambda: status(engine), ok)


async def notified(engine: Engine, tmp_path: Path, **registry: object) -> CertificateStatus:
    """Imported 608 days and a minute after its last activity: its first notification is open."""
    now = await engine.now()
    await import_registry(engine, tmp_path, last_activity_at=now - 608 * DAY - MINUTE, **registry)  # type: ignore[arg-type]
    return await until(engine, lambda s: s.open_notification is not None)


async def audits(engine: Engine, action: str) -> list[tuple[str, dict]]:
    return [(a.actor, a.detail) for a in await engine.store.audit_of(engine.ref)
            if a.action == action]


# --- an exercise response imported while a notification is open ---------------------------


async def test_exercise_imported_mid_notice_answers_the_notification_and_nobody_is_chased(
        engine: Engine, tmp_path: Path) -> None:
    s = await notified(engine, tmp_path)
    assert s.open_notification is not None
    notification_id = s.open_notification.notification_id
    await engine.env.sleep(3 * DAY)
    path = csv_file(tmp_path, "exercise.csv", ["case_reference,response,reported_on",
                                               f"{engine.ref},complete_to_be_billed,2024-01-31"])
    report = await import_exercise_responses(engine.store, engine.certificates, path, actor="ops",
                                             now=await engine.now())
    assert (report.imported, report.workflows_signalled) == (1, 1)
    s = await until(engine, lambda s: s.open_notification is None)
    assert s.stage == "LaaReview" and s.on_exercise_list
    assert s.open_task is not None and s.open_task.kind == "review"
    rows = await engine.store.notifications_of(engine.ref)
    assert [(r.notification_id, r.status, r.response, r.responded_by) for r in rows] == [
        (notification_id, "Responded", "complete_to_be_billed", "LAA (exercise)")]
    assert [actor for actor, _ in await audits(engine, "response_recorded")] == ["LAA (exercise)"]
    attrs = await search_attributes(engine, handle_of(engine))
    assert attrs["IcrStage"] == "LaaReview" and attrs["ResponseDueDate"] is None
    # Never chased: no overdue, no return, no resend.
    await engine.env.sleep(30 * DAY)
    assert len(await engine.store.notifications_of(engine.ref)) == 1
    assert [t.kind for t in await engine.store.tasks_of(engine.ref)] == ["review"]


# --- stale events close nothing -----------------------------------------------------------


async def test_a_stale_event_moves_the_deadline_but_puts_off_no_return(engine: Engine, tmp_path: Path) -> None:
    s = await notified(engine, tmp_path)
    now = await engine.now()
    late = now - 608 * DAY  # newer than the last activity, but its own deadline has passed
    await engine.certificates.record_activity(engine.ref, ActivityEvent(
        event_id="late-1", kind="amendment", occurred_at=late, source="ccms"))
    s = await until(engine, lambda s: s.last_activity_at == late)
    assert s.stage == "AwaitingResponse" and s.notification_cycle == 1 and s.open_notification is not None
    assert s.inactivity_deadline == late + 608 * DAY
    assert [r.status for r in await engine.store.notifications_of(engine.ref)] == ["Open"]
    assert [r.event_id for r in await engine.store.ledger_of(engine.ref)] == ["late-1"]
    # The notification is still returned on its date, and resent.
    await engine.env.sleep(21 * DAY + MINUTE)
    s = await until(engine, lambda s: s.notification_cycle == 2)
    assert s.open_task is not None and s.open_task.kind == "no_response"
    assert (await search_attributes(engine, handle_of(engine)))["NotificationCycle"] == 2
    assert [r.status for r in await engine.store.notifications_of(engine.ref)] == ["No Response", "Open"]


# --- a bill between the response and the decision ---------------------------------------


async def test_a_bill_before_the_decision_spares_the_follow_up(engine: Engine, tmp_path: Path) -> None:
    await notified(engine, tmp_path)
    await engine.certificates.respond(engine.ref, RespondRequest(user_login_id="CASEWORKER1",
                                                                 response="complete_to_be_billed"))
    await engine.env.sleep(2 * DAY)
    await engine.certificates.record_activity(engine.ref, ActivityEvent(
        event_id="bill-1", kind="bill", occurred_at=await engine.now(), source="ccms"))
    await engine.env.sleep(1)
    s = await status(engine)
    assert s.open_task is not None and s.stage == "LaaReview"
    await engine.certificates.send_decision(engine.ref, LaaDecisionRequest(
        caseworker="CW1", decision="keep_open", reason="billing in hand", task_id=s.open_task.task_id))
    s = await until(engine, lambda s: s.open_task is None)
    assert s.stage == "Active" and s.follow_up_due_at is None
    await engine.env.sleep(400 * DAY)  # past 31 March
    assert [(t.kind, t.decision) for t in await engine.store.tasks_of(engine.ref)] == [("review", "keep_open")]


# --- a late registration carries on the review --------------------------------------------


async def test_a_late_registration_closes_its_task_and_notifies_the_imported_contact(
        engine: Engine, tmp_path: Path) -> None:
    now = await engine.now()
    await engine.certificates.record_activity(engine.ref, ActivityEvent(
        event_id="a1", kind="application", occurred_at=now - 700 * DAY, source="ccms"))
    s = await until(engine, lambda s: s.open_task is not None)
    assert s.open_task is not None and s.open_task.kind == "registration_missing" and not s.registered
    await engine.env.sleep(2 * DAY)
    await import_registry(engine, tmp_path, last_activity_at=None, contact="CASEWORKER2")
    s = await until(engine, lambda s: s.open_notification is not None)
    assert s.open_task is None and s.stage == "AwaitingResponse" and s.registered
    assert s.open_notification is not None and s.open_notification.assigned_to == "CASEWORKER2"
    tasks = await engine.store.tasks_of(engine.ref)
    assert [(t.kind, t.is_open, t.decision, t.decided_by, t.decision_reason) for t in tasks] == [
        ("registration_missing", False, None, "engine", "registered")]
    assert [(n.assigned_to, n.is_open) for n in await engine.store.notifications_of(engine.ref)] == [
        ("CASEWORKER2", True)]
    attrs = await search_attributes(engine, handle_of(engine))
    assert (attrs["IcrStage"], attrs["ProviderFirmId"]) == ("AwaitingResponse", FIRM)


# --- closed while unregistered stays closed -------------------------------------------------


async def test_closed_while_unregistered_stays_closed(engine: Engine, tmp_path: Path) -> None:
    now = await engine.now()
    await engine.certificates.record_activity(engine.ref, ActivityEvent(
        event_id="a1", kind="application", occurred_at=now - 700 * DAY, source="ccms"))
    s = await until(engine, lambda s: s.open_task is not None)
    assert s.open_task is not None
    await engine.certificates.send_decision(engine.ref, LaaDecisionRequest(
        caseworker="CW1", decision="close", reason="no such case", task_id=s.open_task.task_id))
    final = await handle_of(engine).result()
    assert final.stage == "Closed"
    row = await engine.store.closed_unregistered_row(engine.ref)
    assert row is not None and row.closed_by == "CW1"

    # An activity source reports again: refused, the review is over.
    with pytest.raises(CertificateClosed):
        await engine.certificates.record_activity(engine.ref, ActivityEvent(
            event_id="a2", kind="amendment", occurred_at=await engine.now()))
    # An import neither registers nor restarts it.
    users = await import_users(engine.store, csv_file(tmp_path, "users.csv", USERS), actor="ops", now=now)
    assert users.ok
    path = csv_file(tmp_path, "c.csv", [CERT_HEADER, f"{engine.ref},{FIRM},2L847Q,CASEWORKER1,2020-01-06,,0.00,0.00"])
    report = await import_certificates(engine.store, engine.certificates, path, actor="ops", now=await engine.now())
    assert (report.closed, report.imported, report.workflows_started) == (1, 0, 0)
    assert await engine.store.certificate_row(engine.ref) is None
    # Even a new review (the server forgot the old one after its retention period) closes at
    # once: no task raised, no task id reused.
    restarted = await engine.client.start_workflow(
        CertificateWorkflow.run, CertificateInput(case_reference=engine.ref), id=workflow_id_for(engine.ref),
        task_queue=engine.task_queue, start_signal=CertificateWorkflow.record_activity.__name__,
        start_signal_args=[ActivityEvent(event_id="a3", kind="bill", occurred_at=await engine.now())])
    again = CertificateStatus.model_validate(await restarted.result())
    assert again.stage == "Closed" and again.closed_reason == "already closed in the registry"
    assert again.open_task is None
    assert [(t.task_id, t.is_open) for t in await engine.store.tasks_of(engine.ref)] == [
        (f"TASK-{engine.ref}-001", False)]


# --- who may act ------------------------------------------------------------------------


async def test_who_may_act_and_a_reimport_keeps_the_reassignment(engine: Engine, tmp_path: Path) -> None:
    await notified(engine, tmp_path, contact="LEGACY01")
    path = tmp_path / "certificates.csv"
    # The pre-SiLAS login owns the notification but never responds itself.
    with pytest.raises(MessageRefused) as refused:
        await engine.certificates.respond(engine.ref, RespondRequest(user_login_id="LEGACY01",
                                                                     response="case_ongoing"))
    assert refused.value.code == "pre_silas_login"
    assert [r.status for r in await engine.store.notifications_of(engine.ref)] == ["Open"]
    # A Cross Office user who holds another role, even one that cannot respond, reassigns.
    result = await engine.certificates.reassign(engine.ref, ReassignContactRequest(
        user_login_id="XBILLS", new_contact_login_id="CASEWORKER2"))
    assert result.provider_contact_login == "CASEWORKER2"
    # The same registry file again: the reassignment stands.
    report = await import_certificates(engine.store, engine.certificates, path, actor="ops", now=await engine.now())
    assert (report.unchanged, report.updated, report.workflows_signalled) == (1, 0, 1)
    row = await engine.store.certificate_row(engine.ref)
    assert (row.provider_contact_login, row.imported_contact_login) == ("CASEWORKER2", "LEGACY01")
    # A Cross Office user answers for the legacy login; the next review goes to the new contact.
    await engine.certificates.respond(engine.ref, RespondRequest(user_login_id="XOFFICE", response="case_ongoing"))
    await engine.env.sleep(608 * DAY + MINUTE)
    s = await until(engine, lambda s: s.open_notification is not None)
    assert s.open_notification is not None and s.open_notification.assigned_to == "CASEWORKER2"
    assert s.provider_contact_login == "CASEWORKER2"


# --- stale decisions and late responses ------------------------------------------------------


async def test_a_decision_for_another_task_is_refused_and_audited(engine: Engine, tmp_path: Path) -> None:
    await notified(engine, tmp_path)
    await engine.certificates.respond(engine.ref, RespondRequest(user_login_id="CASEWORKER1",
                                                                 response="complete_court_assessment"))
    s = await status(engine)
    assert s.open_task is not None
    open_task = s.open_task.task_id
    stale = f"TASK-{engine.ref}-009"
    await engine.certificates.send_decision(engine.ref, LaaDecisionRequest(
        caseworker="CW1", decision="close", reason="stale click", task_id=stale))
    await engine.env.sleep(1)
    refusals = await until(engine, lambda s: any("refused" in h.what for h in s.history))
    assert refusals.stage == "LaaReview" and refusals.open_task is not None
    assert refusals.open_task.task_id == open_task
    assert [(actor, d["task_id"]) for actor, d in await audits(engine, "decision_refused")] == [("CW1", stale)]
    assert [t.is_open for t in await engine.store.tasks_of(engine.ref)] == [True]
    assert (await engine.store.certificate_row(engine.ref)).closed_at is None
    await engine.certificates.send_decision(engine.ref, LaaDecisionRequest(
        caseworker="CW1", decision="close", reason="done", task_id=open_task))
    assert (await handle_of(engine).result()).stage == "Closed"


async def test_a_response_a_minute_before_the_return_date_is_taken(engine: Engine, tmp_path: Path) -> None:
    s = await notified(engine, tmp_path)
    assert s.open_notification is not None
    await engine.env.sleep(s.open_notification.return_date - await engine.now() - MINUTE)
    result = await engine.certificates.respond(engine.ref, RespondRequest(user_login_id="CASEWORKER1",
                                                                          response="case_ongoing"))
    assert result.stage == "Active"
    assert [r.status for r in await engine.store.notifications_of(engine.ref)] == ["Responded"]


# --- the exercise follow-up year ---------------------------------------------------------


@pytest.mark.parametrize("billed_since_report", [False, True], ids=["no-bill-since", "billed-since"])
async def test_exercise_kept_open_is_followed_up_from_the_report(
        engine: Engine, tmp_path: Path, billed_since_report: bool) -> None:
    now = await engine.now()
    await import_users(engine.store, csv_file(tmp_path, "users.csv", USERS), actor="ops", now=now)
    path = csv_file(tmp_path, "exercise.csv", ["case_reference,response,reported_on",
                                               f"{engine.ref},complete_costs_negotiated,2024-01-31"])
    await import_exercise_responses(engine.store, engine.certificates, path, actor="ops", now=now)
    await import_registry(engine, tmp_path, last_activity_at=now - 607 * DAY)
    await until(engine, lambda s: s.inactivity_deadline is not None)
    if billed_since_report:  # reported late: older than the last activity, but after the report
        bill_at = start_of_day_uk(date(2024, 1, 31)) + timedelta(days=20)
        await engine.certificates.record_activity(engine.ref, ActivityEvent(
            event_id="bill-feb-2024", kind="bill", occurred_at=bill_at, source="ccms"))
        await eventually(lambda: engine.store.ledger_of(engine.ref), lambda rows: len(rows) == 1)
    await engine.env.sleep(DAY + MINUTE)
    s = await until(engine, lambda s: s.open_task is not None)
    assert s.open_task is not None and s.open_task.kind == "review" and s.open_notification is None
    await engine.certificates.send_decision(engine.ref, LaaDecisionRequest(
        caseworker="CW1", decision="keep_open", reason="awaiting the bill", task_id=s.open_task.task_id))
    await engine.env.sleep(1)
    if billed_since_report:
        s = await until(engine, lambda s: s.open_task is None)
        assert s.stage == "Active" and s.follow_up_due_at is None
        assert [t.kind for t in await engine.store.tasks_of(engine.ref)] == ["review"]
    else:  # due since 31 March 2024: raised at once
        s = await until(engine, lambda s: s.open_task is not None and s.open_task.kind == "follow_up")
        assert s.stage == "LaaReview"
        assert [(t.kind, t.is_open) for t in await engine.store.tasks_of(engine.ref)] == [
            ("review", False), ("follow_up", True)]
        assert (await search_attributes(engine, handle_of(engine)))["IcrStage"] == "LaaReview"


# --- one open task at a time; the letter; a bad close signal -----------------------------------


async def test_a_follow_up_due_during_a_notification_waits_for_it(engine: Engine, tmp_path: Path) -> None:
    await notified(engine, tmp_path)
    await engine.certificates.respond(engine.ref, RespondRequest(user_login_id="CASEWORKER1",
                                                                 response="complete_to_be_billed"))
    await engine.certificates.send_decision(engine.ref, LaaDecisionRequest(caseworker="CW1", decision="keep_open",
                                                                    reason="wait for the bill"))
    s = await until(engine, lambda s: s.follow_up_due_at is not None)
    assert s.follow_up_due_at is not None
    now = await engine.now()
    # A shorter policy makes the certificate due ten days before the follow-up.
    days = (s.follow_up_due_at - now).days - 10
    await engine.store.add_policy_version(days, now, "ops", "shorter", now)
    await engine.certificates.policy_changed(engine.ref)
    await until(engine, lambda s: s.policy_version is not None and s.policy_version > 2)
    await engine.env.sleep(s.follow_up_due_at - now + MINUTE)
    s = await status(engine)
    # Raised ten days before: still awaiting its answer, and the follow-up waits for it.
    assert s.open_notification is not None and s.open_task is None and s.stage == "AwaitingResponse"
    await engine.certificates.respond(engine.ref, RespondRequest(user_login_id="CASEWORKER1", response="case_ongoing"))
    s = await until(engine, lambda s: s.open_task is not None)
    assert s.open_task is not None and s.open_task.kind == "follow_up" and s.stage == "LaaReview"
    assert [(t.kind, t.is_open) for t in await engine.store.tasks_of(engine.ref)] == [
        ("review", False), ("follow_up", True)]


async def test_the_letter_states_the_policy_in_force(engine: Engine, tmp_path: Path) -> None:
    now = await engine.now()
    await engine.store.add_policy_version(608, now - MINUTE, "ops", "faster answers", now,
                                          response_due=timedelta(days=10), return_after=timedelta(days=30))
    s = await notified(engine, tmp_path)
    assert s.open_notification is not None
    (row,) = await engine.store.notifications_of(engine.ref)
    due = s.open_notification.due_date.astimezone(UK).strftime("%d %B %Y")
    assert f"within 10 days, by {due}" in row.letter and "within 30 days" in row.letter
    assert "21 days" not in row.letter
    assert s.open_notification.return_date - s.open_notification.date_assigned == 30 * DAY


async def test_a_close_signal_missing_its_fields_is_refused_and_audited(engine: Engine, tmp_path: Path) -> None:
    await notified(engine, tmp_path)
    handle = handle_of(engine)
    # As an outside system would send them: by name, as JSON.
    await handle.signal(CertificateWorkflow.close_certificate, {})
    await handle.signal(CertificateWorkflow.close_certificate, {"reason": "discharged"})
    await engine.env.sleep(1)
    s = await until(engine, lambda s: len([h for h in s.history if "close_certificate refused" in h.what]) == 2)
    assert s.stage == "AwaitingResponse" and s.closed_at is None
    assert [d["reason"] for _, d in await audits(engine, "close_refused")] == [
        "reason is required (why the certificate was closed elsewhere)",
        "occurred_at is required (ISO 8601 with a timezone)"]
    assert (await engine.store.certificate_row(engine.ref)).closed_at is None
    await engine.certificates.close(engine.ref, CloseCertificateRequest(reason="discharged",
                                                                        occurred_at=await engine.now()))
    assert (await handle.result()).stage == "Closed"


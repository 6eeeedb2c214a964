"""Database tests of the migrations, the store (icr/adapters/db/store.py) and the certificate
activities, on real PostgreSQL (a fresh database per test, see conftest.py).

The rule (docs/rules.md): every event,
notification, response, decision, task, recoupment and policy change is recorded durably with
who and when, and no step may be done twice whatever fails and retries. So each activity is run
twice with the same input and the tables and audit_log are checked row by row.

Every instant is a fixed, timezone-aware datetime; expected values are written out literally.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.certificate_activities import CertificateActivities
from icr.adapters.db.migrate import migrate
from icr.adapters.db.store import Store
from icr.domain.models import (
    EXERCISE_ACTOR,
    ActivityEvent,
    AuditRefusal,
    ClaimExerciseResponse,
    CloseCertificate,
    CloseCertificateResult,
    CloseNotification,
    CloseTask,
    Decision,
    ExerciseResponse,
    LoadCertificateInput,
    MarkNotificationOverdue,
    NotificationStatus,
    RaiseNotification,
    RaiseTask,
    RecordActivityEvents,
    RecordResponse,
    Registration,
    Response,
    TaskKind,
    UpdateContact,
    User,
)
from icr.domain.rules import NOTIFICATION_SUBJECT, notification_letter
from tests.conftest import Postgres

UTC = UTC
UK = ZoneInfo("Europe/London")
DAY = timedelta(days=1)

REF = "300000000001"
REF2 = "300000000002"
FIRM = "26517"
IMPORTED_AT = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
T2 = datetime(2026, 11, 25, 16, 45, tzinfo=UTC)
GRANTED = date(2020, 1, 6)

ALL_TABLES = {
    "users", "certificates", "activity_ledger", "notifications", "laa_tasks", "recoupments",
    "policy_versions", "exercise_responses", "audit_log", "email_digests", "schema_migrations",
    "closed_certificates",
    "outages", "rollouts", "rollout_targets", "caseworkers",
}
RESPONSE_LABELS = [
    "Case Ongoing",
    "Case Complete to be Billed",
    "Case Complete Costs Negotiated",
    "Case Complete Court Assessment",
    "Case Complete No Bill Due",
]


# --- helpers -----------------------------------------------------------------------------


def registration(contact: str = "CASEWORKER1", office: str = "2L847Q",
                 granted_on: date = GRANTED) -> Registration:
    return Registration(provider_firm_id=FIRM, office_code=office, provider_contact_login=contact,
                        granted_on=granted_on)


async def register(store: Store, ref: str = REF, *, last_activity_at: datetime | None = None,
                   poa_paid: str = "0.00", poa_recouped: str = "0.00",
                   contact: str = "CASEWORKER1", at: datetime = IMPORTED_AT) -> None:
    result = await store.upsert_certificate(ref, registration(contact), last_activity_at,
                                            Decimal(poa_paid), Decimal(poa_recouped), "import", at)
    assert result.status == "imported"


async def twice(fn, step):
    """Run a real activity twice with the same input (a retry after a lost reply)."""
    env = ActivityEnvironment()
    first = await env.run(fn, step)
    second = await env.run(fn, step)
    return first, second


async def count(store: Store, table: str) -> int:
    return await store.pool.fetchval(f"SELECT count(*) FROM {table}")


async def audit_keys(store: Store, ref: str) -> list[tuple[str, str, str]]:
    """(idempotency key, action, actor) of a certificate's audit rows, in order."""
    return [(r.idempotency_key, r.action, r.actor) for r in await store.audit_of(ref)]


async def audit_row(store: Store, key: str) -> dict:
    row = await store.pool.fetchrow("SELECT * FROM audit_log WHERE idempotency_key = $1", key)
    assert row is not None, f"no audit row {key}"
    out = dict(row)
    out["detail"] = json.loads(row["detail"])
    return out


def raise_step(n: int = 1, at: datetime = T0, ref: str = REF) -> RaiseNotification:
    return RaiseNotification(
        case_reference=ref, notification_id=f"{ref}-n{n}", cycle=n, provider_firm_id=FIRM,
        assigned_to="CASEWORKER1", date_assigned=at, due_date=at + 14 * DAY,
        return_date=at + 21 * DAY, subject=NOTIFICATION_SUBJECT,
        letter=notification_letter(ref, at + 14 * DAY, response_due=14 * DAY, return_after=21 * DAY))


@pytest.fixture
def acts(store: Store) -> CertificateActivities:
    return CertificateActivities(store)


# --- 1. migrations -------------------------------------------------------------------------


async def test_migrations_build_the_schema_from_an_empty_database(postgres: Postgres) -> None:
    name = f"t_empty_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres.admin_url)
    await admin.execute(f"CREATE DATABASE {name}")  # from template1: no ICR tables at all
    await admin.close()
    try:
        conn = await asyncpg.connect(postgres.url(name))
        try:
            before = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            assert before == []

            assert await migrate(conn) == [1, 2, 3, 4, 5, 6, 7, 8]
            tables = {r["tablename"] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            assert tables == ALL_TABLES

            applied = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
            assert [(r["version"], r["name"]) for r in applied] == [
                (1, "001_initial.sql"), (2, "002_email_digests.sql"), (3, "003_rules.sql"), (4, "004_mail.sql"),
                (5, "005_policy_outages.sql"), (6, "006_caseworkers.sql"),
                (7, "007_ledger_sequence.sql"), (8, "008_portal_indexes.sql")]

            # Nothing is re-applied (a re-run of 001 would fail on CREATE TABLE anyway).
            assert await migrate(conn) == []
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 8

            policies = await conn.fetch("SELECT * FROM policy_versions ORDER BY version")
            assert [(p["version"], p["inactivity_days"]) for p in policies] == [(1, 365), (2, 608)]
            assert policies[0]["effective_from"] == datetime(2000, 1, 1, tzinfo=UTC)
            # Midnight on 17 May 2026 in the UK (BST), i.e. 23:00 UTC on the 16th.
            assert policies[1]["effective_from"] == datetime(2026, 5, 17, tzinfo=UK)
            assert policies[1]["effective_from"] == datetime(2026, 5, 16, 23, 0, tzinfo=UTC)
            for p in policies:
                assert (p["response_due"], p["return_after"], p["max_unanswered_cycles"]) == (14 * DAY, 21 * DAY, 3)
                assert p["created_by"] == "migration"
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(postgres.admin_url)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


# --- 2. every activity, run twice, writes once ---------------------------------------------


async def test_record_activity_events_twice_records_each_event_once(
        store: Store, acts: CertificateActivities) -> None:
    occurred_1 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
    occurred_2 = datetime(2026, 10, 5, 15, 30, tzinfo=UTC)
    step = RecordActivityEvents(
        case_reference=REF, received_at=T0,
        events=[
            ActivityEvent(event_id="E1", kind="bill", occurred_at=occurred_1, source="CCMS"),
            ActivityEvent(event_id="E2", kind="amendment", occurred_at=occurred_2, source=None),
            # The same event id twice in one batch is recorded once.
            ActivityEvent(event_id="E1", kind="bill", occurred_at=occurred_1, source="CCMS"),
        ])
    first, second = await twice(acts.record_activity_events, step)
    # Both runs return the ledger's rows: a caller whose first run was lost still sees them.
    assert [(e.event_id, e.kind, e.occurred_at) for e in first.events] == [
        ("E1", "bill", occurred_1), ("E2", "amendment", occurred_2)]
    assert second == first and first.refused == []
    assert first.events[0].seq < first.events[1].seq

    # Events of a certificate not yet registered are kept too.
    assert await store.certificate_row(REF) is None
    ledger = await store.ledger_of(REF)
    assert [(r.event_id, r.kind, r.occurred_at, r.source, r.received_at) for r in ledger] == [
        ("E1", "bill", occurred_1, "CCMS", T0),
        ("E2", "amendment", occurred_2, None, T0),
    ]
    assert await count(store, "activity_ledger") == 2
    assert await audit_keys(store, REF) == [
        (f"{REF}-event-E1", "activity_recorded", "CCMS"),
        (f"{REF}-event-E2", "activity_recorded", "activity source"),
    ]
    e1 = await audit_row(store, f"{REF}-event-E1")
    assert e1["at"] == T0
    assert e1["detail"] == {"event_id": "E1", "kind": "bill", "occurred_at": occurred_1.isoformat()}

    # A later batch overlapping the first: only the new event is new.
    later = RecordActivityEvents(
        case_reference=REF, received_at=T1,
        events=[ActivityEvent(event_id="E2", kind="amendment", occurred_at=occurred_2),
                ActivityEvent(event_id="E3", kind="case_plan", occurred_at=T1 - DAY, source="CCMS")])
    first, second = await twice(acts.record_activity_events, later)
    assert [e.event_id for e in first.events] == ["E2", "E3"] and second == first
    # The old event keeps its first sequence number: a workflow that applied it sees a duplicate.
    assert first.events[0].seq < first.events[1].seq
    assert await count(store, "activity_ledger") == 3
    assert await count(store, "audit_log") == 3


async def test_raise_notification_twice_raises_one(store: Store, acts: CertificateActivities) -> None:
    step = raise_step()
    assert await twice(acts.raise_notification, step) == (None, None)

    rows = await store.notifications_of(REF)
    assert len(rows) == 1
    assert await count(store, "notifications") == 1
    n = rows[0]
    assert n.notification_id == f"{REF}-n1"
    assert (n.provider_firm_id, n.assigned_to, n.cycle) == (FIRM, "CASEWORKER1", 1)
    assert n.subject == "Inactive Case Please Review"
    assert (n.date_assigned, n.due_date, n.return_date) == (
        T0, datetime(2026, 12, 7, 9, 0, tzinfo=UTC), datetime(2026, 12, 14, 9, 0, tzinfo=UTC))
    assert (n.status, n.is_open) == ("Open", True)
    assert list(n.available_responses) == RESPONSE_LABELS
    assert REF in n.letter and "07 December 2026" in n.letter
    assert (n.response, n.responded_by, n.responded_at, n.closed_at) == (None, None, None, None)

    assert await audit_keys(store, REF) == [(f"{REF}-n1-raised", "notification_raised", "engine")]
    audit = await audit_row(store, f"{REF}-n1-raised")
    assert audit["at"] == T0
    assert audit["detail"] == {"notification_id": f"{REF}-n1", "cycle": 1, "assigned_to": "CASEWORKER1",
                               "due_date": "2026-12-07T09:00:00+00:00"}


async def test_mark_notification_overdue_twice_marks_once(store: Store, acts: CertificateActivities) -> None:
    env = ActivityEnvironment()
    await env.run(acts.raise_notification, raise_step())
    step = MarkNotificationOverdue(case_reference=REF, notification_id=f"{REF}-n1", at=T0 + 14 * DAY)
    await twice(acts.mark_notification_overdue, step)

    [n] = await store.notifications_of(REF)
    assert (n.status, n.is_open, n.closed_at) == ("Overdue", True, None)
    assert await audit_keys(store, REF) == [
        (f"{REF}-n1-raised", "notification_raised", "engine"),
        (f"{REF}-n1-overdue", "notification_overdue", "engine"),
    ]
    audit = await audit_row(store, f"{REF}-n1-overdue")
    assert (audit["at"], audit["detail"]) == (T0 + 14 * DAY, {"notification_id": f"{REF}-n1"})


async def test_close_notification_twice_closes_once(store: Store, acts: CertificateActivities) -> None:
    env = ActivityEnvironment()
    await env.run(acts.raise_notification, raise_step())
    closed_at = T0 + 21 * DAY
    step = CloseNotification(case_reference=REF, notification_id=f"{REF}-n1",
                             status=NotificationStatus.NO_RESPONSE, at=closed_at)
    await twice(acts.close_notification, step)
    # A late close with another status does not rewrite the closed notification.
    await env.run(acts.close_notification, step.model_copy(
        update={"status": NotificationStatus.WITHDRAWN, "at": closed_at + DAY}))

    [n] = await store.notifications_of(REF)
    assert (n.status, n.is_open, n.closed_at) == ("No Response", False, closed_at)
    assert await audit_keys(store, REF) == [
        (f"{REF}-n1-raised", "notification_raised", "engine"),
        (f"{REF}-n1-closed", "notification_closed", "engine"),
    ]
    audit = await audit_row(store, f"{REF}-n1-closed")
    assert (audit["at"], audit["detail"]) == (
        closed_at, {"notification_id": f"{REF}-n1", "status": "No Response"})

    # Closed, so a new cycle's notification may be opened for the same certificate.
    await env.run(acts.raise_notification, raise_step(2, at=T2))
    assert [r.is_open for r in await store.notifications_of(REF)] == [False, True]


async def test_record_response_twice_records_once(store: Store, acts: CertificateActivities) -> None:
    env = ActivityEnvironment()
    await env.run(acts.raise_notification, raise_step())
    answered = T0 + 3 * DAY
    step = RecordResponse(case_reference=REF, response_key=f"{REF}-n1-response",
                          notification_id=f"{REF}-n1", response=Response.CASE_ONGOING,
                          message="Hearing listed for March.", responded_by="CASEWORKER1", at=answered)
    await twice(acts.record_response, step)

    [n] = await store.notifications_of(REF)
    assert (n.status, n.is_open, n.response, n.message, n.responded_by,
            n.responded_at, n.closed_at) == (
        "Responded", False, "case_ongoing", "Hearing listed for March.", "CASEWORKER1", answered, answered)
    ledger = await store.ledger_of(REF)
    assert [(r.event_id, r.kind, r.occurred_at, r.source, r.received_at) for r in ledger] == [
        (f"{REF}-n1-response-ongoing", "icr_ongoing_response", answered, "engine", answered)]
    assert await audit_keys(store, REF) == [
        (f"{REF}-n1-raised", "notification_raised", "engine"),
        (f"{REF}-n1-response-response", "response_recorded", "CASEWORKER1"),
    ]
    audit = await audit_row(store, f"{REF}-n1-response-response")
    assert (audit["at"], audit["detail"]) == (answered, {
        "notification_id": f"{REF}-n1", "response": "case_ongoing", "message": "Hearing listed for March."})

    # A second run of the step (even one carrying another answer) leaves the response unchanged.
    await env.run(acts.record_response, step.model_copy(update={
        "response": Response.COMPLETE_NO_BILL_DUE, "message": "changed", "at": answered + DAY}))
    [n] = await store.notifications_of(REF)
    assert (n.status, n.response, n.message, n.responded_at) == (
        "Responded", "case_ongoing", "Hearing listed for March.", answered)
    assert len(await store.ledger_of(REF)) == 1
    assert await count(store, "audit_log") == 2


async def test_record_response_not_ongoing_adds_no_ledger_row(store: Store, acts: CertificateActivities) -> None:
    env = ActivityEnvironment()
    await env.run(acts.raise_notification, raise_step())
    step = RecordResponse(case_reference=REF, response_key=f"{REF}-n1-response",
                          notification_id=f"{REF}-n1", response=Response.COMPLETE_TO_BE_BILLED,
                          message=None, responded_by="CASEWORKER1", at=T1)
    await twice(acts.record_response, step)
    [n] = await store.notifications_of(REF)
    assert (n.status, n.response, n.is_open) == ("Responded", "complete_to_be_billed", False)
    assert await store.ledger_of(REF) == []
    assert [k for k, _, _ in await audit_keys(store, REF)] == [f"{REF}-n1-raised", f"{REF}-n1-response-response"]


async def test_raise_task_twice_raises_one(store: Store, acts: CertificateActivities) -> None:
    step = RaiseTask(case_reference=REF, task_id=f"{REF}-t1", task_kind=TaskKind.REVIEW,
                     notification_id=f"{REF}-n1", response=Response.COMPLETE_COSTS_NEGOTIATED,
                     detail="Provider says costs negotiated: review for closure.", at=T0)
    await twice(acts.raise_task, step)

    tasks = await store.tasks_of(REF)
    assert len(tasks) == 1
    assert await count(store, "laa_tasks") == 1
    t = tasks[0]
    assert (t.task_id, t.kind, t.notification_id, t.response, t.detail, t.raised_at,
            t.is_open, t.decision, t.decided_by, t.decided_at) == (
        f"{REF}-t1", "review", f"{REF}-n1", "complete_costs_negotiated",
        "Provider says costs negotiated: review for closure.", T0, True, None, None, None)
    assert await audit_keys(store, REF) == [(f"{REF}-t1-raised", "task_raised", "engine")]
    audit = await audit_row(store, f"{REF}-t1-raised")
    assert (audit["at"], audit["detail"]) == (T0, {
        "task_id": f"{REF}-t1", "kind": "review",
        "detail": "Provider says costs negotiated: review for closure."})


async def test_close_task_records_the_decision_once(store: Store, acts: CertificateActivities) -> None:
    env = ActivityEnvironment()
    await env.run(acts.raise_task, RaiseTask(case_reference=REF, task_id=f"{REF}-t1",
                                             task_kind=TaskKind.NO_RESPONSE, detail="No response.", at=T0))
    step = CloseTask(case_reference=REF, task_id=f"{REF}-t1", decision=Decision.CLOSE,
                     decided_by="LAA-CW1", reason="No activity for 20 months.", at=T1)
    await twice(acts.close_task, step)
    # A second call with a different decision does not overwrite the first.
    await env.run(acts.close_task, CloseTask(case_reference=REF, task_id=f"{REF}-t1",
                                             decision=Decision.KEEP_OPEN, decided_by="LAA-CW2",
                                             reason="Changed my mind.", at=T2))

    [t] = await store.tasks_of(REF)
    assert (t.is_open, t.decision, t.decided_by, t.decision_reason, t.decided_at) == (
        False, "close", "LAA-CW1", "No activity for 20 months.", T1)
    assert await audit_keys(store, REF) == [
        (f"{REF}-t1-raised", "task_raised", "engine"),
        (f"{REF}-t1-closed", "decision_recorded", "LAA-CW1"),
    ]
    audit = await audit_row(store, f"{REF}-t1-closed")
    assert (audit["at"], audit["detail"]) == (T1, {
        "task_id": f"{REF}-t1", "decision": "close", "reason": "No activity for 20 months."})


async def test_claim_exercise_response_twice_claims_once(store: Store, acts: CertificateActivities) -> None:
    exercise = ExerciseResponse(case_reference=REF, response=Response.COMPLETE_NO_BILL_DUE,
                                reported_on=date(2026, 10, 30))
    assert (await store.upsert_exercise_response(exercise, EXERCISE_ACTOR, IMPORTED_AT)).status == "imported"
    step = ClaimExerciseResponse(case_reference=REF, claim_key=f"{REF}-exercise", at=T0)
    await twice(acts.claim_exercise_response, step)
    # A retry at another time keeps the first claim.
    await ActivityEnvironment().run(acts.claim_exercise_response, step.model_copy(update={"at": T1}))

    row = await store.pool.fetchrow("SELECT * FROM exercise_responses WHERE case_reference = $1", REF)
    assert (row["response"], row["reported_on"], row["claimed_at"], row["claim_key"]) == (
        "complete_no_bill_due", date(2026, 10, 30), T0, f"{REF}-exercise")
    assert await count(store, "exercise_responses") == 1
    assert await audit_keys(store, REF) == [
        (f"exercise-{REF}-{IMPORTED_AT.isoformat()}", "exercise_response_imported", EXERCISE_ACTOR),
        (f"{REF}-exercise-claimed", "exercise_response_applied", "engine"),
    ]
    assert (await audit_row(store, f"{REF}-exercise-claimed"))["at"] == T0


def close_step(ref: str = REF, recoup: bool = True, at: datetime = T0) -> CloseCertificate:
    return CloseCertificate(case_reference=ref, recoupment_id=f"{ref}-recoup", recoup=recoup,
                            reason="Case complete, no bill due", actor="LAA-CW1", at=at)


async def test_close_certificate_recoups_the_outstanding_poa_once(
        store: Store, acts: CertificateActivities) -> None:
    await register(store, poa_paid="1500.00", poa_recouped="500.00")
    first, second = await twice(acts.close_certificate, close_step())
    # The retry reports the amount recouped by this closure again, without recouping again.
    assert first == CloseCertificateResult(recouped="1000.00")
    assert second == CloseCertificateResult(recouped="1000.00")

    recoupments = await store.recoupments_of(REF)
    assert [(r.recoupment_id, r.amount, r.recouped_at, r.reason, r.actor) for r in recoupments] == [
        (f"{REF}-recoup", Decimal("1000.00"), T0, "Case complete, no bill due", "LAA-CW1")]
    assert await count(store, "recoupments") == 1
    cert = await store.certificate_row(REF)
    assert (cert.poa_paid, cert.poa_recouped) == (Decimal("1500.00"), Decimal("1500.00"))
    assert (cert.closed_at, cert.closed_reason) == (T0, "Case complete, no bill due")

    assert await audit_keys(store, REF) == [
        (f"certificate-{REF}-{IMPORTED_AT.isoformat()}", "certificate_imported", "import"),
        (f"{REF}-closed", "certificate_closed", "LAA-CW1"),
    ]
    audit = await audit_row(store, f"{REF}-closed")
    assert (audit["at"], audit["detail"]) == (T0, {"reason": "Case complete, no bill due", "recouped": "1000.00"})

    # A third retry, later: still one recoupment, closure time unchanged.
    third = await ActivityEnvironment().run(acts.close_certificate, close_step(at=T1))
    assert third.recouped == "1000.00"
    assert await count(store, "recoupments") == 1
    cert = await store.certificate_row(REF)
    assert (cert.poa_recouped, cert.closed_at) == (Decimal("1500.00"), T0)


async def test_close_certificate_with_nothing_outstanding_recoups_nothing(
        store: Store, acts: CertificateActivities) -> None:
    await register(store, poa_paid="500.00", poa_recouped="500.00")
    first, second = await twice(acts.close_certificate, close_step())
    assert first == CloseCertificateResult(recouped=None)
    assert second == CloseCertificateResult(recouped=None)
    assert await store.recoupments_of(REF) == []
    cert = await store.certificate_row(REF)
    assert (cert.poa_paid, cert.poa_recouped, cert.closed_at) == (
        Decimal("500.00"), Decimal("500.00"), T0)
    assert [k for k, _, _ in await audit_keys(store, REF)] == [
        f"certificate-{REF}-{IMPORTED_AT.isoformat()}", f"{REF}-closed"]
    assert (await audit_row(store, f"{REF}-closed"))["detail"] == {
        "reason": "Case complete, no bill due", "recouped": None}


async def test_close_certificate_without_recoup_leaves_the_poa(store: Store, acts: CertificateActivities) -> None:
    await register(store, poa_paid="1500.00", poa_recouped="500.00")
    first, second = await twice(acts.close_certificate, close_step(recoup=False))
    assert (first.recouped, second.recouped) == (None, None)
    assert await count(store, "recoupments") == 0
    cert = await store.certificate_row(REF)
    assert (cert.poa_recouped, cert.closed_at) == (Decimal("500.00"), T0)


async def test_close_certificate_unregistered_returns_none(store: Store, acts: CertificateActivities) -> None:
    first, second = await twice(acts.close_certificate, close_step(REF2))
    assert first == CloseCertificateResult(recouped=None)
    assert second == CloseCertificateResult(recouped=None)
    assert await count(store, "recoupments") == 0
    assert await count(store, "certificates") == 0
    assert [k for k, _, _ in await audit_keys(store, REF2)] == [f"{REF2}-closed"]


async def test_closed_while_unregistered_stays_closed_in_the_registry(
        store: Store, acts: CertificateActivities) -> None:
    assert (await store.load_certificate(REF2, T0)).closed is False
    await twice(acts.close_certificate, close_step(REF2, at=T0))
    await ActivityEnvironment().run(acts.close_certificate, close_step(REF2, at=T1))  # a late retry
    row = await store.closed_unregistered_row(REF2)
    assert row is not None and (row.closed_at, row.closed_reason, row.closed_by) == (
        T0, "Case complete, no bill due", "LAA-CW1")
    snap = await store.load_certificate(REF2, T1)
    assert snap.closed is True and snap.registration is None
    # A later import neither registers nor reopens it.
    result = await store.upsert_certificate(REF2, registration(), None, Decimal("0.00"), Decimal("0.00"),
                                            "import", T2)
    assert result.status == "closed"
    assert await store.certificate_row(REF2) is None
    assert (await store.load_certificate(REF2, T2)).closed is True
    # A registered certificate closes in its own row, not here.
    await register(store)
    await store.close_certificate(close_step(REF))
    assert await store.closed_unregistered_row(REF) is None


async def test_update_contact_twice_reassigns_once(store: Store, acts: CertificateActivities) -> None:
    await register(store, contact="CASEWORKER1")
    step = UpdateContact(case_reference=REF, new_contact_login_id="CASEWORKER2", actor="CROSSOFFICE1", at=T0)
    await twice(acts.update_contact, step)

    cert = await store.certificate_row(REF)
    assert (cert.provider_contact_login, cert.updated_at) == ("CASEWORKER2", T0)
    key = f"{REF}-contact-{T0.isoformat()}-CASEWORKER2"
    assert await audit_keys(store, REF) == [
        (f"certificate-{REF}-{IMPORTED_AT.isoformat()}", "certificate_imported", "import"),
        (key, "contact_reassigned", "CROSSOFFICE1"),
    ]
    assert (await audit_row(store, key))["detail"] == {"from": "CASEWORKER1", "to": "CASEWORKER2"}

    # A later reassignment, then a late retry of the first: the later one stands.
    await ActivityEnvironment().run(acts.update_contact, step.model_copy(
        update={"new_contact_login_id": "CASEWORKER3", "at": T1}))
    await ActivityEnvironment().run(acts.update_contact, step)
    cert = await store.certificate_row(REF)
    assert cert.provider_contact_login == "CASEWORKER3"
    assert len(await audit_keys(store, REF)) == 3
    assert (await audit_row(store, f"{REF}-contact-{T1.isoformat()}-CASEWORKER3"))["detail"] == {
        "from": "CASEWORKER2", "to": "CASEWORKER3"}


async def test_reimporting_the_same_contact_does_not_undo_a_reassignment(store: Store) -> None:
    await register(store, contact="CASEWORKER1")
    await store.update_contact(UpdateContact(case_reference=REF, new_contact_login_id="CASEWORKER2",
                                             actor="CROSSOFFICE1", at=T0))

    async def contacts() -> tuple[str, str]:
        cert = await store.certificate_row(REF)
        return cert.provider_contact_login, cert.imported_contact_login

    # The same file again: unchanged, the reassignment stands.
    same = (REF, registration("CASEWORKER1"), None, Decimal("0.00"), Decimal("0.00"), "import")
    assert (await store.upsert_certificate(*same, T1)).status == "unchanged"
    assert await contacts() == ("CASEWORKER2", "CASEWORKER1")
    # Another change in the row, same contact: updated, the reassignment still stands.
    other = (REF, registration("CASEWORKER1", office="9Z999Z"), None, Decimal("0.00"), Decimal("0.00"), "import")
    assert (await store.upsert_certificate(*other, T1 + DAY)).status == "updated"
    assert await contacts() == ("CASEWORKER2", "CASEWORKER1")
    # CCMS names a different contact: that one is taken.
    ccms = (REF, registration("CASEWORKER3", office="9Z999Z"), None, Decimal("0.00"), Decimal("0.00"), "import")
    assert (await store.upsert_certificate(*ccms, T2)).status == "updated"
    assert await contacts() == ("CASEWORKER3", "CASEWORKER3")
    assert (await audit_row(store, f"certificate-{REF}-{T2.isoformat()}"))["detail"] == {
        "provider_contact_login": {"from": "CASEWORKER2", "to": "CASEWORKER3"},
        "imported_contact_login": {"from": "CASEWORKER1", "to": "CASEWORKER3"}}


async def test_a_row_from_before_the_imported_contact_counts_its_contact_as_imported(store: Store) -> None:
    await register(store, contact="CASEWORKER1")
    await store.pool.execute("UPDATE certificates SET imported_contact_login = NULL")  # as before 003
    same = (REF, registration("CASEWORKER1"), None, Decimal("0.00"), Decimal("0.00"), "import")
    assert (await store.upsert_certificate(*same, T1)).status == "updated"  # records what was imported
    cert = await store.certificate_row(REF)
    assert (cert.provider_contact_login, cert.imported_contact_login) == ("CASEWORKER1", "CASEWORKER1")


async def test_audit_refusal_twice_audits_once(store: Store, acts: CertificateActivities) -> None:
    step = AuditRefusal(case_reference=REF, refusal_key=f"{REF}-refusal-1", actor="CCMS",
                        action="activity_refused", reason="unknown activity kind",
                        detail={"event_id": "E9", "kind": "telepathy"}, at=T0)
    await twice(acts.audit_refusal, step)
    assert await audit_keys(store, REF) == [(f"{REF}-refusal-1", "activity_refused", "CCMS")]
    audit = await audit_row(store, f"{REF}-refusal-1")
    assert (audit["at"], audit["detail"]) == (T0, {
        "reason": "unknown activity kind", "event_id": "E9", "kind": "telepathy"})
    assert await count(store, "audit_log") == 1


# --- 3. load_certificate -------------------------------------------------------------------


async def test_load_certificate_last_activity_is_the_latest_of_import_and_ledger(
        store: Store, acts: CertificateActivities) -> None:
    env = ActivityEnvironment()
    imported_activity = datetime(2025, 1, 10, 11, 0, tzinfo=UTC)
    await register(store, last_activity_at=imported_activity)

    snap = await env.run(acts.load_certificate, LoadCertificateInput(case_reference=REF, at=T0))
    assert snap.case_reference == REF
    assert snap.registration == registration()
    assert snap.last_activity_at == imported_activity
    assert snap.closed is False
    assert snap.exercise_response is None

    # An older ledger event does not move it back.
    await store.record_activity_events(RecordActivityEvents(case_reference=REF, received_at=T0, events=[
        ActivityEvent(event_id="OLD", kind="bill", occurred_at=datetime(2024, 12, 1, tzinfo=UTC))]))
    assert (await store.load_certificate(REF, T0)).last_activity_at == imported_activity

    # A newer one wins.
    newer = datetime(2025, 6, 1, 14, 0, tzinfo=UTC)
    await store.record_activity_events(RecordActivityEvents(case_reference=REF, received_at=T0, events=[
        ActivityEvent(event_id="NEW", kind="amendment", occurred_at=newer)]))
    assert (await store.load_certificate(REF, T0)).last_activity_at == newer


async def test_load_certificate_without_import_activity_or_registration(store: Store) -> None:
    # Registered with no activity date and nothing in the ledger.
    await register(store, last_activity_at=None)
    snap = await store.load_certificate(REF, T0)
    assert snap.registration is not None
    assert snap.last_activity_at is None

    # Not registered: the ledger alone.
    occurred = datetime(2026, 2, 3, 4, 5, tzinfo=UTC)
    await store.record_activity_events(RecordActivityEvents(case_reference=REF2, received_at=T0, events=[
        ActivityEvent(event_id="E1", kind="bill", occurred_at=occurred)]))
    snap = await store.load_certificate(REF2, T0)
    assert snap.registration is None
    assert snap.last_activity_at == occurred
    assert snap.closed is False


async def test_load_certificate_shows_an_unclaimed_exercise_response(store: Store) -> None:
    await register(store)
    exercise = ExerciseResponse(case_reference=REF, response=Response.COMPLETE_TO_BE_BILLED,
                                reported_on=date(2026, 10, 30))
    await store.upsert_exercise_response(exercise, EXERCISE_ACTOR, IMPORTED_AT)
    assert (await store.load_certificate(REF, T0)).exercise_response == exercise
    # Not someone else's.
    assert (await store.load_certificate(REF2, T0)).exercise_response is None

    await store.claim_exercise_response(ClaimExerciseResponse(case_reference=REF, claim_key=f"{REF}-x", at=T0))
    assert (await store.load_certificate(REF, T1)).exercise_response is None


async def test_load_certificate_policy_in_force(store: Store) -> None:
    await register(store)
    v2_from = datetime(2026, 5, 17, tzinfo=UK)  # 2026-05-16T23:00Z

    before = await store.load_certificate(REF, datetime(2026, 5, 16, 22, 59, tzinfo=UTC))
    assert (before.policy.version, before.policy.inactivity_days) == (1, 365)
    assert before.next_policy_change_at == v2_from

    well_before = await store.load_certificate(REF, datetime(2025, 3, 1, tzinfo=UTC))
    assert (well_before.policy.version, well_before.policy.inactivity_days) == (1, 365)
    assert well_before.next_policy_change_at == v2_from

    # 00:30 on 17 May in the UK is still 16 May in UTC: v2 already.
    just_after = await store.load_certificate(REF, datetime(2026, 5, 16, 23, 30, tzinfo=UTC))
    assert (just_after.policy.version, just_after.policy.inactivity_days) == (2, 608)
    assert just_after.policy.effective_from == v2_from
    assert just_after.next_policy_change_at is None

    after = await store.load_certificate(REF, T0)
    assert (after.policy.version, after.policy.inactivity_days, after.policy.response_due,
            after.policy.return_after, after.policy.max_unanswered_cycles) == (2, 608, 14 * DAY, 21 * DAY, 3)
    assert after.next_policy_change_at is None


async def test_load_certificate_closed_after_close_certificate(store: Store) -> None:
    await register(store)
    assert (await store.load_certificate(REF, T0)).closed is False
    await store.close_certificate(close_step(recoup=False))
    snap = await store.load_certificate(REF, T1)
    assert snap.closed is True
    assert snap.registration == registration()


# --- 4. the registry imports ---------------------------------------------------------------


async def test_upsert_user_imports_then_unchanged_then_updated(store: Store) -> None:
    user = User(login_id="CASEWORKER1", provider_firm_id=FIRM,
                roles=["case_management", "bill_preparation"], pre_silas=False)

    async def user_audits() -> list[dict]:
        rows = await store.pool.fetch(
            "SELECT * FROM audit_log WHERE idempotency_key LIKE 'user-CASEWORKER1-%' ORDER BY at, id")
        return [{"key": r["idempotency_key"], "action": r["action"], "actor": r["actor"], "at": r["at"],
                 "detail": json.loads(r["detail"])} for r in rows]

    assert (await store.upsert_user(user, "import", IMPORTED_AT)).status == "imported"
    assert await store.load_users(["CASEWORKER1"]) == [
        User(login_id="CASEWORKER1", provider_firm_id=FIRM,
             roles=["bill_preparation", "case_management"], pre_silas=False)]

    # The same input (roles in another order) is unchanged: no new audit row, no write.
    assert (await store.upsert_user(user, "import", T0)).status == "unchanged"
    same = user.model_copy(update={"roles": ["bill_preparation", "case_management"]})
    assert (await store.upsert_user(same, "import", T0 + DAY)).status == "unchanged"
    row = await store.pool.fetchrow("SELECT * FROM users WHERE login_id = 'CASEWORKER1'")
    assert row["updated_at"] == IMPORTED_AT
    assert await user_audits() == [{
        "key": f"user-CASEWORKER1-{IMPORTED_AT.isoformat()}", "action": "user_imported", "actor": "import",
        "at": IMPORTED_AT, "detail": {"login_id": "CASEWORKER1", "provider_firm_id": FIRM,
                                      "roles": ["bill_preparation", "case_management"], "pre_silas": False,
                                      "email": None}}]

    changed = user.model_copy(update={"roles": ["case_management_supervisor"], "pre_silas": True})
    assert (await store.upsert_user(changed, "import", T1)).status == "updated"
    assert await store.load_users(["CASEWORKER1"]) == [
        User(login_id="CASEWORKER1", provider_firm_id=FIRM, roles=["case_management_supervisor"],
             pre_silas=True)]
    audits = await user_audits()
    assert len(audits) == 2
    assert audits[1] == {
        "key": f"user-CASEWORKER1-{T1.isoformat()}", "action": "user_updated", "actor": "import", "at": T1,
        "detail": {"login_id": "CASEWORKER1", "provider_firm_id": FIRM,
                   "roles": ["case_management_supervisor"], "pre_silas": True, "email": None}}
    assert await count(store, "users") == 1


async def test_upsert_certificate_imports_then_unchanged_then_updated(store: Store) -> None:
    last = datetime(2025, 1, 10, 11, 0, tzinfo=UTC)
    args = (REF, registration(), last, Decimal("1500.00"), Decimal("500.00"), "import")
    assert (await store.upsert_certificate(*args, IMPORTED_AT)).status == "imported"
    cert = await store.certificate_row(REF)
    assert (cert.provider_firm_id, cert.office_code, cert.provider_contact_login, cert.granted_on,
            cert.last_activity_at, cert.poa_paid, cert.poa_recouped, cert.registered_at,
            cert.updated_at, cert.closed_at) == (
        FIRM, "2L847Q", "CASEWORKER1", GRANTED, last, Decimal("1500.00"), Decimal("500.00"),
        IMPORTED_AT, IMPORTED_AT, None)
    import_key = f"certificate-{REF}-{IMPORTED_AT.isoformat()}"
    imported = await audit_row(store, import_key)
    assert (imported["action"], imported["actor"], imported["at"]) == ("certificate_imported", "import", IMPORTED_AT)
    assert imported["detail"] == {
        "provider_firm_id": FIRM, "office_code": "2L847Q", "provider_contact_login": "CASEWORKER1",
        "granted_on": "2020-01-06", "last_activity_at": str(last), "poa_paid": "1500.00",
        "poa_recouped": "500.00", "imported_contact_login": "CASEWORKER1"}

    # The same input (the amount written differently) is unchanged.
    assert (await store.upsert_certificate(*args, T0)).status == "unchanged"
    assert (await store.upsert_certificate(REF, registration(), last, Decimal("1500"), Decimal("500.0"),
                                           "import", T0 + DAY)).status == "unchanged"
    assert await audit_keys(store, REF) == [(import_key, "certificate_imported", "import")]
    assert (await store.certificate_row(REF)).updated_at == IMPORTED_AT

    # A change: updated, audited with what changed (from and to), and only that.
    assert (await store.upsert_certificate(REF, registration(office="9Z999Z"), last, Decimal("2000.00"),
                                           Decimal("500.00"), "import", T1)).status == "updated"
    cert = await store.certificate_row(REF)
    assert (cert.office_code, cert.poa_paid, cert.poa_recouped, cert.updated_at, cert.registered_at) == (
        "9Z999Z", Decimal("2000.00"), Decimal("500.00"), T1, IMPORTED_AT)
    update_key = f"certificate-{REF}-{T1.isoformat()}"
    assert await audit_keys(store, REF) == [
        (import_key, "certificate_imported", "import"), (update_key, "certificate_updated", "import")]
    updated = await audit_row(store, update_key)
    assert updated["at"] == T1
    assert updated["detail"] == {"office_code": {"from": "2L847Q", "to": "9Z999Z"},
                                 "poa_paid": {"from": "1500.00", "to": "2000.00"}}
    assert await count(store, "certificates") == 1


async def test_upsert_exercise_response_imports_then_unchanged_then_updated(store: Store) -> None:
    exercise = ExerciseResponse(case_reference=REF, response=Response.CASE_ONGOING,
                                reported_on=date(2026, 10, 30))

    async def row():
        return await store.pool.fetchrow("SELECT * FROM exercise_responses WHERE case_reference = $1", REF)

    assert (await store.upsert_exercise_response(exercise, EXERCISE_ACTOR, IMPORTED_AT)).status == "imported"
    r = await row()
    assert (r["response"], r["reported_on"], r["imported_at"], r["claimed_at"]) == (
        "case_ongoing", date(2026, 10, 30), IMPORTED_AT, None)
    import_key = f"exercise-{REF}-{IMPORTED_AT.isoformat()}"
    assert (await audit_row(store, import_key))["detail"] == {
        "response": "case_ongoing", "reported_on": "2026-10-30"}

    assert (await store.upsert_exercise_response(exercise, EXERCISE_ACTOR, T0)).status == "unchanged"
    assert (await row())["imported_at"] == IMPORTED_AT
    assert await audit_keys(store, REF) == [(import_key, "exercise_response_imported", EXERCISE_ACTOR)]

    changed = exercise.model_copy(update={"response": Response.COMPLETE_NO_BILL_DUE,
                                          "reported_on": date(2026, 11, 2)})
    assert (await store.upsert_exercise_response(changed, EXERCISE_ACTOR, T1)).status == "updated"
    r = await row()
    assert (r["response"], r["reported_on"], r["imported_at"]) == ("complete_no_bill_due", date(2026, 11, 2), T1)
    update_key = f"exercise-{REF}-{T1.isoformat()}"
    assert await audit_keys(store, REF) == [
        (import_key, "exercise_response_imported", EXERCISE_ACTOR),
        (update_key, "exercise_response_imported", EXERCISE_ACTOR)]
    update = await audit_row(store, update_key)
    assert (update["at"], update["detail"]) == (T1, {"response": "complete_no_bill_due",
                                                     "reported_on": "2026-11-02"})
    assert await count(store, "exercise_responses") == 1


async def test_claimed_exercise_response_is_not_rewritten(store: Store) -> None:
    exercise = ExerciseResponse(case_reference=REF, response=Response.COMPLETE_NO_BILL_DUE,
                                reported_on=date(2026, 10, 30))
    await store.upsert_exercise_response(exercise, EXERCISE_ACTOR, IMPORTED_AT)
    await store.claim_exercise_response(ClaimExerciseResponse(case_reference=REF, claim_key=f"{REF}-x", at=T0))
    audits_before = await audit_keys(store, REF)

    changed = exercise.model_copy(update={"response": Response.CASE_ONGOING, "reported_on": date(2026, 11, 20)})
    assert (await store.upsert_exercise_response(changed, EXERCISE_ACTOR, T1)).status == "unchanged"
    r = await store.pool.fetchrow("SELECT * FROM exercise_responses WHERE case_reference = $1", REF)
    assert (r["response"], r["reported_on"], r["imported_at"], r["claimed_at"], r["claim_key"]) == (
        "complete_no_bill_due", date(2026, 10, 30), IMPORTED_AT, T0, f"{REF}-x")
    assert await audit_keys(store, REF) == audits_before
    # And it does not come back as a fresh, unclaimed response.
    assert (await store.load_certificate(REF, T2)).exercise_response is None


# --- 5. policy versions --------------------------------------------------------------------


async def test_add_policy_version_numbers_sequentially_and_audits(store: Store) -> None:
    from_2027 = datetime(2027, 4, 1, tzinfo=UK)
    from_2028 = datetime(2028, 1, 1, tzinfo=UK)
    p3 = await store.add_policy_version(450, from_2027, "POLICY-ADMIN", "15 months", T0)
    assert (p3.version, p3.inactivity_days, p3.response_due, p3.return_after,
            p3.max_unanswered_cycles, p3.effective_from) == (3, 450, 14 * DAY, 21 * DAY, 3, from_2027)
    p4 = await store.add_policy_version(400, from_2028, "POLICY-ADMIN2", "shorter again", T1,
                                        response_due=10 * DAY, return_after=30 * DAY, max_unanswered_cycles=2)
    assert (p4.version, p4.inactivity_days, p4.response_due, p4.return_after,
            p4.max_unanswered_cycles, p4.effective_from) == (4, 400, 10 * DAY, 30 * DAY, 2, from_2028)

    rows = await store.pool.fetch("SELECT * FROM policy_versions ORDER BY version")
    assert [(r["version"], r["inactivity_days"], r["created_by"], r["created_at"], r["note"]) for r in rows][2:] == [
        (3, 450, "POLICY-ADMIN", T0, "15 months"), (4, 400, "POLICY-ADMIN2", T1, "shorter again")]
    assert [r["version"] for r in rows] == [1, 2, 3, 4]

    a3 = await audit_row(store, "policy-3")
    assert (a3["actor"], a3["action"], a3["at"], a3["case_reference"]) == ("POLICY-ADMIN", "policy_changed", T0, None)
    assert a3["detail"] == {"version": 3, "inactivity_days": 450, "response_due": "14 days, 0:00:00",
                            "return_after": "21 days, 0:00:00", "max_unanswered_cycles": 3,
                            "effective_from": from_2027.isoformat(), "note": "15 months"}
    a4 = await audit_row(store, "policy-4")
    assert (a4["actor"], a4["at"], a4["detail"]["version"], a4["detail"]["inactivity_days"]) == (
        "POLICY-ADMIN2", T1, 4, 400)
    assert await count(store, "audit_log") == 2

    # The new versions are what is in force from their dates.
    assert (await store.policy_in_force(T0)) == (
        (await store.load_certificate(REF, T0)).policy, from_2027)
    policy, next_at = await store.policy_in_force(datetime(2027, 6, 1, tzinfo=UTC))
    assert (policy.version, policy.inactivity_days, next_at) == (3, 450, from_2028)
    policy, next_at = await store.policy_in_force(datetime(2028, 2, 1, tzinfo=UTC))
    assert (policy.version, next_at) == (4, None)


async def test_open_tasks_is_the_whole_queue_oldest_first_at_any_size(store: Store) -> None:
    """`queue` reads the LAA's queue here: every open task (more than the 500 a visibility list
    was cut to), the longest waiting first, of one kind or one firm's certificates, with the count
    of all that match when only the first few are asked for."""
    other_firm = "40001"
    count = 605
    refs = [f"3000{i + 10_000:08d}" for i in range(count)]
    unregistered = refs[-1]  # its task asks for the missing registration; it has no firm
    minutes = [(i * 389) % count for i in range(count)]  # raised out of order; 389 is prime to 605
    # The bulk written in one go (the store's writes, one at a time, take a minute here); the
    # unregistered certificate's task through the store, as the engine raises it.
    await store.pool.executemany(
        """INSERT INTO certificates (case_reference, provider_firm_id, office_code, provider_contact_login,
               granted_on) VALUES ($1, $2, '2L847Q', 'CASEWORKER1', $3)""",
        [(ref, FIRM if i % 3 else other_firm, GRANTED) for i, ref in enumerate(refs[:-1])])
    await store.pool.executemany(
        "INSERT INTO laa_tasks (task_id, case_reference, kind, detail, raised_at) VALUES ($1, $2, $3, $4, $5)",
        [(f"TASK-{ref}-001", ref, "review" if i % 2 else "escalation", f"asks {i}",
          T0 + minutes[i] * timedelta(minutes=1)) for i, ref in enumerate(refs[:-1])])
    await store.raise_task(RaiseTask(case_reference=unregistered, task_id=f"TASK-{unregistered}-001",
                                     task_kind=TaskKind.REGISTRATION_MISSING, notification_id=None, response=None,
                                     detail=f"asks {count - 1}", at=T0 + minutes[-1] * timedelta(minutes=1)))
    decided = refs[:5]  # decided tasks leave the queue
    for ref in decided:
        await store.close_task(CloseTask(case_reference=ref, task_id=f"TASK-{ref}-001", decision=Decision.KEEP_OPEN,
                                         decided_by="LAA-CW-1", reason="ongoing", at=T1))
    open_refs = [ref for ref in refs if ref not in decided]
    oldest_first = sorted(open_refs, key=lambda ref: minutes[refs.index(ref)])

    queue = await store.open_tasks()
    assert queue.total == len(open_refs) == 600
    assert [t.case_reference for t in queue.tasks] == oldest_first
    assert [t.raised_at for t in queue.tasks] == sorted(t.raised_at for t in queue.tasks)
    assert all(t.is_open and t.task_id == f"TASK-{t.case_reference}-001" for t in queue.tasks)
    [missing] = [t for t in queue.tasks if t.case_reference == unregistered]
    assert (missing.kind, missing.provider_firm_id, missing.detail) == ("registration_missing", None,
                                                                        f"asks {count - 1}")

    first = await store.open_tasks(limit=10)
    assert (first.total, [t.case_reference for t in first.tasks]) == (600, oldest_first[:10])

    reviews = await store.open_tasks(kind="review")
    expected = [ref for ref in oldest_first if refs.index(ref) % 2 and ref != unregistered]
    assert (reviews.total, [t.case_reference for t in reviews.tasks]) == (len(expected), expected)

    of_firm = await store.open_tasks(firm=other_firm, limit=3)
    expected = [ref for ref in oldest_first if refs.index(ref) % 3 == 0 and ref != unregistered]
    assert (of_firm.total, [t.case_reference for t in of_firm.tasks]) == (len(expected), expected[:3])
    assert {t.provider_firm_id for t in of_firm.tasks} == {other_firm}
    assert (await store.open_tasks(firm="99999")).model_dump() == {"tasks": [], "total": 0}


async def test_each_row_model_holds_every_column_of_its_table(store: Store) -> None:
    """The Store's reads validate `SELECT *` into these models, which ignore unknown fields: a
    migration's new column missing from its model would be dropped without a word."""
    from icr.adapters.db import rows

    tables = {rows.CertificateRow: "certificates", rows.ClosedCertificateRow: "closed_certificates",
              rows.NotificationTableRow: "notifications", rows.TaskRow: "laa_tasks", rows.RecoupmentRow: "recoupments",
              rows.LedgerRow: "activity_ledger", rows.AuditRow: "audit_log", rows.DigestRow: "email_digests"}
    for model, table in tables.items():
        columns = {r["column_name"] for r in await store.pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table)}
        assert set(model.model_fields) == columns, table
    assert set(rows.QueuedTask.model_fields) == set(rows.TaskRow.model_fields) | {"provider_firm_id"}

"""All of the engine's SQL, in one place.

Every write is one transaction keyed by its business step (notification id, task id,
recoupment id, event id, ...) with `ON CONFLICT` / guarded `UPDATE`s, and audits under the
same key: run twice, it writes once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from icr.adapters.db import AnyConnection
from icr.adapters.db.rows import (
    AuditRow,
    CertificateRow,
    ClosedCertificateRow,
    DigestRow,
    LedgerRow,
    NotificationTableRow,
    QueuedTask,
    RecoupmentRow,
    TaskQueue,
    TaskRow,
)
from icr.domain.models import (
    RESPONSE_LABELS,
    ActivityEvent,
    ActivityKind,
    AuditRefusal,
    Caseworker,
    CertificateRecords,
    CertificateSnapshot,
    ClaimExerciseResponse,
    CloseCertificate,
    CloseNotification,
    CloseTask,
    ExerciseResponse,
    ExtendNotification,
    LedgerEvent,
    MarkNotificationOverdue,
    NotificationCounts,
    NotificationPage,
    NotificationQuery,
    NotificationRecord,
    NotificationRow,
    NotificationSort,
    NotificationStatus,
    OpenCertificate,
    Outage,
    OutageDeclaration,
    OutageRecord,
    Policy,
    PolicyChange,
    PolicyRecord,
    QueueDailyDigests,
    RaiseNotification,
    RaiseTask,
    RecordActivityEvents,
    RecordActivityResult,
    RecordResponse,
    RefusedEvent,
    Registration,
    Response,
    RolloutKind,
    RolloutRecord,
    TaskRecord,
    UpdateContact,
    User,
    money,
)

# Every open certificate, from the registry and the ledger (events for an unregistered one
# start its review too), with where its inactivity clock runs from: the latest of its
# registry activity and its ledger (or the start of its grant date, UK time, when it has
# neither), or a caseworker's later keep-open decision; the certificate's own review
# (`rules.load`, `apply_events`, `apply_decision`) counts the same moments.
_OPEN_CERTIFICATES = """
    ledger AS (
        SELECT case_reference, max(occurred_at) AS latest FROM activity_ledger GROUP BY case_reference
    ), kept_open AS (
        SELECT case_reference, max(decided_at) AS decided_at FROM laa_tasks
        WHERE decision = 'keep_open' GROUP BY case_reference
    ), known AS (
        SELECT coalesce(c.case_reference, l.case_reference) AS case_reference,
               c.case_reference IS NOT NULL AS registered, c.closed_at,
               coalesce(greatest(c.last_activity_at, l.latest),
                        c.granted_on::timestamp AT TIME ZONE 'Europe/London') AS anchor
        FROM certificates c FULL JOIN ledger l ON l.case_reference = c.case_reference
    ), open_certificates AS (
        SELECT k.case_reference, k.registered, greatest(k.anchor, ko.decided_at) AS clock_from,
               EXISTS (SELECT 1 FROM notifications n WHERE n.case_reference = k.case_reference
                       AND n.is_open) AS notified,
               EXISTS (SELECT 1 FROM laa_tasks t WHERE t.case_reference = k.case_reference
                       AND t.is_open) AS tasked
        FROM known k LEFT JOIN kept_open ko ON ko.case_reference = k.case_reference
        WHERE k.closed_at IS NULL
          -- closed while unregistered: no registry row holds the closure, its audit row does
          AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.idempotency_key = k.case_reference || '-closed')
    )"""


async def _audit(conn: AnyConnection, key: str, case_reference: str | None, actor: str,
                 action: str, detail: dict[str, Any], at: datetime) -> bool:
    """Record who did what; False when this step was already audited."""
    row = await conn.fetchrow(
        """INSERT INTO audit_log (idempotency_key, case_reference, actor, action, detail, at)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6)
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING id""",
        key, case_reference, actor, action, json.dumps(detail, default=str), at,
    )
    return row is not None


def _policy(row: asyncpg.Record) -> Policy:
    return Policy(
        version=row["version"], inactivity_days=row["inactivity_days"],
        response_due=row["response_due"], return_after=row["return_after"],
        max_unanswered_cycles=row["max_unanswered_cycles"], effective_from=row["effective_from"],
    )


def _policy_record(row: asyncpg.Record) -> PolicyRecord:
    return PolicyRecord(**_policy(row).model_dump(), created_by=row["created_by"],
                        created_at=row["created_at"], note=row["note"])


def _outage(row: asyncpg.Record) -> OutageRecord:
    return OutageRecord(outage_id=row["outage_id"], starts_at=row["starts_at"], ends_at=row["ends_at"],
                        reason=row["reason"], declared_by=row["declared_by"], declared_at=row["declared_at"])


def _rollout(row: asyncpg.Record) -> RolloutRecord:
    return RolloutRecord(**{name: row[name] for name in RolloutRecord.model_fields})


# The advisory lock class of roll-outs (the second key is the roll-out id).
_ROLLOUT_LOCK = 0x1C2_0005


@dataclass
class Upserted:
    """Outcome of importing one row."""

    # "imported", "updated", "unchanged", or "closed": a certificate closed in the registry,
    # left exactly as it is (nothing reopens it, its recorded payments stay as recouped).
    status: str


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- reads ---------------------------------------------------------------------------

    async def policy_in_force(self, at: datetime) -> tuple[Policy, datetime | None]:
        """The policy in force at `at` (latest effective_from, then highest version) and
        when the next known version takes effect."""
        async with self.pool.acquire() as conn:
            return await self._policy_in_force(conn, at)

    async def _policy_in_force(self, conn: AnyConnection, at: datetime) -> tuple[Policy, datetime | None]:
        row = await conn.fetchrow(
            """SELECT * FROM policy_versions WHERE effective_from <= $1
               ORDER BY effective_from DESC, version DESC LIMIT 1""", at)
        if row is None:
            raise LookupError(f"no inactivity policy is in force at {at.isoformat()}")
        next_at = await conn.fetchval(
            "SELECT min(effective_from) FROM policy_versions WHERE effective_from > $1", at)
        return _policy(row), next_at

    async def load_certificate(self, case_reference: str, at: datetime) -> CertificateSnapshot:
        async with self.pool.acquire() as conn:
            cert = await conn.fetchrow("SELECT * FROM certificates WHERE case_reference = $1",
                                       case_reference)
            latest = await conn.fetchval(
                "SELECT max(occurred_at) FROM activity_ledger WHERE case_reference = $1",
                case_reference)
            exercise = await conn.fetchrow(
                "SELECT * FROM exercise_responses WHERE case_reference = $1 AND claimed_at IS NULL",
                case_reference)
            closed_unregistered = await conn.fetchval(
                "SELECT true FROM closed_certificates WHERE case_reference = $1", case_reference)
            policy, next_at = await self._policy_in_force(conn, at)
            # Outages still to come or going on, and any that can move the open notification.
            outages = await conn.fetch(
                """SELECT * FROM outages WHERE ends_at > least($2, coalesce(
                       (SELECT min(date_assigned) FROM notifications WHERE case_reference = $1 AND is_open), $2))
                   ORDER BY starts_at, outage_id""", case_reference, at)
        registration = None
        if cert is not None:
            registration = Registration(
                provider_firm_id=cert["provider_firm_id"], office_code=cert["office_code"],
                provider_contact_login=cert["provider_contact_login"], granted_on=cert["granted_on"])
            if cert["last_activity_at"] is not None and (latest is None or cert["last_activity_at"] > latest):
                latest = cert["last_activity_at"]
        return CertificateSnapshot(
            case_reference=case_reference,
            registration=registration,
            last_activity_at=latest,
            closed=bool(closed_unregistered) or (cert is not None and cert["closed_at"] is not None),
            exercise_response=None if exercise is None else ExerciseResponse(
                case_reference=case_reference, response=Response(exercise["response"]),
                reported_on=exercise["reported_on"]),
            policy=policy,
            next_policy_change_at=next_at,
            outages=[Outage(**_outage(o).model_dump(include=set(Outage.model_fields))) for o in outages],
            poa_outstanding=None if cert is None else money(cert["poa_paid"] - cert["poa_recouped"]),
        )

    async def load_users(self, login_ids: list[str]) -> list[User]:
        rows = await self.pool.fetch("SELECT * FROM users WHERE login_id = ANY($1::text[])", login_ids)
        return [User(login_id=r["login_id"], provider_firm_id=r["provider_firm_id"],
                     roles=list(r["roles"]), pre_silas=r["pre_silas"], email=r["email"]) for r in rows]

    async def load_caseworker(self, caseworker_id: str) -> Caseworker | None:
        row = await self.pool.fetchrow("SELECT * FROM caseworkers WHERE caseworker_id = $1", caseworker_id)
        return None if row is None else Caseworker(caseworker_id=row["caseworker_id"], active=row["active"])

    async def upsert_caseworker(self, caseworker: Caseworker, actor: str, at: datetime) -> Upserted:
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow("SELECT * FROM caseworkers WHERE caseworker_id = $1 FOR UPDATE",
                                      caseworker.caseworker_id)
            if old is not None and old["active"] == caseworker.active:
                return Upserted("unchanged")
            await conn.execute(
                """INSERT INTO caseworkers (caseworker_id, active, updated_at) VALUES ($1, $2, $3)
                   ON CONFLICT (caseworker_id) DO UPDATE SET active = EXCLUDED.active,
                       updated_at = EXCLUDED.updated_at""",
                caseworker.caseworker_id, caseworker.active, at)
            await _audit(conn, f"caseworker-{caseworker.caseworker_id}-{at.isoformat()}", None, actor,
                         "caseworker_imported" if old is None else "caseworker_updated",
                         {"caseworker_id": caseworker.caseworker_id, "active": caseworker.active}, at)
            return Upserted("imported" if old is None else "updated")

    async def certificate_row(self, case_reference: str) -> CertificateRow | None:
        row = await self.pool.fetchrow("SELECT * FROM certificates WHERE case_reference = $1",
                                       case_reference)
        return None if row is None else CertificateRow.of(row)

    async def closed_unregistered_row(self, case_reference: str) -> ClosedCertificateRow | None:
        """A certificate closed while it was not registered (kept closed all the same)."""
        row = await self.pool.fetchrow("SELECT * FROM closed_certificates WHERE case_reference = $1",
                                       case_reference)
        return None if row is None else ClosedCertificateRow.of(row)

    async def notifications_of(self, case_reference: str) -> list[NotificationTableRow]:
        return NotificationTableRow.all_of(await self.pool.fetch(
            "SELECT * FROM notifications WHERE case_reference = $1 ORDER BY date_assigned, notification_id",
            case_reference))

    async def tasks_of(self, case_reference: str) -> list[TaskRow]:
        return TaskRow.all_of(await self.pool.fetch(
            "SELECT * FROM laa_tasks WHERE case_reference = $1 ORDER BY raised_at, task_id", case_reference))

    async def open_tasks(self, kind: str | None = None, firm: str | None = None,
                         limit: int | None = None) -> TaskQueue:
        """The LAA's queue from its own task table: the open tasks (of one kind, of one firm's
        certificates, or all), the longest waiting first, the first `limit` of them (all when
        None), and how many there are in all."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT t.*, c.provider_firm_id FROM laa_tasks t
                   LEFT JOIN certificates c ON c.case_reference = t.case_reference
                   WHERE t.is_open AND ($1::text IS NULL OR t.kind = $1)
                     AND ($2::text IS NULL OR c.provider_firm_id = $2)
                   ORDER BY t.raised_at, t.task_id LIMIT $3""", kind, firm, limit)
            total = await conn.fetchval(
                """SELECT count(*) FROM laa_tasks t
                   LEFT JOIN certificates c ON c.case_reference = t.case_reference
                   WHERE t.is_open AND ($1::text IS NULL OR t.kind = $1)
                     AND ($2::text IS NULL OR c.provider_firm_id = $2)""", kind, firm)
        return TaskQueue(tasks=QueuedTask.all_of(rows), total=total)

    async def recoupments_of(self, case_reference: str) -> list[RecoupmentRow]:
        return RecoupmentRow.all_of(await self.pool.fetch(
            "SELECT * FROM recoupments WHERE case_reference = $1 ORDER BY recouped_at", case_reference))

    async def ledger_of(self, case_reference: str) -> list[LedgerRow]:
        return LedgerRow.all_of(await self.pool.fetch(
            "SELECT * FROM activity_ledger WHERE case_reference = $1 ORDER BY occurred_at, event_id",
            case_reference))

    async def audit_of(self, case_reference: str) -> list[AuditRow]:
        return AuditRow.all_of(await self.pool.fetch(
            "SELECT * FROM audit_log WHERE case_reference = $1 ORDER BY at, id", case_reference))

    async def recent_audit(self, limit: int, case_reference: str | None = None,
                           operators_only: bool = False) -> list[AuditRow]:
        """The latest audit rows, oldest of them first: one certificate's, the operators' (no
        certificate: policy versions, outages, roll-outs, imports), or all."""
        rows = await self.pool.fetch(
            """SELECT * FROM audit_log
               WHERE ($2::text IS NULL OR case_reference = $2) AND (NOT $3 OR case_reference IS NULL)
               ORDER BY id DESC LIMIT $1""", limit, case_reference, operators_only)
        return AuditRow.all_of(list(reversed(rows)))

    async def records_of(self, case_reference: str, policy_version: int | None) -> CertificateRecords:
        """Everything `starter.py check` compares with the certificate's workflow."""
        async with self.pool.acquire() as conn:
            notifications = await conn.fetch(
                "SELECT * FROM notifications WHERE case_reference = $1 ORDER BY notification_id", case_reference)
            tasks = await conn.fetch(
                "SELECT task_id, kind, is_open FROM laa_tasks WHERE case_reference = $1 ORDER BY task_id",
                case_reference)
            recoupments = await conn.fetch(
                "SELECT amount FROM recoupments WHERE case_reference = $1 ORDER BY recouped_at", case_reference)
            latest = await conn.fetchval(
                "SELECT max(occurred_at) FROM activity_ledger WHERE case_reference = $1", case_reference)
            cert = await conn.fetchrow(
                "SELECT last_activity_at, closed_at FROM certificates WHERE case_reference = $1", case_reference)
            # Closed while unregistered: the registry keeps it closed without a certificate row.
            closed_unregistered = await conn.fetchval(
                "SELECT true FROM closed_certificates WHERE case_reference = $1", case_reference)
            days = None if policy_version is None else await conn.fetchval(
                "SELECT inactivity_days FROM policy_versions WHERE version = $1", policy_version)
        if cert is not None and cert["last_activity_at"] is not None and (
                latest is None or cert["last_activity_at"] > latest):
            latest = cert["last_activity_at"]
        return CertificateRecords(
            case_reference=case_reference,
            notifications=[NotificationRecord(
                notification_id=r["notification_id"], assigned_to=r["assigned_to"],
                date_assigned=r["date_assigned"], due_date=r["due_date"], return_date=r["return_date"],
                status=r["status"], is_open=r["is_open"]) for r in notifications],
            tasks=[TaskRecord(task_id=r["task_id"], kind=r["kind"], is_open=r["is_open"]) for r in tasks],
            recoupments=[money(r["amount"]) for r in recoupments],
            latest_activity_at=latest,
            closed=bool(closed_unregistered) or (cert is not None and cert["closed_at"] is not None),
            inactivity_days=days)

    # --- the workflow's steps --------------------------------------------------------------

    async def record_activity_events(self, step: RecordActivityEvents) -> RecordActivityResult:
        """Insert into the ledger (the first content under an id wins) and return the ledger's
        row for every event, new or not: a caller whose earlier attempt wrote the rows and was
        lost still learns of them. An event the database refuses (it should never get here:
        the rules check every field first) is refused alone, the others are kept."""
        rows: dict[str, LedgerEvent] = {}
        refused: list[RefusedEvent] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for event in step.events:
                if event.event_id in rows:
                    continue
                try:
                    async with conn.transaction():  # a savepoint: one bad event fails alone
                        row = await self._record_event(conn, step, event)
                except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as err:
                    refused.append(RefusedEvent(event_id=event.event_id,
                                                reason=f"the database refused it: {type(err).__name__}"))
                    continue
                rows[event.event_id] = LedgerEvent(seq=row["seq"], event_id=row["event_id"], kind=row["kind"],
                                                   occurred_at=row["occurred_at"])
        return RecordActivityResult(events=list(rows.values()), refused=refused)

    async def _record_event(self, conn: AnyConnection, step: RecordActivityEvents,
                            event: ActivityEvent) -> asyncpg.Record:
        inserted = await conn.fetchrow(
            """INSERT INTO activity_ledger (case_reference, event_id, kind, occurred_at, source, received_at)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (case_reference, event_id) DO NOTHING
               RETURNING seq, event_id, kind, occurred_at""",
            step.case_reference, event.event_id, event.kind, event.occurred_at, event.source,
            step.received_at)
        if inserted is None:  # recorded before: by a lost attempt, or a duplicate
            existing = await conn.fetchrow(
                """SELECT seq, event_id, kind, occurred_at FROM activity_ledger
                   WHERE case_reference = $1 AND event_id = $2""", step.case_reference, event.event_id)
            assert existing is not None  # the conflict that skipped the insert is this row
            return existing
        assert event.occurred_at is not None  # the ledger column is NOT NULL
        await _audit(conn, f"{step.case_reference}-event-{event.event_id}", step.case_reference,
                     event.source or "activity source", "activity_recorded",
                     {"event_id": event.event_id, "kind": event.kind,
                      "occurred_at": event.occurred_at.isoformat()}, step.received_at)
        return inserted

    async def raise_notification(self, step: RaiseNotification) -> None:
        """Raise it once. A row already under this id with other content (written by an
        attempt the workflow did not adopt, before steps were regular activities) is
        reconciled to what the workflow holds while it is still open and unanswered."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO notifications (notification_id, case_reference, provider_firm_id, assigned_to,
                       subject, cycle, date_assigned, due_date, return_date, status, is_open,
                       available_responses, letter)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, true, $11, $12)
                   ON CONFLICT (notification_id) DO UPDATE SET provider_firm_id = EXCLUDED.provider_firm_id,
                       assigned_to = EXCLUDED.assigned_to, cycle = EXCLUDED.cycle,
                       date_assigned = EXCLUDED.date_assigned, due_date = EXCLUDED.due_date,
                       return_date = EXCLUDED.return_date, letter = EXCLUDED.letter
                   WHERE notifications.is_open AND notifications.response IS NULL
                     AND (notifications.assigned_to, notifications.cycle, notifications.date_assigned,
                          notifications.due_date, notifications.return_date)
                         IS DISTINCT FROM (EXCLUDED.assigned_to, EXCLUDED.cycle, EXCLUDED.date_assigned,
                                           EXCLUDED.due_date, EXCLUDED.return_date)
                   RETURNING (xmax <> 0) AS reconciled""",
                step.notification_id, step.case_reference, step.provider_firm_id, step.assigned_to,
                step.subject, step.cycle, step.date_assigned, step.due_date, step.return_date,
                NotificationStatus.OPEN.value, [RESPONSE_LABELS[r] for r in Response],
                step.letter)
            detail = {"notification_id": step.notification_id, "cycle": step.cycle,
                      "assigned_to": step.assigned_to, "due_date": step.due_date.isoformat()}
            await _audit(conn, f"{step.notification_id}-raised", step.case_reference, "engine",
                         "notification_raised", detail, step.date_assigned)
            if row is not None and row["reconciled"]:
                await _audit(conn, f"{step.notification_id}-reconciled-{step.date_assigned.isoformat()}",
                             step.case_reference, "engine", "notification_reconciled", detail, step.date_assigned)

    async def mark_notification_overdue(self, step: MarkNotificationOverdue) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE notifications SET status = $2 WHERE notification_id = $1 AND is_open AND status = $3",
                step.notification_id, NotificationStatus.OVERDUE.value, NotificationStatus.OPEN.value)
            await _audit(conn, f"{step.notification_id}-overdue", step.case_reference, "engine",
                         "notification_overdue", {"notification_id": step.notification_id}, step.at)

    async def extend_notification(self, step: ExtendNotification) -> None:
        """Outages moved the open notification's dates; keyed by where they moved it to."""
        extensions = [e.model_dump(mode="json") for e in step.extensions]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE notifications SET due_date = $2, return_date = $3, extensions = $4::jsonb,
                       status = CASE WHEN $5 THEN $6 ELSE $7 END
                   WHERE notification_id = $1 AND is_open""",
                step.notification_id, step.due_date, step.return_date, json.dumps(extensions), step.overdue,
                NotificationStatus.OVERDUE.value, NotificationStatus.OPEN.value)
            await _audit(conn, f"{step.notification_id}-extended-{step.due_date.isoformat()}-"
                               f"{step.return_date.isoformat()}", step.case_reference, "engine",
                         "notification_extended",
                         {"notification_id": step.notification_id, "due_date": step.due_date.isoformat(),
                          "return_date": step.return_date.isoformat(), "extensions": extensions}, step.at)

    async def close_notification(self, step: CloseNotification) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE notifications SET status = $2, is_open = false, closed_at = $3
                   WHERE notification_id = $1 AND is_open""",
                step.notification_id, step.status.value, step.at)
            await _audit(conn, f"{step.notification_id}-closed", step.case_reference, "engine",
                         "notification_closed",
                         {"notification_id": step.notification_id, "status": step.status.value}, step.at)

    async def record_response(self, step: RecordResponse) -> None:
        """The response closes its notification; Case Ongoing also enters the ledger."""
        async with self.pool.acquire() as conn, conn.transaction():
            if step.notification_id is not None:
                await conn.execute(
                    """UPDATE notifications SET status = $2, is_open = false, closed_at = $6,
                           response = $3, message = $4, responded_by = $5, responded_at = $6
                       WHERE notification_id = $1 AND is_open""",
                    step.notification_id, NotificationStatus.RESPONDED.value, step.response.value,
                    step.message, step.responded_by, step.at)
            if step.response == Response.CASE_ONGOING:
                await conn.execute(
                    """INSERT INTO activity_ledger (case_reference, event_id, kind, occurred_at, source, received_at)
                       VALUES ($1, $2, $3, $4, 'engine', $4) ON CONFLICT DO NOTHING""",
                    step.case_reference, f"{step.response_key}-ongoing",
                    ActivityKind.ICR_ONGOING_RESPONSE.value, step.at)
            await _audit(conn, f"{step.response_key}-response", step.case_reference, step.responded_by,
                         "response_recorded",
                         {"notification_id": step.notification_id, "response": step.response.value,
                          "message": step.message}, step.at)

    async def raise_task(self, step: RaiseTask) -> None:
        """Raise it once; an open, undecided row under this id with other content is
        reconciled to what the workflow holds (see raise_notification)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO laa_tasks (task_id, case_reference, kind, notification_id, response, detail, raised_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (task_id) DO UPDATE SET kind = EXCLUDED.kind,
                       notification_id = EXCLUDED.notification_id, response = EXCLUDED.response,
                       detail = EXCLUDED.detail, raised_at = EXCLUDED.raised_at
                   WHERE laa_tasks.is_open
                     AND (laa_tasks.kind, laa_tasks.notification_id, laa_tasks.response, laa_tasks.raised_at)
                         IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.notification_id, EXCLUDED.response,
                                           EXCLUDED.raised_at)
                   RETURNING (xmax <> 0) AS reconciled""",
                step.task_id, step.case_reference, step.task_kind.value, step.notification_id,
                step.response.value if step.response else None, step.detail, step.at)
            detail = {"task_id": step.task_id, "kind": step.task_kind.value, "detail": step.detail}
            await _audit(conn, f"{step.task_id}-raised", step.case_reference, "engine", "task_raised",
                         detail, step.at)
            if row is not None and row["reconciled"]:
                await _audit(conn, f"{step.task_id}-reconciled-{step.at.isoformat()}", step.case_reference,
                             "engine", "task_reconciled", detail, step.at)

    async def close_task(self, step: CloseTask) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE laa_tasks SET is_open = false, decision = $2, decided_by = $3,
                       decision_reason = $4, decided_at = $5
                   WHERE task_id = $1 AND is_open""",
                step.task_id, step.decision.value if step.decision else None, step.decided_by,
                step.reason, step.at)
            await _audit(conn, f"{step.task_id}-closed", step.case_reference, step.decided_by,
                         "decision_recorded" if step.decision else "task_closed",
                         {"task_id": step.task_id, "decision": step.decision.value if step.decision else None,
                          "reason": step.reason}, step.at)

    async def claim_exercise_response(self, step: ClaimExerciseResponse) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE exercise_responses SET claimed_at = $2, claim_key = $3
                   WHERE case_reference = $1 AND claimed_at IS NULL""",
                step.case_reference, step.at, step.claim_key)
            await _audit(conn, f"{step.claim_key}-claimed", step.case_reference, "engine",
                         "exercise_response_applied", {}, step.at)

    async def close_certificate(self, step: CloseCertificate) -> str | None:
        """Close, and recoup exactly the outstanding POA once. Returns the amount recouped
        by this closure (also on a retry), None when nothing was outstanding."""
        async with self.pool.acquire() as conn, conn.transaction():
            cert = await conn.fetchrow(
                "SELECT * FROM certificates WHERE case_reference = $1 FOR UPDATE", step.case_reference)
            if cert is not None and cert["closed_at"] is None:
                await conn.execute(
                    """UPDATE certificates SET closed_at = $2, closed_reason = $3, updated_at = $2
                       WHERE case_reference = $1""", step.case_reference, step.at, step.reason)
            elif cert is None:  # closed while unregistered: the registry keeps it closed all the same
                await conn.execute(
                    """INSERT INTO closed_certificates (case_reference, closed_at, closed_reason, closed_by)
                       VALUES ($1, $2, $3, $4) ON CONFLICT (case_reference) DO NOTHING""",
                    step.case_reference, step.at, step.reason, step.actor)
            existing = await conn.fetchval(
                "SELECT amount FROM recoupments WHERE recoupment_id = $1", step.recoupment_id)
            if existing is not None:
                return money(existing)
            amount: Decimal | None = None
            if step.recoup and cert is not None:
                outstanding = cert["poa_paid"] - cert["poa_recouped"]
                if outstanding > 0:
                    amount = outstanding
                    await conn.execute(
                        """INSERT INTO recoupments (recoupment_id, case_reference, amount, recouped_at, reason, actor)
                           VALUES ($1, $2, $3, $4, $5, $6)""",
                        step.recoupment_id, step.case_reference, amount, step.at, step.reason, step.actor)
                    await conn.execute(
                        "UPDATE certificates SET poa_recouped = poa_recouped + $2 WHERE case_reference = $1",
                        step.case_reference, amount)
            await _audit(conn, f"{step.case_reference}-closed", step.case_reference, step.actor,
                         "certificate_closed",
                         {"reason": step.reason, "recouped": money(amount) if amount else None}, step.at)
            return money(amount) if amount else None

    async def update_contact(self, step: UpdateContact) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchval(
                "SELECT provider_contact_login FROM certificates WHERE case_reference = $1 FOR UPDATE",
                step.case_reference)
            key = f"{step.case_reference}-contact-{step.at.isoformat()}-{step.new_contact_login_id}"
            if await _audit(conn, key, step.case_reference, step.actor, "contact_reassigned",
                            {"from": old, "to": step.new_contact_login_id}, step.at):
                await conn.execute(
                    """UPDATE certificates SET provider_contact_login = $2, updated_at = $3
                       WHERE case_reference = $1""", step.case_reference, step.new_contact_login_id, step.at)

    async def audit_refusal(self, step: AuditRefusal) -> None:
        async with self.pool.acquire() as conn:
            await _audit(conn, step.refusal_key, step.case_reference, step.actor, step.action,
                         {"reason": step.reason, **step.detail}, step.at)

    async def queue_daily_digests(self, step: QueueDailyDigests) -> int:
        """One digest per provider user with open notifications, once per UK day."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """INSERT INTO email_digests (login_id, digest_date, provider_firm_id, notification_ids, queued_at)
                   SELECT assigned_to, $1, min(provider_firm_id),
                          array_agg(notification_id ORDER BY date_assigned, notification_id), $2
                   FROM notifications WHERE is_open AND assigned_to IS NOT NULL
                   GROUP BY assigned_to
                   ON CONFLICT (login_id, digest_date) DO NOTHING RETURNING login_id""",
                step.digest_date, step.at)
            return len(rows)

    async def digests_on(self, digest_date: date) -> list[DigestRow]:
        return DigestRow.all_of(await self.pool.fetch(
            "SELECT * FROM email_digests WHERE digest_date = $1 ORDER BY login_id", digest_date))

    # --- the registry (imports and operators) ---------------------------------------------

    async def upsert_user(self, user: User, actor: str, at: datetime, *, keep_email: bool = False) -> Upserted:
        """`keep_email`: leave the user's address as it is (a file without the column)."""
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow("SELECT * FROM users WHERE login_id = $1 FOR UPDATE", user.login_id)
            email = (old["email"] if old is not None else None) if keep_email else user.email
            new = {"provider_firm_id": user.provider_firm_id, "roles": sorted(user.roles),
                   "pre_silas": user.pre_silas, "email": email}
            if old is not None and {"provider_firm_id": old["provider_firm_id"], "roles": sorted(old["roles"]),
                                    "pre_silas": old["pre_silas"], "email": old["email"]} == new:
                return Upserted("unchanged")
            await conn.execute(
                """INSERT INTO users (login_id, provider_firm_id, roles, pre_silas, email, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (login_id) DO UPDATE SET provider_firm_id = EXCLUDED.provider_firm_id,
                       roles = EXCLUDED.roles, pre_silas = EXCLUDED.pre_silas, email = EXCLUDED.email,
                       updated_at = EXCLUDED.updated_at""",
                user.login_id, user.provider_firm_id, new["roles"], user.pre_silas, email, at)
            action = "user_imported" if old is None else "user_updated"
            await _audit(conn, f"user-{user.login_id}-{at.isoformat()}", None, actor, action,
                         {"login_id": user.login_id, **new}, at)
            return Upserted("imported" if old is None else "updated")

    async def upsert_certificate(self, case_reference: str, registration: Registration,
                                 last_activity_at: datetime | None, poa_paid: Decimal,
                                 poa_recouped: Decimal, actor: str, at: datetime) -> Upserted:
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow("SELECT * FROM certificates WHERE case_reference = $1 FOR UPDATE",
                                      case_reference)
            if old is not None and old["closed_at"] is not None:
                return Upserted("closed")
            if old is None and await conn.fetchval(
                    "SELECT true FROM closed_certificates WHERE case_reference = $1", case_reference):
                return Upserted("closed")  # closed while unregistered: registering it reopens nothing
            imported = registration.provider_contact_login
            contact = imported
            if old is not None:
                # A reassignment made in the engine stands until CCMS itself names another contact.
                last_imported = old["imported_contact_login"] or old["provider_contact_login"]
                if imported == last_imported:
                    contact = old["provider_contact_login"]
            new = {"provider_firm_id": registration.provider_firm_id, "office_code": registration.office_code,
                   "provider_contact_login": contact,
                   "granted_on": registration.granted_on, "last_activity_at": last_activity_at,
                   "poa_paid": poa_paid, "poa_recouped": poa_recouped, "imported_contact_login": imported}
            if old is not None and all(old[k] == v for k, v in new.items()):
                return Upserted("unchanged")
            await conn.execute(
                """INSERT INTO certificates (case_reference, provider_firm_id, office_code, provider_contact_login,
                       granted_on, last_activity_at, poa_paid, poa_recouped, imported_contact_login,
                       registered_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
                   ON CONFLICT (case_reference) DO UPDATE SET provider_firm_id = EXCLUDED.provider_firm_id,
                       office_code = EXCLUDED.office_code, provider_contact_login = EXCLUDED.provider_contact_login,
                       granted_on = EXCLUDED.granted_on, last_activity_at = EXCLUDED.last_activity_at,
                       poa_paid = EXCLUDED.poa_paid, poa_recouped = EXCLUDED.poa_recouped,
                       imported_contact_login = EXCLUDED.imported_contact_login,
                       updated_at = EXCLUDED.updated_at""",
                case_reference, *new.values(), at)
            changed = {k: {"from": old[k], "to": v} for k, v in new.items()
                       if old is not None and old[k] != v}
            await _audit(conn, f"certificate-{case_reference}-{at.isoformat()}", case_reference, actor,
                         "certificate_imported" if old is None else "certificate_updated",
                         new if old is None else changed, at)
            return Upserted("imported" if old is None else "updated")

    async def upsert_exercise_response(self, exercise: ExerciseResponse, actor: str, at: datetime) -> Upserted:
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow("SELECT * FROM exercise_responses WHERE case_reference = $1 FOR UPDATE",
                                      exercise.case_reference)
            if old is not None and old["response"] == exercise.response.value \
                    and old["reported_on"] == exercise.reported_on:
                return Upserted("unchanged")
            if old is not None and old["claimed_at"] is not None:
                # Already applied: the record of what was applied is not rewritten.
                return Upserted("unchanged")
            await conn.execute(
                """INSERT INTO exercise_responses (case_reference, response, reported_on, imported_at)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (case_reference) DO UPDATE SET response = EXCLUDED.response,
                       reported_on = EXCLUDED.reported_on, imported_at = EXCLUDED.imported_at""",
                exercise.case_reference, exercise.response.value, exercise.reported_on, at)
            await _audit(conn, f"exercise-{exercise.case_reference}-{at.isoformat()}", exercise.case_reference,
                         actor, "exercise_response_imported",
                         {"response": exercise.response.value, "reported_on": exercise.reported_on}, at)
            return Upserted("imported" if old is None else "updated")

    async def add_policy_version(self, inactivity_days: int, effective_from: datetime, actor: str,
                                 note: str, at: datetime, response_due: timedelta = timedelta(days=14),
                                 return_after: timedelta = timedelta(days=21),
                                 max_unanswered_cycles: int = 3) -> Policy:
        change = PolicyChange(inactivity_days=inactivity_days, response_due=response_due,
                              return_after=return_after, max_unanswered_cycles=max_unanswered_cycles,
                              effective_from=effective_from, reason=note, actor=actor)
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._insert_policy_version(conn, change, at)

    async def _insert_policy_version(self, conn: AnyConnection, change: PolicyChange, at: datetime) -> Policy:
        await conn.execute("LOCK TABLE policy_versions IN EXCLUSIVE MODE")
        version = await conn.fetchval("SELECT coalesce(max(version), 0) + 1 FROM policy_versions")
        row = await conn.fetchrow(
            """INSERT INTO policy_versions (version, inactivity_days, response_due, return_after,
                   max_unanswered_cycles, effective_from, created_by, created_at, note)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
            version, change.inactivity_days, change.response_due, change.return_after,
            change.max_unanswered_cycles, change.effective_from, change.actor, at, change.reason)
        assert row is not None  # INSERT ... RETURNING always returns the row
        await _audit(conn, f"policy-{version}", None, change.actor, "policy_changed",
                     {"version": version, "inactivity_days": change.inactivity_days,
                      "response_due": str(change.response_due), "return_after": str(change.return_after),
                      "max_unanswered_cycles": change.max_unanswered_cycles,
                      "effective_from": change.effective_from.isoformat(), "note": change.reason}, at)
        return _policy(row)

    async def policy_versions(self) -> list[PolicyRecord]:
        rows = await self.pool.fetch("SELECT * FROM policy_versions ORDER BY effective_from, version")
        return [_policy_record(r) for r in rows]

    async def change_policy(self, change: PolicyChange, rate: float, at: datetime) -> tuple[Policy, RolloutRecord]:
        """A new policy version and the roll-out that tells every open certificate, together."""
        async with self.pool.acquire() as conn, conn.transaction():
            policy = await self._insert_policy_version(conn, change, at)
            rollout = await self._start_rollout(conn, RolloutKind.POLICY, policy.version, change.actor,
                                                change.reason, rate, at)
            return policy, rollout

    # --- outages -------------------------------------------------------------------------

    async def declare_outage(self, declaration: OutageDeclaration, rate: float,
                             at: datetime) -> tuple[OutageRecord, RolloutRecord]:
        """A declared outage and the roll-out that tells the certificates it can affect, together."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE outages IN EXCLUSIVE MODE")
            outage_id = await conn.fetchval("SELECT coalesce(max(outage_id), 0) + 1 FROM outages")
            row = await conn.fetchrow(
                """INSERT INTO outages (outage_id, starts_at, ends_at, reason, declared_by, declared_at)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
                outage_id, declaration.starts_at, declaration.ends_at, declaration.reason,
                declaration.actor, at)
            assert row is not None
            await _audit(conn, f"outage-{outage_id}", None, declaration.actor, "outage_declared",
                         {"outage_id": outage_id, "starts_at": declaration.starts_at.isoformat(),
                          "ends_at": declaration.ends_at.isoformat(), "reason": declaration.reason}, at)
            rollout = await self._start_rollout(conn, RolloutKind.OUTAGE, outage_id, declaration.actor,
                                                declaration.reason, rate, at)
            return _outage(row), rollout

    async def outages(self) -> list[OutageRecord]:
        rows = await self.pool.fetch("SELECT * FROM outages ORDER BY starts_at, outage_id")
        return [_outage(r) for r in rows]

    # --- the registry's view of open certificates, and roll-outs ------------------------------

    async def open_certificates(self) -> list[OpenCertificate]:
        rows = await self.pool.fetch(
            f"""WITH {_OPEN_CERTIFICATES}
                SELECT case_reference, clock_from, registered, notified OR tasked AS in_review
                FROM open_certificates ORDER BY clock_from, case_reference""")
        return [OpenCertificate(case_reference=r["case_reference"], clock_from=r["clock_from"],
                                registered=r["registered"], in_review=r["in_review"]) for r in rows]

    async def _start_rollout(self, conn: AnyConnection, kind: RolloutKind, subject: int, actor: str,
                             reason: str, rate: float, at: datetime) -> RolloutRecord:
        await conn.execute("LOCK TABLE rollouts IN EXCLUSIVE MODE")
        rollout_id = await conn.fetchval("SELECT coalesce(max(rollout_id), 0) + 1 FROM rollouts")
        if kind == RolloutKind.POLICY:
            # A policy roll-out tells every open certificate to read the registry again, which
            # is all that any earlier unfinished roll-out had still to do.
            await conn.execute(
                """UPDATE rollouts SET status = 'superseded', updated_at = $2
                   WHERE status IN ('running', 'interrupted') AND rollout_id < $1""", rollout_id, at)
        row = await conn.fetchrow(
            """INSERT INTO rollouts (rollout_id, kind, subject, started_by, reason, started_at, rate, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $6) RETURNING *""",
            rollout_id, kind.value, subject, actor, reason, at, rate)
        assert row is not None
        await _audit(conn, f"rollout-{rollout_id}-started", None, actor, "rollout_started",
                     {"rollout_id": rollout_id, "kind": kind.value, "subject": subject, "rate": rate,
                      "reason": reason}, at)
        return _rollout(row)

    async def rollout(self, rollout_id: int) -> RolloutRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM rollouts WHERE rollout_id = $1", rollout_id)
        return None if row is None else _rollout(row)

    async def rollouts(self) -> list[RolloutRecord]:
        return [_rollout(r) for r in await self.pool.fetch("SELECT * FROM rollouts ORDER BY rollout_id")]

    async def add_rollout_targets(self, rollout: RolloutRecord) -> int:
        """Take the open certificates the roll-out is to reach and has not taken yet (all of
        them at first; later, those that appeared since); returns how many were new. An
        outage roll-out takes only those it can affect: an open notification, or a deadline
        before the outage ends under the shortest inactivity period of any version."""
        async with self.pool.acquire() as conn:
            status = await conn.execute(
                f"""WITH {_OPEN_CERTIFICATES}
                    INSERT INTO rollout_targets (rollout_id, case_reference, clock_from)
                    SELECT $1, o.case_reference, o.clock_from FROM open_certificates o
                    WHERE $2 = 'policy' OR o.notified OR o.clock_from +
                          make_interval(days => (SELECT min(inactivity_days) FROM policy_versions))
                          < (SELECT ends_at FROM outages WHERE outage_id = $3)
                    ON CONFLICT (rollout_id, case_reference) DO NOTHING""",
                rollout.rollout_id, rollout.kind.value, rollout.subject)
        return int(status.split()[-1])

    async def next_rollout_targets(self, rollout_id: int, limit: int) -> list[str]:
        """The next certificates to reach, oldest clock (so oldest deadline) first."""
        rows = await self.pool.fetch(
            """SELECT case_reference FROM rollout_targets WHERE rollout_id = $1 AND reached_at IS NULL
               ORDER BY clock_from, case_reference LIMIT $2""", rollout_id, limit)
        return [r["case_reference"] for r in rows]

    async def mark_reached(self, rollout_id: int, case_reference: str, running: bool, at: datetime) -> None:
        await self.pool.execute(
            """UPDATE rollout_targets SET reached_at = $3, running = $4
               WHERE rollout_id = $1 AND case_reference = $2 AND reached_at IS NULL""",
            rollout_id, case_reference, at, running)

    async def record_rollout_progress(self, rollout_id: int, at: datetime, status: str | None = None,
                                      actor: str | None = None) -> RolloutRecord:
        """Count the roll-out's progress into its row; with a status (finished, interrupted,
        running again), also audit who and how far it got."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE rollouts r SET total = c.total, done = c.done, not_running = c.not_running,
                       updated_at = $2, status = coalesce($3, r.status),
                       finished_at = CASE WHEN $3 = 'finished' THEN $2 ELSE r.finished_at END
                   FROM (SELECT count(*) AS total, count(reached_at) AS done,
                                count(*) FILTER (WHERE NOT running) AS not_running
                         FROM rollout_targets WHERE rollout_id = $1) c
                   WHERE r.rollout_id = $1 RETURNING r.*""", rollout_id, at, status)
            if row is None:
                raise LookupError(f"no roll-out {rollout_id}")
            record = _rollout(row)
            if status is not None:
                action = {"finished": "rollout_finished", "interrupted": "rollout_interrupted",
                          "running": "rollout_resumed"}[status]
                await _audit(conn, f"rollout-{rollout_id}-{status}-{at.isoformat()}", None,
                             actor or record.started_by, action,
                             {"rollout_id": rollout_id, "kind": record.kind.value, "subject": record.subject,
                              "done": record.done, "total": record.total, "not_running": record.not_running},
                             at)
            return record

    @contextlib.asynccontextmanager
    async def rollout_lock(self, rollout_id: int) -> AsyncIterator[bool]:
        """Held while one process runs the roll-out (released if it dies: the lock belongs to
        its connection); yields False when another process holds it."""
        async with self.pool.acquire() as conn:
            held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _ROLLOUT_LOCK, rollout_id))
            try:
                yield held
            finally:
                if held:
                    await conn.execute("SELECT pg_advisory_unlock($1, $2)", _ROLLOUT_LOCK, rollout_id)

    async def firms_with_users(self, firm_ids: list[str]) -> set[str]:
        """Those of `firm_ids` that are known: at least one user in the directory."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT provider_firm_id FROM users WHERE provider_firm_id = ANY($1::text[])", firm_ids)
        return {r["provider_firm_id"] for r in rows}

    # --- the provider portal's reads ------------------------------------------------------

    async def firm_notifications(self, query: NotificationQuery) -> NotificationPage:
        """One page of a firm's notifications and how many match in all (indexed by firm and
        assign date, and by firm and due date among the open ones: migration 008)."""
        where = ["provider_firm_id = $1"]
        args: list[Any] = [query.provider_firm_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if query.case_reference is not None:
            where.append(f"case_reference = {arg(query.case_reference)}")
        if query.assigned_to is not None:
            where.append(f"assigned_to = {arg(query.assigned_to)}")
        if not query.include_closed:
            where.append("is_open")
        # Assign dates are UK calendar days, both ends included.
        if query.date_from is not None:
            where.append(f"date_assigned >= {arg(query.date_from)}::timestamp AT TIME ZONE 'Europe/London'")
        if query.date_to is not None:
            where.append(f"date_assigned < ({arg(query.date_to)}::date + 1)::timestamp AT TIME ZONE 'Europe/London'")
        column = _NOTIFICATION_SORT[query.sort]
        direction = "DESC" if query.descending else "ASC"
        condition = " AND ".join(where)
        async with self.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM notifications WHERE {condition}", *args)
            rows = await conn.fetch(
                f"""SELECT * FROM notifications WHERE {condition}
                    ORDER BY {column} {direction}, notification_id {direction}
                    LIMIT {arg(query.size)} OFFSET {arg(query.page * query.size)}""", *args)
        return NotificationPage(rows=[_notification_row(r) for r in rows], total=total)

    async def notification(self, notification_id: str) -> NotificationRow | None:
        row = await self.pool.fetchrow("SELECT * FROM notifications WHERE notification_id = $1", notification_id)
        return None if row is None else _notification_row(row)

    async def user(self, login_id: str) -> User | None:
        found = await self.load_users([login_id])
        return found[0] if found else None

    async def open_notification_counts(self, login_id: str, at: datetime) -> NotificationCounts:
        """The open notifications assigned to `login_id`, and how many of them are overdue at `at`
        (marked overdue, or past their due date before the engine has marked them)."""
        row = await self.pool.fetchrow(
            """SELECT count(*) AS open,
                      count(*) FILTER (WHERE status = $2 OR due_date <= $3) AS overdue
               FROM notifications WHERE assigned_to = $1 AND is_open""",
            login_id, NotificationStatus.OVERDUE.value, at)
        assert row is not None
        return NotificationCounts(open=row["open"], standard=row["open"] - row["overdue"], overdue=row["overdue"])


# A list's sort fields and their columns (never taken from the request as text).
_NOTIFICATION_SORT = {
    NotificationSort.ASSIGN_DATE: "date_assigned",
    NotificationSort.DUE_DATE: "due_date",
    NotificationSort.CASE_REFERENCE_NUMBER: "case_reference",
}


def _notification_row(row: asyncpg.Record) -> NotificationRow:
    return NotificationRow(**{name: row[name] for name in NotificationRow.model_fields})

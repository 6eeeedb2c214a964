"""All of the engine's SQL, in one place.

Every write is one transaction keyed by its business step (notification id, task id,
recoupment id, event id, ...) with `ON CONFLICT` / guarded `UPDATE`s, and audits under the
same key: run twice, it writes once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from icr.db import AnyConnection
from icr.models import (
    RESPONSE_LABELS,
    ActivityEvent,
    ActivityKind,
    AuditRefusal,
    CertificateRecords,
    CertificateSnapshot,
    ClaimExerciseResponse,
    CloseCertificate,
    CloseNotification,
    CloseTask,
    ExerciseResponse,
    MarkNotificationOverdue,
    NotificationRecord,
    NotificationStatus,
    Policy,
    QueueDailyDigests,
    LedgerEvent,
    RaiseNotification,
    RaiseTask,
    RecordActivityEvents,
    RecordActivityResult,
    RecordResponse,
    RefusedEvent,
    Registration,
    Response,
    TaskRecord,
    UpdateContact,
    User,
    money,
)


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
            policy, next_at = await self._policy_in_force(conn, at)
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
            closed=cert is not None and cert["closed_at"] is not None,
            exercise_response=None if exercise is None else ExerciseResponse(
                case_reference=case_reference, response=Response(exercise["response"]),
                reported_on=exercise["reported_on"]),
            policy=policy,
            next_policy_change_at=next_at,
        )

    async def load_users(self, login_ids: list[str]) -> list[User]:
        rows = await self.pool.fetch("SELECT * FROM users WHERE login_id = ANY($1::text[])", login_ids)
        return [User(login_id=r["login_id"], provider_firm_id=r["provider_firm_id"],
                     roles=list(r["roles"]), pre_silas=r["pre_silas"]) for r in rows]

    async def certificate_row(self, case_reference: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM certificates WHERE case_reference = $1",
                                        case_reference)

    async def notifications_of(self, case_reference: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM notifications WHERE case_reference = $1 ORDER BY date_assigned, notification_id",
            case_reference)

    async def tasks_of(self, case_reference: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM laa_tasks WHERE case_reference = $1 ORDER BY raised_at, task_id", case_reference)

    async def recoupments_of(self, case_reference: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM recoupments WHERE case_reference = $1 ORDER BY recouped_at", case_reference)

    async def ledger_of(self, case_reference: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM activity_ledger WHERE case_reference = $1 ORDER BY occurred_at, event_id",
            case_reference)

    async def audit_of(self, case_reference: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM audit_log WHERE case_reference = $1 ORDER BY at, id", case_reference)

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
            closed=cert is not None and cert["closed_at"] is not None,
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

    async def digests_on(self, digest_date: date) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM email_digests WHERE digest_date = $1 ORDER BY login_id", digest_date)

    # --- the registry (imports and operators) ---------------------------------------------

    async def upsert_user(self, user: User, actor: str, at: datetime) -> Upserted:
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow("SELECT * FROM users WHERE login_id = $1 FOR UPDATE", user.login_id)
            new = {"provider_firm_id": user.provider_firm_id, "roles": sorted(user.roles),
                   "pre_silas": user.pre_silas}
            if old is not None and {"provider_firm_id": old["provider_firm_id"], "roles": sorted(old["roles"]),
                                    "pre_silas": old["pre_silas"]} == new:
                return Upserted("unchanged")
            await conn.execute(
                """INSERT INTO users (login_id, provider_firm_id, roles, pre_silas, updated_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (login_id) DO UPDATE SET provider_firm_id = EXCLUDED.provider_firm_id,
                       roles = EXCLUDED.roles, pre_silas = EXCLUDED.pre_silas, updated_at = EXCLUDED.updated_at""",
                user.login_id, user.provider_firm_id, new["roles"], user.pre_silas, at)
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
            new = {"provider_firm_id": registration.provider_firm_id, "office_code": registration.office_code,
                   "provider_contact_login": registration.provider_contact_login,
                   "granted_on": registration.granted_on, "last_activity_at": last_activity_at,
                   "poa_paid": poa_paid, "poa_recouped": poa_recouped}
            if old is not None and all(old[k] == v for k, v in new.items()):
                return Upserted("unchanged")
            await conn.execute(
                """INSERT INTO certificates (case_reference, provider_firm_id, office_code, provider_contact_login,
                       granted_on, last_activity_at, poa_paid, poa_recouped, registered_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                   ON CONFLICT (case_reference) DO UPDATE SET provider_firm_id = EXCLUDED.provider_firm_id,
                       office_code = EXCLUDED.office_code, provider_contact_login = EXCLUDED.provider_contact_login,
                       granted_on = EXCLUDED.granted_on, last_activity_at = EXCLUDED.last_activity_at,
                       poa_paid = EXCLUDED.poa_paid, poa_recouped = EXCLUDED.poa_recouped,
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
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE policy_versions IN EXCLUSIVE MODE")
            version = await conn.fetchval("SELECT coalesce(max(version), 0) + 1 FROM policy_versions")
            row = await conn.fetchrow(
                """INSERT INTO policy_versions (version, inactivity_days, response_due, return_after,
                       max_unanswered_cycles, effective_from, created_by, created_at, note)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
                version, inactivity_days, response_due, return_after, max_unanswered_cycles,
                effective_from, actor, at, note)
            assert row is not None  # INSERT ... RETURNING always returns the row
            await _audit(conn, f"policy-{version}", None, actor, "policy_changed",
                         {"version": version, "inactivity_days": inactivity_days,
                          "effective_from": effective_from.isoformat(), "note": note}, at)
            return _policy(row)

    async def firms_with_users(self, firm_ids: list[str]) -> set[str]:
        """Those of `firm_ids` that are known: at least one user in the directory."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT provider_firm_id FROM users WHERE provider_firm_id = ANY($1::text[])", firm_ids)
        return {r["provider_firm_id"] for r in rows}

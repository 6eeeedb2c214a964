"""The daily digest's outbox (`email_digests`): claiming a row, recording what became of it.

The digest run queues the rows (Store.queue_daily_digests); a mailer claims one row at a time,
sends it and marks it here. A claim is a lease: while it is younger than the lease no other
sender touches the row, so a row is sent twice only when its sender died (or lost its
database) after the SMTP server accepted the message and before the row was marked; the
re-send carries the same Message-ID.

Delivery columns (claimed_at, sent_at, failed_at) are on the database's clock, the one clock
all workers share, so a lease means the same to each of them. The digest date and the audit
log's times are the workflow's business time (`at`). Each outcome is audited once per user
per day, under a key made of the login id and the date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import asyncpg

from icr.adapters.db.store import _audit  # the one audit writer, shared with the Store
from icr.domain.models import ENGINE_ACTOR, DigestMailResult, Model

NO_ADDRESS = "no e-mail address in the user directory"

# What `mail list` shows, in the order a row can move through them.
# `held`: never tried, with a reason (the mailer is off).
Status = Literal["queued", "held", "sending", "retrying", "no_address", "sent", "failed"]
PROBLEMS: tuple[Status, ...] = ("held", "retrying", "no_address", "failed")


class DigestMail(Model):
    """One claimed outbox row: everything the message is made of, fixed at the first attempt
    so that a re-send is the same message."""

    login_id: str
    digest_date: date
    provider_firm_id: str | None
    recipient: str
    message_id: str
    open_notifications: int
    earliest_due: datetime | None
    queued_at: datetime
    attempts: int


class OutboxRow(Model):
    digest_date: date
    login_id: str
    recipient: str | None
    status: Status
    attempts: int
    open_notifications: int
    message_id: str | None
    queued_at: datetime
    sent_at: datetime | None
    smtp_response: str | None
    last_error: str | None


@dataclass
class Claim:
    """`claimed` (mail set: send it), `no_address`, `busy` (another sender holds it), or
    `done` (sent or failed for good meanwhile)."""

    outcome: Literal["claimed", "no_address", "busy", "done"]
    mail: DigestMail | None = None


def _key(login_id: str, day: date, what: str) -> str:
    return f"digest-{login_id}-{day.isoformat()}-{what}"


class Outbox:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def expire_before(self, day: date, lease: timedelta) -> int:
        """Rows of earlier days never sent are failed for good: a user gets that day's digest
        or none, never two in one day. A row still claimed within its lease is left alone."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """UPDATE email_digests
                   SET failed_at = now(), claimed_at = NULL,
                       last_error = 'not sent on its day; the digest of ' || $1::date::text
                                    || ' supersedes it (last error: ' || coalesce(last_error, 'none') || ')'
                   WHERE digest_date < $1 AND sent_at IS NULL AND failed_at IS NULL
                     AND (claimed_at IS NULL OR claimed_at < now() - $2::interval)
                   RETURNING login_id""", day, lease)
            return len(rows)

    async def unsent(self, day: date) -> list[str]:
        """Login ids of the day's rows neither sent nor failed for good."""
        rows = await self.pool.fetch(
            """SELECT login_id FROM email_digests
               WHERE digest_date = $1 AND sent_at IS NULL AND failed_at IS NULL ORDER BY login_id""", day)
        return [r["login_id"] for r in rows]

    async def claim(self, login_id: str, day: date, *, run_key: str, lease: timedelta, message_id: str,
                    at: datetime) -> Claim:
        """Take the row for sending, unless it is done, held by another sender within the
        lease, or has no address (recorded on the row and audited once)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT d.*, u.email,
                          d.claimed_at IS NOT NULL AND d.claimed_at >= now() - $3::interval AS held,
                          (SELECT min(n.due_date) FROM notifications n
                           WHERE n.notification_id = ANY(d.notification_ids)) AS due
                   FROM email_digests d LEFT JOIN users u ON u.login_id = d.login_id
                   WHERE d.login_id = $1 AND d.digest_date = $2
                   FOR UPDATE OF d SKIP LOCKED""", login_id, day, lease)
            if row is None:
                return Claim("busy")  # another sender is claiming or marking it this instant
            if row["sent_at"] is not None or row["failed_at"] is not None:
                return Claim("done")
            if row["held"]:
                return Claim("busy")
            recipient = row["recipient"] or row["email"]
            if recipient is None:
                await conn.execute(
                    "UPDATE email_digests SET last_error = $3 WHERE login_id = $1 AND digest_date = $2",
                    login_id, day, NO_ADDRESS)
                await _audit(conn, _key(login_id, day, "no-address"), None, ENGINE_ACTOR, "digest_not_sent",
                             {"login_id": login_id, "digest_date": day.isoformat(), "reason": NO_ADDRESS}, at)
                return Claim("no_address")
            claimed = await conn.fetchrow(
                """UPDATE email_digests
                   SET claimed_at = now(), claimed_by = $3, attempts = attempts + 1,
                       recipient = $4, message_id = coalesce(message_id, $5),
                       earliest_due = coalesce(earliest_due, $6)
                   WHERE login_id = $1 AND digest_date = $2 RETURNING *""",
                login_id, day, run_key, recipient, message_id, row["due"])
            assert claimed is not None  # the row is locked by this transaction
            return Claim("claimed", DigestMail(
                login_id=login_id, digest_date=day, provider_firm_id=claimed["provider_firm_id"],
                recipient=claimed["recipient"], message_id=claimed["message_id"],
                open_notifications=len(claimed["notification_ids"]), earliest_due=claimed["earliest_due"],
                queued_at=claimed["queued_at"], attempts=claimed["attempts"]))

    async def mark_sent(self, mail: DigestMail, smtp_response: str, *, run_key: str, at: datetime) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE email_digests
                   SET sent_at = now(), smtp_response = $3, claimed_at = NULL, claimed_by = $4
                   WHERE login_id = $1 AND digest_date = $2 AND sent_at IS NULL""",
                mail.login_id, mail.digest_date, smtp_response, run_key)
            await _audit(conn, _key(mail.login_id, mail.digest_date, "sent"), None, ENGINE_ACTOR, "digest_sent",
                         {"login_id": mail.login_id, "digest_date": mail.digest_date.isoformat(),
                          "message_id": mail.message_id, "smtp_response": smtp_response}, at)

    async def mark_failed(self, mail: DigestMail, reason: str, *, at: datetime) -> None:
        """Failed for good: never retried."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE email_digests SET failed_at = now(), last_error = $3, claimed_at = NULL
                   WHERE login_id = $1 AND digest_date = $2 AND sent_at IS NULL""",
                mail.login_id, mail.digest_date, reason)
            await _audit(conn, _key(mail.login_id, mail.digest_date, "failed"), None, ENGINE_ACTOR,
                         "digest_failed", {"login_id": mail.login_id, "digest_date": mail.digest_date.isoformat(),
                                           "message_id": mail.message_id, "reason": reason}, at)

    async def release(self, mail: DigestMail, reason: str, *, run_key: str) -> None:
        """Not sent this time, worth retrying: free the claim at once, with the reason."""
        await self.pool.execute(
            """UPDATE email_digests SET last_error = $3, claimed_at = NULL
               WHERE login_id = $1 AND digest_date = $2 AND sent_at IS NULL AND claimed_by = $4""",
            mail.login_id, mail.digest_date, reason, run_key)

    async def hold_unsent(self, day: date, reason: str) -> int:
        """The day's rows that wait, unclaimed, say why (the mailer is off); how many."""
        rows = await self.pool.fetch(
            """UPDATE email_digests SET last_error = $2
               WHERE digest_date = $1 AND sent_at IS NULL AND failed_at IS NULL AND claimed_at IS NULL
               RETURNING login_id""", day, reason)
        return len(rows)

    async def summary(self, day: date, run_key: str) -> DigestMailResult:
        rows = await self.pool.fetch(
            """SELECT d.login_id, d.sent_at IS NOT NULL AS sent, d.claimed_by IS NOT DISTINCT FROM $2 AS mine,
                      d.failed_at IS NOT NULL AS failed, coalesce(d.recipient, u.email) IS NULL AS no_address
               FROM email_digests d LEFT JOIN users u ON u.login_id = d.login_id
               WHERE d.digest_date = $1 ORDER BY d.login_id""", day, run_key)
        result = DigestMailResult()
        for r in rows:
            if r["sent"]:
                if r["mine"]:
                    result.sent += 1
                else:
                    result.already_sent += 1
            elif r["failed"]:
                result.failed.append(r["login_id"])
            elif r["no_address"]:
                result.without_address.append(r["login_id"])
            else:
                result.pending.append(r["login_id"])
        return result

    async def rows(self, *, day: date | None = None, problems_only: bool = False,
                   limit: int = 500) -> list[OutboxRow]:
        """For ops: newest day first. `problems_only`: retrying, without an address, or failed."""
        records = await self.pool.fetch(
            """SELECT * FROM (
                   SELECT d.digest_date, d.login_id, coalesce(d.recipient, u.email) AS recipient, d.attempts,
                          cardinality(d.notification_ids) AS open_notifications, d.message_id, d.queued_at,
                          d.sent_at, d.smtp_response, d.last_error,
                          CASE WHEN d.sent_at IS NOT NULL THEN 'sent'
                               WHEN d.failed_at IS NOT NULL THEN 'failed'
                               WHEN coalesce(d.recipient, u.email) IS NULL THEN 'no_address'
                               WHEN d.claimed_at IS NOT NULL THEN 'sending'
                               WHEN d.attempts = 0 AND d.last_error IS NOT NULL THEN 'held'
                               WHEN d.attempts > 0 THEN 'retrying'
                               ELSE 'queued' END AS status
                   FROM email_digests d LEFT JOIN users u ON u.login_id = d.login_id
                   WHERE $1::date IS NULL OR d.digest_date = $1) r
               WHERE NOT $2 OR r.status = ANY($3::text[])
               ORDER BY r.digest_date DESC, r.login_id LIMIT $4""",
            day, problems_only, list(PROBLEMS), limit)
        return [OutboxRow.model_validate(dict(r)) for r in records]

"""The rows the Store's reads return, one typed model per table (or per query that joins):
callers read fields, never a row by string key. Each model holds every column of its table,
so `SELECT *` validates into it; a column added by a migration is added here too."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Self

import asyncpg
from pydantic import field_validator

from icr.domain.models import Model, NotificationRow


def _json(value: Any) -> Any:
    """asyncpg hands jsonb over as its text."""
    return json.loads(value) if isinstance(value, str) else value


class Row(Model):
    @classmethod
    def of(cls, record: asyncpg.Record) -> Self:
        return cls.model_validate(dict(record))

    @classmethod
    def all_of(cls, records: list[asyncpg.Record]) -> list[Self]:
        return [cls.model_validate(dict(r)) for r in records]


class CertificateRow(Row):
    """`certificates`: a registered certificate as the registry holds it."""

    case_reference: str
    provider_firm_id: str
    office_code: str
    provider_contact_login: str
    # The contact the last import named (a reassignment in the engine changes the one above only).
    imported_contact_login: str | None
    granted_on: date
    last_activity_at: datetime | None
    poa_paid: Decimal
    poa_recouped: Decimal
    closed_at: datetime | None
    closed_reason: str | None
    registered_at: datetime
    updated_at: datetime


class ClosedCertificateRow(Row):
    """`closed_certificates`: closed while it was not registered."""

    case_reference: str
    closed_at: datetime
    closed_reason: str
    closed_by: str


class NotificationTableRow(Row, NotificationRow):
    """Every column of `notifications`: the portal's view of a notification, and the responses it
    offered and the outages that moved its dates."""

    available_responses: list[str]
    extensions: list[dict[str, Any]]

    @field_validator("extensions", mode="before")
    @classmethod
    def _extensions(cls, value: Any) -> Any:
        return _json(value)


class TaskRow(Row):
    """`laa_tasks`: a task for the LAA, open until decided or closed."""

    task_id: str
    case_reference: str
    kind: str
    notification_id: str | None
    response: str | None
    detail: str
    raised_at: datetime
    is_open: bool
    decision: str | None
    decided_by: str | None
    decision_reason: str | None
    decided_at: datetime | None


class QueuedTask(TaskRow):
    """An open task as `queue` shows it: with its certificate's firm (None when unregistered)."""

    provider_firm_id: str | None


class TaskQueue(Model):
    """The open tasks asked for, the longest waiting first, and how many match in all."""

    tasks: list[QueuedTask]
    total: int


class RecoupmentRow(Row):
    recoupment_id: str
    case_reference: str
    amount: Decimal
    recouped_at: datetime
    reason: str
    actor: str


class LedgerRow(Row):
    """`activity_ledger`: one qualifying event, the first content under its id."""

    seq: int
    case_reference: str
    event_id: str
    kind: str
    occurred_at: datetime
    source: str | None
    received_at: datetime


class AuditRow(Row):
    id: int
    idempotency_key: str
    case_reference: str | None
    actor: str
    action: str
    detail: dict[str, Any]
    at: datetime

    @field_validator("detail", mode="before")
    @classmethod
    def _detail(cls, value: Any) -> Any:
        return _json(value)


class DigestRow(Row):
    """`email_digests`: one provider user's daily digest and what became of it."""

    login_id: str
    digest_date: date
    provider_firm_id: str | None
    notification_ids: list[str]
    queued_at: datetime
    sent_at: datetime | None
    recipient: str | None
    message_id: str | None
    earliest_due: datetime | None
    attempts: int
    claimed_at: datetime | None
    claimed_by: str | None
    smtp_response: str | None
    last_error: str | None
    failed_at: datetime | None

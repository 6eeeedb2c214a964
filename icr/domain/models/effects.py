"""Effects: what the rules ask the workflow to do (each one activity's input), and results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from icr.domain.models.base import Model
from icr.domain.models.messages import ActivityEvent
from icr.domain.models.policy import OutageExtension
from icr.domain.models.vocabulary import Decision, NotificationStatus, Response, TaskKind


class RecordActivityEvents(Model):
    kind: Literal["record_activity_events"] = "record_activity_events"
    case_reference: str
    events: list[ActivityEvent]
    received_at: datetime


class RaiseNotification(Model):
    kind: Literal["raise_notification"] = "raise_notification"
    case_reference: str
    notification_id: str
    cycle: int
    provider_firm_id: str | None
    assigned_to: str | None
    date_assigned: datetime
    due_date: datetime
    return_date: datetime
    # Rendered by the rules, so the store writes what it is given and depends on models only.
    subject: str
    letter: str


class MarkNotificationOverdue(Model):
    kind: Literal["mark_notification_overdue"] = "mark_notification_overdue"
    case_reference: str
    notification_id: str
    at: datetime


class ExtendNotification(Model):
    """Declared outages moved the open notification's due date and return date."""

    kind: Literal["extend_notification"] = "extend_notification"
    case_reference: str
    notification_id: str
    due_date: datetime
    return_date: datetime
    overdue: bool
    extensions: list[OutageExtension]
    at: datetime


class CloseNotification(Model):
    kind: Literal["close_notification"] = "close_notification"
    case_reference: str
    notification_id: str
    status: NotificationStatus
    at: datetime


class RecordResponse(Model):
    """The answer to a notification (or an exercise response applied on the provider's
    behalf, with no notification). A `case_ongoing` answer also enters the ledger as
    `icr_ongoing_response` activity."""

    kind: Literal["record_response"] = "record_response"
    case_reference: str
    response_key: str
    notification_id: str | None
    response: Response
    message: str | None
    responded_by: str
    at: datetime


class RaiseTask(Model):
    kind: Literal["raise_task"] = "raise_task"
    case_reference: str
    task_id: str
    task_kind: TaskKind
    notification_id: str | None = None
    response: Response | None = None
    detail: str
    at: datetime


class CloseTask(Model):
    """A caseworker's decision on a task, or the engine closing a superseded task."""

    kind: Literal["close_task"] = "close_task"
    case_reference: str
    task_id: str
    decision: Decision | None
    decided_by: str
    reason: str
    at: datetime


class ClaimExerciseResponse(Model):
    kind: Literal["claim_exercise_response"] = "claim_exercise_response"
    case_reference: str
    claim_key: str
    at: datetime


class CloseCertificate(Model):
    """Close the certificate; with `recoup`, recover exactly the outstanding POA once."""

    kind: Literal["close_certificate"] = "close_certificate"
    case_reference: str
    recoupment_id: str
    recoup: bool
    reason: str
    actor: str
    at: datetime


class UpdateContact(Model):
    kind: Literal["update_contact"] = "update_contact"
    case_reference: str
    new_contact_login_id: str
    actor: str
    at: datetime


class AuditRefusal(Model):
    """A message that was refused (bad event, bad decision): audited, nothing else."""

    kind: Literal["audit_refusal"] = "audit_refusal"
    case_reference: str
    refusal_key: str
    actor: str
    action: str
    reason: str
    detail: dict[str, str]
    at: datetime


Effect = Annotated[
    RecordActivityEvents
    | RaiseNotification
    | MarkNotificationOverdue
    | ExtendNotification
    | CloseNotification
    | RecordResponse
    | RaiseTask
    | CloseTask
    | ClaimExerciseResponse
    | CloseCertificate
    | UpdateContact
    | AuditRefusal,
    Field(discriminator="kind"),
]


class LedgerEvent(Model):
    """An event as the ledger holds it (the first content received under its id wins)."""

    seq: int
    event_id: str
    kind: str
    occurred_at: datetime


class RefusedEvent(Model):
    event_id: str
    reason: str


class RecordActivityResult(Model):
    """The ledger's rows for every event of the step, whether this attempt wrote them or an
    earlier one did (a lost workflow task, a duplicate): the workflow applies those above its
    watermark. Events the database would not store are refused."""

    events: list[LedgerEvent] = Field(default_factory=list)
    refused: list[RefusedEvent] = Field(default_factory=list)


class CloseCertificateResult(Model):
    recouped: str | None  # decimal string of the amount recouped, None when nothing was due


class NotificationRecord(Model):
    notification_id: str
    assigned_to: str | None
    date_assigned: datetime
    due_date: datetime
    return_date: datetime
    status: str
    is_open: bool


class TaskRecord(Model):
    task_id: str
    kind: str
    is_open: bool


class CertificateRecords(Model):
    """What the database holds for one certificate, to compare with its workflow's status."""

    case_reference: str
    notifications: list[NotificationRecord]
    tasks: list[TaskRecord]
    recoupments: list[str]  # decimal strings
    # The latest qualifying activity the database knows (ledger or registry).
    latest_activity_at: datetime | None
    closed: bool
    # The inactivity period of the policy version the workflow says is in force.
    inactivity_days: int | None

"""Typed messages and state of the engine.

Everything that crosses a Temporal boundary (workflow input, signals, updates, queries,
activity inputs and results) is one of these pydantic models, so fields can be added later
without breaking running histories. They live outside the workflow module so the workflow
sandbox can pass them through.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)


# --- vocabulary ------------------------------------------------------------------------


class IcrStage(StrEnum):
    ACTIVE = "Active"
    AWAITING_RESPONSE = "AwaitingResponse"
    OVERDUE = "Overdue"
    LAA_REVIEW = "LaaReview"
    ESCALATED = "Escalated"
    CLOSED = "Closed"


class ActivityKind(StrEnum):
    APPLICATION = "application"
    AMENDMENT = "amendment"
    CASE_OUTCOME = "case_outcome"
    BILL = "bill"
    PRIOR_AUTHORITY = "prior_authority"
    COUNSEL_ALLOCATION = "counsel_allocation"
    PROVIDER_TRANSFER = "provider_transfer"
    CASE_PLAN = "case_plan"
    ICR_ONGOING_RESPONSE = "icr_ongoing_response"


class Response(StrEnum):
    CASE_ONGOING = "case_ongoing"
    COMPLETE_TO_BE_BILLED = "complete_to_be_billed"
    COMPLETE_COSTS_NEGOTIATED = "complete_costs_negotiated"
    COMPLETE_COURT_ASSESSMENT = "complete_court_assessment"
    COMPLETE_NO_BILL_DUE = "complete_no_bill_due"


RESPONSE_LABELS: dict[Response, str] = {
    Response.CASE_ONGOING: "Case Ongoing",
    Response.COMPLETE_TO_BE_BILLED: "Case Complete to be Billed",
    Response.COMPLETE_COSTS_NEGOTIATED: "Case Complete Costs Negotiated",
    Response.COMPLETE_COURT_ASSESSMENT: "Case Complete Court Assessment",
    Response.COMPLETE_NO_BILL_DUE: "Case Complete No Bill Due",
}


class Decision(StrEnum):
    CLOSE = "close"
    KEEP_OPEN = "keep_open"


class TaskKind(StrEnum):
    REVIEW = "review"
    NO_RESPONSE = "no_response"
    ESCALATION = "escalation"
    FOLLOW_UP = "follow_up"
    REGISTRATION_MISSING = "registration_missing"


class Role(StrEnum):
    CASE_MANAGEMENT = "case_management"
    CASE_MANAGEMENT_SUPERVISOR = "case_management_supervisor"
    BILL_PREPARATION = "bill_preparation"
    BILL_SUPERVISOR = "bill_supervisor"
    OFFICE_MANAGER = "office_manager"
    CROSS_OFFICE = "cross_office"


class NotificationStatus(StrEnum):
    OPEN = "Open"
    OVERDUE = "Overdue"
    RESPONDED = "Responded"
    NO_RESPONSE = "No Response"
    ACTIVITY_RECORDED = "Activity Recorded"
    WITHDRAWN = "Withdrawn"
    CERTIFICATE_CLOSED = "Certificate Closed"


EXERCISE_ACTOR = "LAA (exercise)"
ENGINE_ACTOR = "engine"
# The activities' error type for a value the database refuses (never fixed by retrying).
INVALID_DATA = "invalid_data"


# --- policy ----------------------------------------------------------------------------


class Policy(Model):
    """One version of the inactivity policy. Every period is an exact duration (14 days is
    14 x 24 hours), never rounded to calendar days."""

    version: int
    inactivity_days: int
    response_due: timedelta = timedelta(days=14)
    return_after: timedelta = timedelta(days=21)
    max_unanswered_cycles: int = 3
    effective_from: datetime


class PolicyRecord(Policy):
    """A policy version as recorded: who added it, when and why."""

    created_by: str
    created_at: datetime
    note: str


class PolicyChange(Model):
    """What an operator asks for: a new version of every period, from a moment, with who and why."""

    inactivity_days: int
    response_due: timedelta
    return_after: timedelta
    max_unanswered_cycles: int
    effective_from: datetime
    reason: str
    actor: str


# --- outages ---------------------------------------------------------------------------


class Outage(Model):
    """A declared CCMS outage: response deadlines overlapping it are extended by the overlap."""

    outage_id: int
    starts_at: datetime
    ends_at: datetime
    reason: str


class OutageRecord(Outage):
    declared_by: str
    declared_at: datetime


class OutageDeclaration(Model):
    starts_at: datetime
    ends_at: datetime
    reason: str
    actor: str


class OutageExtension(Model):
    """How far one outage moved an open notification's due date and return date."""

    outage_id: int
    reason: str
    starts_at: datetime
    ends_at: datetime
    due_date_by: timedelta
    return_date_by: timedelta


# --- roll-outs and the forecast (read from the registry by the operator's tools) -------


class OpenCertificate(Model):
    """An open certificate as the registry and the ledger see it, for roll-outs and forecasts."""

    case_reference: str
    # Where its inactivity clock runs from: the latest of its registry activity, its ledger
    # and a caseworker's keep-open decision, or the start of its grant date.
    clock_from: datetime
    registered: bool
    # A notification or an LAA task is open: it is under review, so it does not fall due.
    in_review: bool


class RolloutKind(StrEnum):
    POLICY = "policy"
    OUTAGE = "outage"


class RolloutRecord(Model):
    """A roll-out: telling open certificates about a new policy version or outage, at a rate."""

    rollout_id: int
    kind: RolloutKind
    subject: int  # the policy version or the outage id
    started_by: str
    reason: str
    started_at: datetime
    rate: float
    total: int
    done: int
    not_running: int
    status: str  # running, interrupted, finished, superseded
    updated_at: datetime
    finished_at: datetime | None


# --- inbound messages (the public contract) --------------------------------------------


class CertificateInput(Model):
    """Workflow input: `{"case_reference": "300001416143"}`, all an outside caller may pass.

    Both fields are `Any` on purpose: a payload the decoder refused would fail every workflow
    task of that id, for good, so any JSON value decodes here and the workflow checks it
    itself, ending a start it cannot use with a clear failure (see `CertificateWorkflow.run`).
    """

    case_reference: Any = None
    # The engine's own, set on continue-as-new and accepted only from it (a `CarriedState`).
    carried: Any = None

    @model_validator(mode="before")
    @classmethod
    def _any_json_value(cls, value: Any) -> Any:
        # Not an object (a bare number, a list, null): kept as the case reference, which the
        # workflow then refuses with its usual message.
        return value if isinstance(value, dict) else {"case_reference": value}

    @model_serializer(mode="wrap")
    def _without_carried(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # The Web UI shows the start input as sent: a plain start shows only the case
        # reference, not the engine's carried state when there is none.
        data: dict[str, object] = handler(self)
        if data.get("carried") is None:
            data.pop("carried", None)
        return data


class CarriedState(Model):
    """What one run of a certificate hands to the next on continue-as-new."""

    state: CertificateState
    pending_events: list[ActivityEvent] = Field(default_factory=list)
    pending_decisions: list[LaaDecisionRequest] = Field(default_factory=list)
    # Every close signal not yet handled (a refused one is audited, not dropped).
    pending_closes: list[CloseCertificateRequest] = Field(default_factory=list)
    reload: bool = False
    # Messages dropped because a queue was full, not yet audited.
    dropped_events: int = 0
    dropped_decisions: int = 0


class ActivityEvent(Model):
    """`record_activity` signal: a qualifying action reported by an activity source.

    `kind` is a plain string (not the enum) so that an unknown kind reaches the rules and is
    refused with a clear reason instead of being dropped by the payload decoder."""

    # Defaults only so that a payload missing a field still decodes and is refused by the
    # rules with a clear, audited reason, instead of being dropped by the decoder.
    event_id: str = ""
    kind: str = ""
    occurred_at: datetime | None = None
    source: str | None = None


class RespondRequest(Model):
    """`respond` update: the provider's answer to the open notification."""

    # Defaults only so that a missing field is refused with a clear error by the rules.
    user_login_id: str = ""
    response: str = ""
    message: str | None = None


class RespondResult(Model):
    notification_id: str
    response: Response
    outcome: str
    stage: IcrStage


class LaaDecisionRequest(Model):
    """`laa_decision` signal from a caseworker."""

    caseworker: str = ""
    decision: str = ""
    reason: str = ""
    # The task decided: a decision naming a task that is no longer the open one is refused.
    task_id: str | None = None


class DecideResult(Model):
    """The answer to the `decide` update: the task decided and where the certificate is now."""

    task_id: str
    decision: Decision
    stage: IcrStage


class ReassignContactRequest(Model):
    """`reassign_contact` update from a Cross Office user."""

    user_login_id: str = ""
    new_contact_login_id: str = ""


class ReassignContactResult(Model):
    case_reference: str
    provider_contact_login: str


class CloseCertificateRequest(Model):
    """`close_certificate` signal: discharged or closed elsewhere.

    Both fields are required by the rules; the defaults only let a payload missing one
    decode, so that it is refused with an audited reason instead of dropped by the decoder.
    `system` names the system that sent it (as it says: Temporal does not tell a workflow who
    signalled it), recorded as the actor in the audit log."""

    reason: str = ""
    occurred_at: datetime | None = None
    system: str | None = None


# --- registry snapshots (read from PostgreSQL by activities) ---------------------------


class Caseworker(Model):
    """An LAA caseworker of the directory: decisions are taken only under an active one."""

    caseworker_id: str
    active: bool


class LoadCaseworkerInput(Model):
    caseworker_id: str


class LoadCaseworkerResult(Model):
    caseworker: Caseworker | None


class User(Model):
    login_id: str
    provider_firm_id: str
    roles: list[str] = Field(default_factory=list)
    pre_silas: bool = False
    email: str | None = None  # where the daily digest goes; none: no e-mail, reported by each digest run


class ExerciseResponse(Model):
    case_reference: str
    response: Response
    reported_on: date


class Registration(Model):
    """What the registry knows about a certificate (no money: that stays in PostgreSQL)."""

    provider_firm_id: str
    office_code: str
    provider_contact_login: str
    granted_on: date


class CertificateSnapshot(Model):
    case_reference: str
    registration: Registration | None
    last_activity_at: datetime | None
    closed: bool
    exercise_response: ExerciseResponse | None
    policy: Policy
    next_policy_change_at: datetime | None
    # Declared outages that can still move its response deadlines or its falling due.
    outages: list[Outage] = Field(default_factory=list)
    # Payments on account not yet recouped, as a decimal string; None when not registered.
    poa_outstanding: str | None = None


# --- workflow state --------------------------------------------------------------------


class OpenNotification(Model):
    notification_id: str
    cycle: int
    assigned_to: str | None
    date_assigned: datetime
    due_date: datetime
    return_date: datetime
    overdue: bool = False
    # The policy's periods when it was raised: outages extend these, so the dates can be
    # worked out again when another outage is declared. None on notifications raised before.
    response_period: timedelta | None = None
    return_period: timedelta | None = None
    extensions: list[OutageExtension] = Field(default_factory=list)


class OpenTask(Model):
    task_id: str
    kind: TaskKind
    raised_at: datetime
    response: Response | None = None
    # When the response being reviewed was given (for an exercise response, the start of the
    # day it was reported): its follow-up year and the bills that count run from here.
    responded_at: datetime | None = None
    # A no-response task raised while the notification is resent needs no decision to go
    # on; one raised when resending stops (exercise certificates) does.
    blocking: bool = True


class FollowUpWatch(Model):
    """A "to be billed" response kept open: a follow-up task is due if no bill arrives."""

    response: Response
    due_at: datetime
    # Only a bill that happened after this (the response) counts; None: any bill.
    since: datetime | None = None


class Recoupment(Model):
    recoupment_id: str
    amount: str  # decimal string, e.g. "1000.00"
    at: datetime


class HistoryEntry(Model):
    at: datetime
    what: str
    # The same without personal data (login ids), for the Web UI; None when `what` names no one.
    public: str | None = None


class CertificateState(Model):
    case_reference: str
    loaded: bool = False
    registration: Registration | None = None
    policy: Policy | None = None
    next_policy_change_at: datetime | None = None
    outages: list[Outage] = Field(default_factory=list)
    last_activity_at: datetime | None = None
    # The inactivity clock runs from here: the latest qualifying activity, or a
    # caseworker's keep-open decision, or the grant date.
    clock_from: datetime | None = None
    stage: IcrStage = IcrStage.ACTIVE
    notification: OpenNotification | None = None
    notification_cycle: int = 0
    task: OpenTask | None = None
    follow_up: FollowUpWatch | None = None
    # The latest `bill` activity: a bill between a "to be billed" response and the
    # caseworker's keep-open decision still spares the follow-up.
    last_bill_at: datetime | None = None
    exercise_response: ExerciseResponse | None = None
    on_exercise_list: bool = False
    # From the registry on each load, for the caseworker's view (a decimal string).
    poa_outstanding: str | None = None
    # Monotonic counters: ids of notifications and tasks are built from them, so they are
    # deterministic business keys that survive retries, replays and continue-as-new.
    notifications_raised: int = 0
    tasks_raised: int = 0
    refusals: int = 0
    # The ledger's sequence number of the newest event applied: a ledger row above it has
    # not moved the clock yet (even if an attempt that did not finish wrote it), one at or
    # below it has (a duplicate).
    ledger_applied: int = 0
    recoupments: list[Recoupment] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    closed_at: datetime | None = None
    closed_reason: str | None = None


class NotificationView(Model):
    notification_id: str
    assigned_to: str | None
    date_assigned: datetime
    due_date: datetime
    return_date: datetime
    overdue: bool
    # Each declared outage that moved the due date or the return date, and by how much.
    extensions: list[OutageExtension] = Field(default_factory=list)


class TaskView(Model):
    task_id: str
    kind: TaskKind


class RecoupmentView(Model):
    amount: str
    at: datetime


class CertificateStatus(Model):
    """`status` query: the whole state, in the contract's field names."""

    case_reference: str
    stage: IcrStage
    registered: bool
    provider_firm_id: str | None
    provider_contact_login: str | None
    last_activity_at: datetime | None
    inactivity_deadline: datetime | None
    notification_cycle: int
    policy_version: int | None
    open_notification: NotificationView | None
    open_task: TaskView | None
    follow_up_due_at: datetime | None
    on_exercise_list: bool
    recoupments: list[RecoupmentView]
    history: list[HistoryEntry]
    closed_at: datetime | None
    closed_reason: str | None
    # How many notifications and tasks this certificate has raised, ever: the database holds
    # exactly as many rows (`starter.py check` compares them).
    notifications_raised: int = 0
    tasks_raised: int = 0


# --- effects: what the rules ask the workflow to do; each is one activity's input -------


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


class QueueDailyDigests(Model):
    """Queue today's "outstanding actions" e-mails: one per provider user."""

    digest_date: date
    at: datetime


class DailyDigestResult(Model):
    digest_date: date
    queued: int
    # The day's outbox after this run's mailing (absent from runs before the mailer existed).
    sent: int = 0  # by this run
    already_sent: int = 0  # by an earlier run of the same day
    failed: list[str] = Field(default_factory=list)  # login ids whose digest failed for good
    without_address: list[str] = Field(default_factory=list)  # login ids with no e-mail address


class SendDailyDigests(Model):
    """Send the day's queued digests from the outbox."""

    digest_date: date
    at: datetime
    # The digest run (its workflow run id): what this run sent is told apart from earlier runs'.
    run_key: str


class DigestMailResult(Model):
    """The day's outbox after one mailing pass."""

    sent: int = 0  # by this run
    already_sent: int = 0  # by earlier runs
    failed: list[str] = Field(default_factory=list)
    without_address: list[str] = Field(default_factory=list)
    # Not sent yet but worth retrying: a server that was down, a 4xx answer, a claim still
    # held by another (perhaps crashed) sender until its lease ends.
    pending: list[str] = Field(default_factory=list)


class LoadCertificateInput(Model):
    case_reference: str
    at: datetime


class LoadUsersInput(Model):
    login_ids: list[str]


class LoadUsersResult(Model):
    users: list[User]


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


CarriedState.model_rebuild()

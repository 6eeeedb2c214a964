"""The workflow's state, what it carries across continue-as-new, and the views it answers."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from icr.domain.models.base import Model
from icr.domain.models.messages import ActivityEvent, CloseCertificateRequest, LaaDecisionRequest
from icr.domain.models.policy import Outage, OutageExtension, Policy
from icr.domain.models.registry import ExerciseResponse, Registration
from icr.domain.models.vocabulary import IcrStage, Response, TaskKind


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
    # Messages dropped because their payload could not be decoded, not yet audited, and why
    # the last of them could not.
    dropped_undecodable: int = 0
    undecodable_reason: str = ""

"""Policy versions, outages, roll-outs and the forecast's view of the registry."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from icr.domain.models.base import Model


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

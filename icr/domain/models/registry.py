"""Registry snapshots read from PostgreSQL by activities, and the activities' read inputs."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from icr.domain.models.base import Model
from icr.domain.models.policy import Outage, Policy
from icr.domain.models.vocabulary import Response


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



class LoadCertificateInput(Model):
    case_reference: str
    at: datetime


class LoadUsersInput(Model):
    login_ids: list[str]


class LoadUsersResult(Model):
    users: list[User]

"""Shared builders and fixed instants of the rule tests (tests/unit/test_rules_*.py).

No clock, no I/O: every `now` is a fixed, timezone-aware datetime. Expected instants are
written out literally (not recomputed with the code's own arithmetic), so each test can fail.
The rules are those of docs/rules.md and the names of docs/contract.md.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from icr.domain import rules
from icr.domain.models import (
    ActivityEvent,
    CertificateSnapshot,
    CertificateState,
    CloseCertificateRequest,
    ExerciseResponse,
    LaaDecisionRequest,
    Policy,
    ReassignContactRequest,
    Registration,
    RespondRequest,
    Response,
    User,
)
from icr.domain.rules import Refused, Transition

UK = ZoneInfo("Europe/London")

CASE = "300001416143"
FIRM = "26517"
OTHER_FIRM = "31337"
OFFICE = "2L847Q"
CONTACT = "JSMITH"
LEGACY = "LEGACY01"  # a pre-SiLAS username
CASEWORKER = "laa.caseworker1"
GRANTED = date(2023, 2, 10)

LAST = datetime(2024, 9, 16, 10, 0, tzinfo=UTC)  # last qualifying activity
DUE_608 = datetime(2026, 5, 17, 10, 0, tzinfo=UTC)  # LAST + 608 days
DUE_365 = datetime(2025, 9, 16, 10, 0, tzinfo=UTC)  # LAST + 365 days
LOADED_AT = datetime(2024, 9, 20, 8, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)

# The notification cycles when the certificate falls due at DUE_608 and nobody answers.
N1 = DUE_608
N1_DUE = datetime(2026, 5, 31, 10, 0, tzinfo=UTC)
N1_RETURN = datetime(2026, 6, 7, 10, 0, tzinfo=UTC)
N2_DUE = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)
N2_RETURN = datetime(2026, 6, 28, 10, 0, tzinfo=UTC)
N3_DUE = datetime(2026, 7, 12, 10, 0, tzinfo=UTC)
N3_RETURN = datetime(2026, 7, 19, 10, 0, tzinfo=UTC)

ID1 = "ICR-300001416143-001"
ID2 = "ICR-300001416143-002"
ID3 = "ICR-300001416143-003"
TASK1 = "TASK-300001416143-001"
TASK2 = "TASK-300001416143-002"
TASK3 = "TASK-300001416143-003"
RCP = "RCP-300001416143"

POLICY_608 = Policy(version=2, inactivity_days=608, effective_from=datetime(2026, 5, 17, tzinfo=UK))
POLICY_365 = Policy(version=1, inactivity_days=365, effective_from=datetime(2019, 4, 1, tzinfo=UK))

QUALIFYING_KINDS = [
    "application",
    "amendment",
    "case_outcome",
    "bill",
    "prior_authority",
    "counsel_allocation",
    "provider_transfer",
    "case_plan",
    "icr_ongoing_response",
]
RESPONSES = [
    "case_ongoing",
    "complete_to_be_billed",
    "complete_costs_negotiated",
    "complete_court_assessment",
    "complete_no_bill_due",
]
BILLED = [
    Response.COMPLETE_TO_BE_BILLED,
    Response.COMPLETE_COSTS_NEGOTIATED,
    Response.COMPLETE_COURT_ASSESSMENT,
]

_DEFAULT = object()


# --- builders --------------------------------------------------------------------------


def registration(contact: str = CONTACT, granted_on: date = GRANTED) -> Registration:
    return Registration(
        provider_firm_id=FIRM, office_code=OFFICE, provider_contact_login=contact, granted_on=granted_on
    )


def snapshot(
    *,
    reg: Registration | None | object = _DEFAULT,
    last_activity_at: datetime | None = LAST,
    closed: bool = False,
    exercise_response: ExerciseResponse | None = None,
    policy: Policy = POLICY_608,
    next_policy_change_at: datetime | None = None,
) -> CertificateSnapshot:
    return CertificateSnapshot(
        case_reference=CASE,
        registration=registration() if reg is _DEFAULT else reg,
        last_activity_at=last_activity_at,
        closed=closed,
        exercise_response=exercise_response,
        policy=policy,
        next_policy_change_at=next_policy_change_at,
    )


def state(*, now: datetime = LOADED_AT, **snapshot_fields: object) -> CertificateState:
    """A loaded certificate state (policy and registration), as after the workflow starts."""
    return rules.load(CertificateState(case_reference=CASE), snapshot(**snapshot_fields), now).state


def step(s: CertificateState, now: datetime) -> Transition:
    result = rules.next_step(s, now)
    assert isinstance(result, Transition), f"expected a Transition at {now}, got {result!r}"
    return result


def notified(**state_fields: object) -> CertificateState:
    """Fallen due at DUE_608: notification ID1 (cycle 1) open, assigned to the contact."""
    return step(state(**state_fields), N1).state


def overdue(**state_fields: object) -> CertificateState:
    return step(notified(**state_fields), N1_DUE).state


def resent(**state_fields: object) -> CertificateState:
    """First notification returned: TASK1 (no response, non-blocking) and ID2 (cycle 2) open."""
    return step(overdue(**state_fields), N1_RETURN).state


def escalated() -> CertificateState:
    s = resent()
    s = step(s, N2_DUE).state
    s = step(s, N2_RETURN).state
    s = step(s, N3_DUE).state
    return step(s, N3_RETURN).state


def reviewed(response: Response, at: datetime, **state_fields: object) -> CertificateState:
    """The provider answered `response` (a billed one) at `at`, three days after notification
    ID1 was raised: REVIEW task TASK1 open."""
    raised = at - timedelta(days=3)
    fields: dict[str, object] = {"last_activity_at": raised - timedelta(days=608), **state_fields}
    s = step(state(now=raised - timedelta(days=1), **fields), raised).state
    return rules.apply_response(s, RespondRequest(user_login_id=CONTACT, response=response.value), at).state


def event(event_id: str = "EV-1", kind: str = "amendment", occurred_at: datetime = LAST,
          source: str | None = "ccms") -> ActivityEvent:
    return ActivityEvent(event_id=event_id, kind=kind, occurred_at=occurred_at, source=source)


def user(login_id: str, *roles: str, firm: str = FIRM, pre_silas: bool = False) -> User:
    return User(login_id=login_id, provider_firm_id=firm, roles=list(roles), pre_silas=pre_silas)


def dump(effect: object, *drop: str) -> dict[str, object]:
    return effect.model_dump(exclude=set(drop))  # type: ignore[attr-defined]


def refused(fn, *args) -> Refused:  # noqa: ANN001
    with pytest.raises(Refused) as info:
        fn(*args)
    return info.value


# --- instants and helpers shared by several test files -------------------------------

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)

ANSWERED = N1 + timedelta(days=3, hours=2)

RESPONDED = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
DECIDED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FY_END_2027 = datetime(2027, 4, 1, 0, 0, tzinfo=UK)


def decide(s: CertificateState, decision: str, now: datetime = DECIDED, reason: str = "checked") -> Transition:
    return rules.apply_decision(s, LaaDecisionRequest(caseworker=CASEWORKER, decision=decision, reason=reason), now)


CLOSED_AT = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)


def close(s: CertificateState, reason: str = "discharged", now: datetime = CLOSED_AT) -> Transition:
    return rules.apply_close(s, CloseCertificateRequest(reason=reason, occurred_at=now), now)


XO = user("XO1", "case_management", "cross_office")
NEW = user("NEW1", "case_management")
REASSIGN = ReassignContactRequest(user_login_id="XO1", new_contact_login_id="NEW1")
REASSIGNED_AT = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)

"""Unit tests of what the outside sees (icr/rules/views.py) and the notification letter
(icr/rules/letters.py).

No clock, no I/O: builders and fixed instants are in tests/rules_builders.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from icr import rules
from icr.models import (
    CertificateState,
    IcrStage,
    NotificationView,
    RaiseNotification,
    RespondRequest,
    Response,
    TaskKind,
    TaskView,
)
from tests.rules_builders import (
    ANSWERED,
    CASE,
    CLOSED_AT,
    CONTACT,
    DUE_608,
    FIRM,
    FY_END_2027,
    ID1,
    LAST,
    N1,
    N1_DUE,
    N1_RETURN,
    N2_DUE,
    POLICY_608,
    RESPONDED,
    TASK1,
    close,
    decide,
    escalated,
    notified,
    overdue,
    resent,
    reviewed,
    state,
    step,
)


# --- the notification letter -----------------------------------------------------------


DEFAULT_PERIODS = {"response_due": timedelta(days=14), "return_after": timedelta(days=21)}


def test_notification_letter_shows_due_date_in_uk_time_and_the_five_responses() -> None:
    letter = rules.notification_letter(CASE, datetime(2026, 5, 31, 23, 30, tzinfo=UTC),  # 00:30 BST, 1 June
                                       **DEFAULT_PERIODS)
    assert "300001416143" in letter
    assert "01 June 2026" in letter
    assert "within 14 days, by 01 June 2026" in letter and "within 21 days the case" in letter
    for label in ["Case Ongoing", "Case Complete to be Billed", "Case Complete Costs Negotiated",
                  "Case Complete Court Assessment", "Case Complete No Bill Due"]:
        assert label in letter


def test_notification_effect_carries_the_subject_and_the_letter_with_its_own_due_date() -> None:
    (raised,) = step(state(), N1).effects
    assert isinstance(raised, RaiseNotification)
    assert raised.subject == "Inactive Case Please Review"
    assert raised.letter == rules.notification_letter(CASE, N1_DUE, **DEFAULT_PERIODS)
    assert "Certificate 300001416143 has had no recorded activity" in raised.letter
    assert "Please tell us within 14 days, by 31 May 2026, whether" in raised.letter
    resend = step(overdue(), N1_RETURN).effects[-1]
    assert isinstance(resend, RaiseNotification)
    assert resend.subject == "Inactive Case Please Review"
    assert "Please tell us within 14 days, by 21 June 2026, whether" in resend.letter


def test_the_letter_states_the_response_periods_of_the_policy_in_force() -> None:
    policy = POLICY_608.model_copy(update={"response_due": timedelta(days=10), "return_after": timedelta(days=30)})
    (raised,) = step(state(policy=policy), N1).effects
    assert isinstance(raised, RaiseNotification)
    assert "Please tell us within 10 days, by 27 May 2026, whether" in raised.letter
    assert "If we do not hear from you within 30 days the case" in raised.letter
    assert "14 days" not in raised.letter and "21 days" not in raised.letter


@pytest.mark.parametrize(
    ("period", "words"),
    [(timedelta(days=14), "14 days"), (timedelta(days=1), "1 day"), (timedelta(hours=36), "36 hours"),
     (timedelta(hours=1), "1 hour"), (timedelta(seconds=20), "20 seconds"), (timedelta(minutes=2), "2 minutes"),
     (timedelta(seconds=90), "90 seconds")],
)
def test_policy_periods_in_words(period: timedelta, words: str) -> None:
    assert rules.period_in_words(period) == words


# --- stage_of, search_attributes, status_of --------------------------------------------


def _closed() -> CertificateState:
    return close(notified()).state


def _reviewing() -> CertificateState:
    return rules.apply_response(notified(), RespondRequest(user_login_id=CONTACT, response="complete_to_be_billed"),
                                ANSWERED).state


STAGES = [
    ("active", state, IcrStage.ACTIVE, None, 0),
    ("awaiting", notified, IcrStage.AWAITING_RESPONSE, N1_DUE, 1),
    ("overdue", overdue, IcrStage.OVERDUE, N1_DUE, 1),
    ("resent", resent, IcrStage.AWAITING_RESPONSE, N2_DUE, 2),
    ("review", _reviewing, IcrStage.LAA_REVIEW, None, 1),
    ("escalated", escalated, IcrStage.ESCALATED, None, 3),
    ("closed", _closed, IcrStage.CLOSED, None, 1),
]


@pytest.mark.parametrize(("build", "stage", "due", "cycle"), [s[1:] for s in STAGES], ids=[s[0] for s in STAGES])
def test_stage_and_search_attributes(build, stage: IcrStage, due: datetime | None, cycle: int) -> None:  # noqa: ANN001
    s = build()
    assert rules.stage_of(s) == stage
    assert s.stage == stage
    assert rules.search_attributes(s) == {
        "IcrStage": stage.value,
        "CaseReference": CASE,
        "ProviderFirmId": FIRM,
        "InactivityDeadline": None if stage == IcrStage.CLOSED else DUE_608,
        "ResponseDueDate": due,
        "NotificationCycle": cycle,
        "PolicyVersion": 2,
    }


def test_search_attribute_stage_values_are_the_contract_keywords() -> None:
    assert [s.value for s in IcrStage] == ["Active", "AwaitingResponse", "Overdue", "LaaReview", "Escalated", "Closed"]


def test_search_attributes_of_unregistered_certificate_have_no_firm() -> None:
    attrs = rules.search_attributes(state(reg=None))
    assert attrs["ProviderFirmId"] is None
    assert attrs["CaseReference"] == CASE
    assert attrs["InactivityDeadline"] == DUE_608


def test_status_of_awaiting_certificate() -> None:
    s = notified()
    st = rules.status_of(s)
    assert st.case_reference == CASE
    assert st.stage == IcrStage.AWAITING_RESPONSE
    assert st.registered is True
    assert st.provider_firm_id == FIRM
    assert st.provider_contact_login == CONTACT
    assert st.last_activity_at == LAST
    assert st.inactivity_deadline == DUE_608
    assert st.notification_cycle == 1
    assert st.policy_version == 2
    assert st.open_notification == NotificationView(notification_id=ID1, assigned_to=CONTACT, date_assigned=N1,
                                                    due_date=N1_DUE, return_date=N1_RETURN, overdue=False)
    assert st.open_task is None
    assert st.follow_up_due_at is None
    assert st.on_exercise_list is False
    assert st.recoupments == []
    assert st.history == s.history
    assert st.history[-1].what == f"notification {ID1} raised (cycle 1) to {CONTACT}"
    assert st.closed_at is None and st.closed_reason is None


def test_status_json_has_the_contract_fields() -> None:
    doc = rules.status_of(step(notified(), N1_DUE).state).model_dump(mode="json")
    for name in ["case_reference", "stage", "last_activity_at", "inactivity_deadline", "notification_cycle",
                 "policy_version", "open_notification", "open_task", "recoupments", "history"]:
        assert name in doc
    assert doc["stage"] == "Overdue"
    assert doc["open_notification"]["overdue"] is True
    assert doc["open_notification"]["due_date"] == "2026-05-31T10:00:00Z"
    assert set(doc["open_notification"]) >= {"notification_id", "assigned_to", "date_assigned", "due_date",
                                             "return_date", "overdue"}


def test_status_of_review_shows_open_task() -> None:
    st = rules.status_of(_reviewing())
    assert st.open_task == TaskView(task_id=TASK1, kind=TaskKind.REVIEW)
    assert st.open_notification is None
    assert st.stage == IcrStage.LAA_REVIEW


def test_status_of_kept_open_review_shows_follow_up() -> None:
    s = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "keep_open").state
    st = rules.status_of(s)
    assert st.follow_up_due_at == FY_END_2027
    assert st.inactivity_deadline == datetime(2028, 7, 31, 9, 0, tzinfo=UTC)  # DECIDED + 608 days


def test_status_of_closed_certificate_has_no_deadline() -> None:
    st = rules.status_of(_closed())
    assert st.stage == IcrStage.CLOSED
    assert st.inactivity_deadline is None
    assert st.closed_at == CLOSED_AT
    assert st.closed_reason == "closed elsewhere: discharged"

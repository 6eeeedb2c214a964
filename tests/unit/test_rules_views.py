"""Unit tests of what the outside sees (icr/domain/rules/views.py) and the notification letter
(icr/domain/rules/letters.py).

No clock, no I/O: builders and fixed instants are in tests/rules_builders.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from icr.domain import rules
from icr.domain.models import (
    CertificateState,
    IcrStage,
    LaaDecisionRequest,
    NotificationView,
    RaiseNotification,
    Recoupment,
    RespondRequest,
    Response,
    TaskKind,
    TaskView,
)
from icr.domain.rules import Refused
from tests.rules_builders import (
    ANSWERED,
    CASE,
    CASEWORKER,
    CLOSED_AT,
    CONTACT,
    DECIDED,
    DUE_608,
    FIRM,
    FY_END_2027,
    ID1,
    LAST,
    LOADED_AT,
    N1,
    N1_DUE,
    N1_RETURN,
    N2_DUE,
    NOW,
    POLICY_608,
    REASSIGN,
    RESPONDED,
    SEC,
    TASK1,
    close,
    decide,
    escalated,
    notified,
    overdue,
    resent,
    reviewed,
    snapshot,
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
    ("active", state, IcrStage.ACTIVE, None, 0, None),
    ("awaiting", notified, IcrStage.AWAITING_RESPONSE, N1_DUE, 1, None),
    ("overdue", overdue, IcrStage.OVERDUE, N1_DUE, 1, None),
    # The returned notification's no-response task stays in the LAA's queue while it is resent.
    ("resent", resent, IcrStage.AWAITING_RESPONSE, N2_DUE, 2, "no_response"),
    ("review", _reviewing, IcrStage.LAA_REVIEW, None, 1, "review"),
    ("escalated", escalated, IcrStage.ESCALATED, None, 3, "escalation"),
    ("closed", _closed, IcrStage.CLOSED, None, 1, None),
]


@pytest.mark.parametrize(("build", "stage", "due", "cycle", "task"), [s[1:] for s in STAGES],
                         ids=[s[0] for s in STAGES])
def test_stage_and_search_attributes(build, stage: IcrStage, due: datetime | None, cycle: int,  # noqa: ANN001
                                     task: str | None) -> None:
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
        "OpenTaskKind": task,
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


# --- what the Web UI shows: no personal data, the situation at a glance ------------------

PERSONAL = [CONTACT, CASEWORKER, "XO1", "NEW1", "a private message", "reason in confidence"]


def _no_personal_data(text: str) -> None:
    for word in PERSONAL:
        assert word not in text, f"{word!r} shown in the Web UI:\n{text}"


def _with_poa(s: CertificateState, outstanding: str) -> CertificateState:
    return rules.load(s, snapshot().model_copy(update={"poa_outstanding": outstanding}), LOADED_AT).state


def test_static_summary_and_details_name_the_certificate_and_its_firm() -> None:
    assert rules.static_summary(CASE, FIRM) == "Certificate 300001416143 · firm 26517"
    assert rules.static_summary(CASE, None) == "Certificate 300001416143"
    details = rules.static_details(CASE, FIRM)
    assert "**300001416143**" in details and "**26517**" in details and "Current Details" in details
    assert "firm" not in rules.static_details(CASE, None)


def test_current_details_of_an_overdue_certificate() -> None:
    details = rules.current_details(_with_poa(overdue(), "750.00"))
    lines = details.splitlines()
    assert lines[0] == "**Overdue: the provider's response is late**"
    assert "- **Case reference** 300001416143 · **firm** 26517" in lines
    # UK time: 10:00 UTC is 11:00 BST.
    assert (f"- **Open notification** {ID1} (cycle 1 of 3): due 2026-05-31 11:00, returned 2026-06-07 11:00 "
            "if unanswered — **overdue**") in lines
    assert "- **Inactivity deadline** 2026-05-17 11:00 (reached: under review)" in lines
    assert "- **Payments on account outstanding** £750.00" in lines
    assert "Open task" not in details and "To decide" not in details
    # The last events, newest first, without the login id the notification was assigned to.
    events = lines[lines.index("**Last events**") + 2:]
    assert events[0] == f"- 2026-05-31 11:00 notification {ID1} overdue"
    assert events[1] == f"- 2026-05-17 11:00 notification {ID1} raised (cycle 1)"
    _no_personal_data(details)


def test_current_details_of_a_review_say_what_the_task_asks_and_how_to_decide() -> None:
    details = rules.current_details(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED))
    assert details.startswith("**LAA review: a task awaits a caseworker's decision**")
    assert (f"- **Open task** {TASK1} (review, since 2026-11-23 15:00): the provider answered Case Complete "
            "to be Billed: close, or keep open") in details
    assert f"provider answered Case Complete to be Billed to {ID1}" in details
    assert "*More Actions* → *Send an Update* → `decide`" in details
    assert f'"task_id": "{TASK1}"' in details
    assert "Open notification" not in details
    _no_personal_data(details)


def test_current_details_of_an_escalation_count_the_unanswered_cycles() -> None:
    details = rules.current_details(escalated())
    assert details.startswith("**Escalated: a task awaits a caseworker's decision**")
    assert "(escalation, since 2026-07-19 11:00): 3 notifications in a row unanswered" in details
    _no_personal_data(details)


@pytest.mark.parametrize("decision", ["close", "keep_open"])
def test_current_details_after_a_decision_name_no_caseworker_and_no_reason(decision: str) -> None:
    s = decide(_with_poa(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "1000.00"), decision,
               reason="reason in confidence").state
    details = rules.current_details(s)
    assert f"caseworker decided {decision} on {TASK1}" in details
    if decision == "close":
        assert details.startswith("**Closed**")
        assert "certificate closed" in details and "Inactivity deadline" not in details
    else:
        assert details.startswith("**Active: the inactivity clock is running**")
        assert "- **Follow-up** due 2027-04-01 00:00 unless a bill arrives" in details
        assert "- **Falls due** 2028-07-31 10:00 unless activity is recorded before then" in details
    _no_personal_data(details)


def test_current_details_of_a_refused_decision_and_a_reassignment_name_no_one() -> None:
    s = rules.refuse_decision(notified(), LaaDecisionRequest(caseworker=CASEWORKER, decision="maybe"),
                              Refused("unknown_decision", "'maybe' is not a decision"), N1_DUE).state
    s = rules.apply_reassign(s, REASSIGN, N1_DUE).state
    details = rules.current_details(s)
    assert "decision refused: 'maybe' is not a decision" in details
    assert "provider contact reassigned" in details
    _no_personal_data(details)
    # The status query keeps who did it.
    assert any(CASEWORKER in h.what for h in rules.status_of(s).history)


def test_current_details_of_a_closed_certificate_show_the_recoupment() -> None:
    s = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "close").state
    s.recoupments.append(Recoupment(recoupment_id="RCP-300001416143", amount="1000.00", at=DECIDED))
    details = rules.current_details(s)
    assert "- **Closed** 2026-12-01 09:00" in details
    assert "- **Recouped** £1000.00 on 2026-12-01 09:00" in details


def test_step_summaries_read_as_the_review_and_name_no_one() -> None:
    raised = step(state(), N1).effects[0]
    assert rules.step_summary(raised) == f"raise notification {ID1} (cycle 1): due 2026-05-31 11:00"
    returned = step(overdue(), N1_RETURN).effects
    assert [rules.step_summary(e) for e in returned] == [
        f"close notification {ID1}: No Response",
        f"raise LAA task {TASK1}: no_response",
        "raise notification ICR-300001416143-002 (cycle 2): due 2026-06-21 11:00",
    ]
    answered = rules.apply_response(notified(), RespondRequest(
        user_login_id=CONTACT, response="complete_no_bill_due", message="a private message"), ANSWERED).effects
    assert [rules.step_summary(e) for e in answered] == [
        "record response Case Complete No Bill Due", "close the certificate; recoup payments on account"]
    decided = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "keep_open").effects
    assert [rules.step_summary(e) for e in decided] == [f"close LAA task {TASK1}: keep_open"]
    reassigned = rules.apply_reassign(notified(), REASSIGN, N1_DUE).effects
    assert [rules.step_summary(e) for e in reassigned] == ["record the new provider contact"]


def test_wait_summaries_name_what_the_certificate_waits_for() -> None:
    assert rules.wait_summary(state(), DUE_608) == "wait for activity: falls due 2026-05-17 11:00"
    assert rules.wait_summary(notified(), N1_DUE) == "wait for response: due 2026-05-31 11:00"
    assert rules.wait_summary(overdue(), N1_RETURN) == "wait for response: returned 2026-06-07 11:00"
    kept = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "keep_open").state
    assert rules.wait_summary(kept, FY_END_2027) == "wait for a bill: follow-up 2027-04-01 00:00"
    assert rules.wait_summary(state(), NOW) == "wait until 2026-05-20 13:00"
    # And each is what the rules' next step actually waits until.
    for s, until in [(state(), DUE_608), (notified(), N1_DUE), (overdue(), N1_RETURN), (kept, FY_END_2027)]:
        wait = rules.next_step(s, until - SEC)
        assert isinstance(wait, rules.Wait) and wait.until == until

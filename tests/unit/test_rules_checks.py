"""Unit tests of the input checks and authorisation (icr/domain/rules/checks.py).

No clock, no I/O: builders and fixed instants are in tests/rules_builders.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from icr.domain import rules
from icr.domain.models import (
    ActivityEvent,
    Caseworker,
    CloseCertificateRequest,
    Decision,
    LaaDecisionRequest,
    ReassignContactRequest,
    RespondRequest,
    Response,
    User,
)
from icr.domain.rules import Refused, authorize_decision, check_decision
from tests.rules_builders import (
    CASEWORKER,
    CONTACT,
    DECIDED,
    ID1,
    LEGACY,
    N1,
    N1_DUE,
    N1_RETURN,
    N2_DUE,
    N2_RETURN,
    NEW,
    NOW,
    OTHER_FIRM,
    QUALIFYING_KINDS,
    REASSIGN,
    RESPONDED,
    RESPONSES,
    SEC,
    TASK1,
    TASK2,
    XO,
    decide,
    escalated,
    event,
    notified,
    overdue,
    refused,
    registration,
    resent,
    reviewed,
    state,
    step,
    user,
)

# --- check_case_reference --------------------------------------------------------------


def test_valid_case_reference_is_returned_unchanged() -> None:
    assert rules.check_case_reference("300001416143") == "300001416143"
    assert rules.workflow_id_for("300001416143") == "certificate-300001416143"


@pytest.mark.parametrize(
    "value",
    [
        "30000141614",  # 11 digits
        "3000014161430",  # 13 digits
        "3000O1416143",  # letter O for zero
        "ABCDEFGHIJKL",
        "400001416143",  # does not start 3000
        "300101416143",
        "030001416143",
        " 300001416143",
        "300001416143 ",
        "300001416143\n",
        "3000 1416143",
        "",
        300001416143,
        None,
        b"300001416143",
        ["300001416143"],
    ],
)
def test_malformed_case_reference_is_refused(value: object) -> None:
    error = refused(rules.check_case_reference, value)
    assert error.code == "invalid_case_reference"
    assert "12 digits" in error.message and "3000" in error.message


@pytest.mark.parametrize("value", ["3000０１４１６１４３", "3000٠١٤١٦١٤٣"])
def test_case_reference_with_non_ascii_digits_is_refused(value: str) -> None:
    # Spec: "12 digits, in practice starting 3000 ... Anything else is rejected".
    error = refused(rules.check_case_reference, value)
    assert error.code == "invalid_case_reference"


# --- check_event -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", QUALIFYING_KINDS)
def test_each_qualifying_kind_is_accepted(kind: str) -> None:
    assert rules.check_event(event(kind=kind, occurred_at=NOW - timedelta(days=1)), NOW) is None


@pytest.mark.parametrize("kind", ["case_enquiry", "means_reassessment", "address_lookup", "Bill", ""])
def test_unknown_activity_kind_is_refused_naming_accepted_kinds(kind: str) -> None:
    error = refused(rules.check_event, event(kind=kind, occurred_at=NOW), NOW)
    assert error.code == "unknown_activity_kind"
    assert repr(kind) in error.message
    for accepted in QUALIFYING_KINDS:
        assert accepted in error.message


def test_naive_occurred_at_is_refused() -> None:
    error = refused(rules.check_event, event(occurred_at=datetime(2026, 5, 20, 11, 0)), NOW)
    assert error.code == "naive_time"


def test_event_exactly_five_minutes_ahead_is_accepted() -> None:
    assert rules.check_event(event(occurred_at=NOW + timedelta(minutes=5)), NOW) is None


def test_event_five_minutes_ahead_in_another_offset_is_accepted() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert rules.check_event(event(occurred_at=datetime(2026, 5, 20, 13, 5, tzinfo=plus_one)), NOW) is None


def test_event_five_minutes_and_one_second_ahead_is_refused() -> None:
    error = refused(rules.check_event, event(occurred_at=NOW + timedelta(minutes=5, seconds=1)), NOW)
    assert error.code == "future_event"


@pytest.mark.parametrize("event_id", ["", "   ", "x" * 201])
def test_empty_blank_or_overlong_event_id_is_refused(event_id: str) -> None:
    error = refused(rules.check_event, event(event_id=event_id, occurred_at=NOW), NOW)
    assert error.code == "invalid_event_id"


def test_event_id_of_200_characters_is_accepted() -> None:
    assert rules.check_event(event(event_id="x" * 200, occurred_at=NOW), NOW) is None


# --- check_response / authorize_response -----------------------------------------------


def test_overdue_notification_is_still_answerable() -> None:
    s = overdue()
    assert rules.check_response(s, RespondRequest(user_login_id=CONTACT, response="case_ongoing"), N1_DUE) == (
        Response.CASE_ONGOING
    )


@pytest.mark.parametrize("value", RESPONSES)
def test_every_response_value_is_accepted(value: str) -> None:
    assert rules.check_response(notified(), RespondRequest(user_login_id=CONTACT, response=value), N1) == Response(value)


@pytest.mark.parametrize("value", ["CASE_ONGOING", "Case Ongoing", "case ongoing", "close", "keep_open"])
def test_unknown_response_is_refused(value: str) -> None:
    error = refused(rules.check_response, notified(), RespondRequest(user_login_id=CONTACT, response=value), N1 + SEC)
    assert error.code == "unknown_response"
    for accepted in RESPONSES:
        assert accepted in error.message


def test_missing_fields_of_a_response_are_named() -> None:
    error = refused(rules.check_response, notified(), RespondRequest(user_login_id=CONTACT), N1 + SEC)
    assert error.code == "missing_response"
    assert all(accepted in error.message for accepted in RESPONSES)
    error = refused(rules.check_response, notified(), RespondRequest(response="case_ongoing"), N1 + SEC)
    assert error.code == "missing_user" and "user_login_id" in error.message


def test_event_without_a_time_is_refused() -> None:
    with pytest.raises(Refused) as info:
        rules.check_event(ActivityEvent(event_id="e1", kind="bill"), N1)
    assert info.value.code == "missing_time"


def test_apply_response_refuses_unknown_response_and_notification_stays_open() -> None:
    s = notified()
    with pytest.raises(Refused) as info:
        rules.apply_response(s, RespondRequest(user_login_id=CONTACT, response="finished"), N1 + SEC)
    assert info.value.code == "unknown_response"
    assert s.notification is not None and s.notification.notification_id == ID1


def test_message_of_2000_characters_is_accepted() -> None:
    request = RespondRequest(user_login_id=CONTACT, response="case_ongoing", message="m" * 2000)
    assert rules.check_response(notified(), request, N1) == Response.CASE_ONGOING


def test_message_of_2001_characters_is_refused() -> None:
    request = RespondRequest(user_login_id=CONTACT, response="case_ongoing", message="m" * 2001)
    assert refused(rules.check_response, notified(), request, N1 + SEC).code == "message_too_long"


def test_response_without_open_notification_is_refused() -> None:
    error = refused(rules.check_response, state(), RespondRequest(user_login_id=CONTACT, response="case_ongoing"), N1 + SEC)
    assert error.code == "no_open_notification"


def test_second_response_to_the_same_notification_is_refused() -> None:
    s = rules.apply_response(notified(), RespondRequest(user_login_id=CONTACT, response="complete_to_be_billed"),
                             N1 + SEC).state
    error = refused(rules.check_response, s, RespondRequest(user_login_id=CONTACT, response="case_ongoing"), N1 + SEC)
    assert error.code == "no_open_notification"


def test_response_on_closed_certificate_is_refused() -> None:
    s = rules.apply_close(notified(), CloseCertificateRequest(reason="discharged", occurred_at=N1), N1 + SEC).state
    error = refused(rules.check_response, s, RespondRequest(user_login_id=CONTACT, response="case_ongoing"), N1 + SEC)
    assert error.code == "certificate_closed"


def test_response_without_user_is_refused() -> None:
    error = refused(rules.check_response, notified(), RespondRequest(user_login_id="  ", response="case_ongoing"), N1 + SEC)
    assert error.code == "missing_user"


@pytest.mark.parametrize(
    "responder",
    [
        user(CONTACT, "case_management"),
        user(CONTACT, "case_management_supervisor"),
        user(CONTACT, "case_management", "bill_preparation"),
        user("XO1", "case_management", "cross_office"),
        user("XO2", "case_management_supervisor", "cross_office"),
    ],
    ids=["assigned", "assigned-supervisor", "assigned-with-billing", "cross-office", "cross-office-supervisor"],
)
def test_permitted_responder_is_authorized(responder: User) -> None:
    assert rules.authorize_response(notified(), responder, responder.login_id) is None


def test_cross_office_user_may_respond_to_notification_assigned_to_pre_silas_username() -> None:
    s = notified(reg=registration(contact=LEGACY))
    assert s.notification is not None and s.notification.assigned_to == LEGACY
    assert rules.authorize_response(s, user("XO1", "case_management", "cross_office"), "XO1") is None


@pytest.mark.parametrize(
    ("responder", "code"),
    [
        (None, "unknown_user"),
        (user("XO9", "case_management", "cross_office", firm=OTHER_FIRM), "wrong_firm"),
        (user(CONTACT, "case_management", firm=OTHER_FIRM), "wrong_firm"),
        (user("OM1", "office_manager"), "not_permitted"),
        (user("OM2", "office_manager", "cross_office"), "not_permitted"),
        (user(CONTACT, "office_manager"), "not_permitted"),
        (user("BP1", "bill_preparation"), "not_permitted"),
        (user(CONTACT, "bill_preparation"), "not_permitted"),
        (user("BS1", "bill_supervisor", "cross_office"), "not_permitted"),
        (user("NOROLE"), "not_permitted"),
        (user("CM2", "case_management"), "not_assigned"),
        (user("CMS2", "case_management_supervisor", "office_manager"), "not_assigned"),
    ],
    ids=[
        "unknown", "other-firm-cross-office", "other-firm-same-login", "office-manager",
        "office-manager-cross-office", "assigned-office-manager", "bill-preparation",
        "assigned-bill-preparation", "bill-supervisor-cross-office", "no-roles",
        "not-assigned", "not-assigned-supervisor",
    ],
)
def test_unpermitted_responder_is_refused(responder: User | None, code: str) -> None:
    s = notified()
    login = responder.login_id if responder else "GHOST"
    error = refused(rules.authorize_response, s, responder, login)
    assert error.code == code
    assert s == notified()


@pytest.mark.parametrize("roles", [("case_management",), ("case_management", "cross_office")],
                         ids=["assigned", "cross-office"])
def test_pre_silas_username_never_responds_itself(roles: tuple[str, ...]) -> None:
    # Decision: a legacy login no person signs in with; Cross Office users act for it.
    s = notified(reg=registration(contact=LEGACY))
    error = refused(rules.authorize_response, s, user(LEGACY, *roles, pre_silas=True), LEGACY)
    assert error.code == "pre_silas_login" and "Cross Office" in error.message


def test_response_one_second_before_the_return_date_is_accepted() -> None:
    request = RespondRequest(user_login_id=CONTACT, response="case_ongoing")
    assert rules.check_response(overdue(), request, N1_RETURN - SEC) == Response.CASE_ONGOING


@pytest.mark.parametrize("late", [timedelta(0), SEC, timedelta(days=30)], ids=["at", "after", "long-after"])
def test_response_at_or_after_the_return_date_is_refused_by_the_rules(late: timedelta) -> None:
    # Whether or not the return has been processed yet: the notification is still open here.
    s = overdue()
    assert s.notification is not None
    request = RespondRequest(user_login_id=CONTACT, response="case_ongoing")
    error = refused(rules.check_response, s, request, N1_RETURN + late)
    assert error.code == "notification_returned" and ID1 in error.message
    error = refused(rules.apply_response, s, request, N1_RETURN + late)
    assert error.code == "notification_returned"


def test_non_cross_office_user_may_not_respond_for_pre_silas_username() -> None:
    s = notified(reg=registration(contact=LEGACY))
    assert refused(rules.authorize_response, s, user("CM2", "case_management"), "CM2").code == "not_assigned"


# --- check_decision --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["Close", "KEEP_OPEN", "keep open", "reopen", ""])
def test_unknown_decision_is_refused(value: str) -> None:
    s = reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED)
    error = refused(rules.check_decision, s, LaaDecisionRequest(caseworker=CASEWORKER, decision=value))
    assert error.code == "unknown_decision"
    assert "close" in error.message and "keep_open" in error.message


def test_decision_without_open_task_is_refused() -> None:
    request = LaaDecisionRequest(caseworker=CASEWORKER, decision="close")
    assert refused(rules.check_decision, notified(), request).code == "no_open_task"
    assert refused(rules.apply_decision, notified(), request, DECIDED).code == "no_open_task"


def test_decision_on_closed_certificate_is_refused() -> None:
    s = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "close").state
    error = refused(rules.check_decision, s, LaaDecisionRequest(caseworker=CASEWORKER, decision="keep_open"))
    assert error.code == "certificate_closed"


def test_decision_without_caseworker_is_refused() -> None:
    s = reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED)
    error = refused(rules.check_decision, s, LaaDecisionRequest(caseworker=" ", decision="close"))
    assert error.code == "missing_caseworker"


@pytest.mark.parametrize("value", ["close", "keep_open"])
def test_known_decision_is_accepted(value: str) -> None:
    s = reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED)
    assert rules.check_decision(s, LaaDecisionRequest(caseworker=CASEWORKER, decision=value)) == Decision(value)


def test_decision_naming_the_open_task_is_accepted() -> None:
    s = reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED)
    request = LaaDecisionRequest(caseworker=CASEWORKER, decision="close", task_id=TASK1)
    assert rules.check_decision(s, request) == Decision.CLOSE


@pytest.mark.parametrize("task_id", [TASK2, "TASK-300001416143-000", ""], ids=["newer", "older", "empty"])
def test_decision_naming_another_task_is_refused(task_id: str) -> None:
    s = reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED)
    request = LaaDecisionRequest(caseworker=CASEWORKER, decision="close", task_id=task_id)
    error = refused(rules.check_decision, s, request)
    assert error.code == "stale_task" and TASK1 in error.message
    assert refused(rules.apply_decision, s, request, DECIDED).code == "stale_task"


def test_a_stale_decision_never_decides_the_newer_task() -> None:
    # TASK1 (no response) was superseded when cycle 2 returned; its stale click must not
    # decide TASK2 (no response of cycle 2).
    s = step(step(resent(), N2_DUE).state, N2_RETURN).state
    assert s.task is not None and s.task.task_id == TASK2
    request = LaaDecisionRequest(caseworker=CASEWORKER, decision="close", task_id=TASK1)
    assert refused(rules.check_decision, s, request).code == "stale_task"


# --- check_close -------------------------------------------------------------------------


def test_close_with_reason_and_time_is_accepted() -> None:
    assert rules.check_close(CloseCertificateRequest(reason="discharged", occurred_at=N1)) == N1


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (CloseCertificateRequest(), "missing_reason"),
        (CloseCertificateRequest(reason="  ", occurred_at=N1), "missing_reason"),
        (CloseCertificateRequest(reason="discharged"), "missing_time"),
        (CloseCertificateRequest(reason="discharged", occurred_at=datetime(2026, 6, 1, 9, 0)), "naive_time"),
    ],
    ids=["empty", "blank-reason", "no-time", "naive-time"],
)
def test_close_missing_its_fields_is_refused(request_: CloseCertificateRequest, code: str) -> None:
    assert refused(rules.check_close, request_).code == code
    assert refused(rules.apply_close, notified(), request_, N1 + SEC).code == code


# --- check_reassign / authorize_reassign -----------------------------------------------


def test_cross_office_user_may_reassign_to_a_user_of_the_firm() -> None:
    s = state()
    assert rules.check_reassign(s, REASSIGN) is None
    assert rules.authorize_reassign(s, REASSIGN, XO, NEW) is None
    assert rules.authorize_reassign(s, REASSIGN, XO, user("NEW1", "case_management_supervisor")) is None


@pytest.mark.parametrize("other", ["bill_preparation", "bill_supervisor", "office_manager", "case_management"])
def test_cross_office_user_with_any_other_role_may_reassign(other: str) -> None:
    # Decision: Cross Office extends "a user who already holds a CCMS role", any role.
    caller = user("XO1", other, "cross_office")
    assert rules.authorize_reassign(state(), REASSIGN, caller, NEW) is None


@pytest.mark.parametrize(
    ("caller", "new_contact", "code"),
    [
        (None, NEW, "unknown_user"),
        (user("XO1", "case_management", "cross_office", firm=OTHER_FIRM), NEW, "wrong_firm"),
        (user("XO1", "case_management"), NEW, "not_permitted"),
        (user("XO1", "cross_office"), NEW, "not_permitted"),
        (user("XO1", "case_management", "cross_office", pre_silas=True), NEW, "not_permitted"),
        (XO, None, "unknown_user"),
        (XO, user("NEW1", "case_management", firm=OTHER_FIRM), "wrong_firm"),
        (XO, user("NEW1", "case_management", pre_silas=True), "contact_cannot_respond"),
        (XO, user("NEW1", "bill_preparation"), "contact_cannot_respond"),
    ],
    ids=[
        "unknown-caller", "caller-other-firm", "caller-not-cross-office", "cross-office-without-another-role",
        "caller-pre-silas", "unknown-contact", "contact-other-firm", "contact-pre-silas", "contact-cannot-respond",
    ],
)
def test_reassign_is_refused(caller: User | None, new_contact: User | None, code: str) -> None:
    assert refused(rules.authorize_reassign, state(), REASSIGN, caller, new_contact).code == code


@pytest.mark.parametrize(
    ("s", "request_", "code"),
    [
        (None, ReassignContactRequest(user_login_id="", new_contact_login_id="NEW1"), "missing_user"),
        (None, ReassignContactRequest(user_login_id="XO1", new_contact_login_id=" "), "missing_user"),
        ("closed", REASSIGN, "certificate_closed"),
        ("unregistered", REASSIGN, "not_registered"),
    ],
)
def test_check_reassign_refuses(s: str | None, request_: ReassignContactRequest, code: str) -> None:
    target = {None: state, "closed": lambda: state(closed=True), "unregistered": lambda: state(reg=None)}[s]()
    assert refused(rules.check_reassign, target, request_).code == code


# --- authorize_decision: the LAA caseworker directory -------------------------------------


def test_a_decision_by_an_active_caseworker_of_the_directory_is_taken_under_the_directory_name() -> None:
    request = LaaDecisionRequest(caseworker="LAA-CW-01", decision="close", reason="done")
    assert authorize_decision(request, Caseworker(caseworker_id="LAA-CW-01", active=True)) == "LAA-CW-01"


@pytest.mark.parametrize("caseworker, code", [(None, "unknown_caseworker"),
                                              (("LAA-CW-01", False), "inactive_caseworker")])
def test_a_decision_by_a_name_the_directory_does_not_hold_active_is_refused(caseworker, code) -> None:

    record = None if caseworker is None else Caseworker(caseworker_id=caseworker[0], active=caseworker[1])
    with pytest.raises(Refused) as refused:
        authorize_decision(LaaDecisionRequest(caseworker="LAA-CW-01", decision="close"), record)
    assert refused.value.code == code and "'LAA-CW-01'" in refused.value.message


@pytest.mark.parametrize("name", ["x" * 101, "CW\x00", "CW\n1"])
def test_a_caseworker_name_that_no_directory_could_hold_is_refused_before_any_lookup(name: str) -> None:

    with pytest.raises(Refused) as refused:
        check_decision(escalated(), LaaDecisionRequest(caseworker=name, decision="close"))
    assert refused.value.code == "invalid_caseworker"


# --- available_responses and the answered notification's id ------------------------------

# Every kind of user the authorisation tests above name, permitted or not.
PORTAL_USERS = [
    user(CONTACT, "case_management"), user(CONTACT, "case_management_supervisor"),
    user("XO1", "case_management", "cross_office"), user("XO9", "case_management", "cross_office", firm=OTHER_FIRM),
    user(CONTACT, "case_management", firm=OTHER_FIRM), user("OM1", "office_manager"),
    user("OM2", "office_manager", "cross_office"), user(CONTACT, "office_manager"), user("BP1", "bill_preparation"),
    user("BS1", "bill_supervisor", "cross_office"), user("NOROLE"), user("CM2", "case_management"),
    user(LEGACY, "case_management", pre_silas=True), user(LEGACY, "case_management", "cross_office", pre_silas=True),
]


@pytest.mark.parametrize("responder", PORTAL_USERS, ids=[f"{u.login_id}-{'+'.join(u.roles) or 'none'}-{u.provider_firm_id}"
                                                          for u in PORTAL_USERS])
def test_available_responses_are_all_five_exactly_when_the_respond_update_would_authorise(responder: User) -> None:
    s = notified()
    assert s.notification is not None and s.registration is not None
    try:
        rules.authorize_response(s, responder, responder.login_id)
        allowed = True
    except Refused:
        allowed = False
    available = rules.available_responses(s.registration.provider_firm_id, s.notification.assigned_to, True,
                                          s.notification.return_date, responder, N1 + SEC)
    assert available == (list(Response) if allowed else [])


def test_no_responses_are_available_for_a_closed_or_returned_notification_or_an_unknown_user() -> None:
    s = notified()
    assert s.notification is not None
    assigned = user(CONTACT, "case_management")
    firm, contact, returned = "26517", s.notification.assigned_to, s.notification.return_date
    assert rules.available_responses(firm, contact, True, returned, assigned, returned - SEC) == list(Response)
    assert rules.available_responses(firm, contact, False, returned, assigned, returned - SEC) == []
    assert rules.available_responses(firm, contact, True, returned, assigned, returned) == []
    assert rules.available_responses(firm, contact, True, returned, None, returned - SEC) == []


def test_a_response_naming_a_notification_that_is_not_the_open_one_is_refused() -> None:
    s = notified()
    assert s.notification is not None
    stale = RespondRequest(user_login_id=CONTACT, response="case_ongoing", notification_id="ICR-300001416143-000")
    error = refused(rules.check_response, s, stale, N1 + SEC)
    assert error.code == "stale_notification" and s.notification.notification_id in error.message
    current = RespondRequest(user_login_id=CONTACT, response="case_ongoing",
                             notification_id=s.notification.notification_id)
    assert rules.check_response(s, current, N1 + SEC) == Response.CASE_ONGOING

"""Unit tests of the state transitions (icr/domain/rules/transitions.py): load, the passage of time,
events, responses, decisions, closing, reassigning, exercise responses.

No clock, no I/O: builders and fixed instants are in tests/rules_builders.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from icr.domain import rules
from icr.domain.models import (
    EXERCISE_ACTOR,
    ActivityEvent,
    AuditRefusal,
    CertificateState,
    ClaimExerciseResponse,
    CloseCertificate,
    CloseCertificateRequest,
    CloseNotification,
    CloseTask,
    Decision,
    ExerciseResponse,
    FollowUpWatch,
    IcrStage,
    LaaDecisionRequest,
    MarkNotificationOverdue,
    NotificationStatus,
    OpenTask,
    Policy,
    RaiseNotification,
    RaiseTask,
    RecordResponse,
    RespondRequest,
    Response,
    TaskKind,
    TaskView,
    UpdateContact,
)
from icr.domain.rules import Wait
from tests.rules_builders import (
    ANSWERED,
    BILLED,
    CASE,
    CASEWORKER,
    CLOSED_AT,
    CONTACT,
    DECIDED,
    DUE_365,
    DUE_608,
    FIRM,
    FY_END_2027,
    ID1,
    ID2,
    ID3,
    LAST,
    LOADED_AT,
    N1,
    N1_DUE,
    N1_RETURN,
    N2_DUE,
    N2_RETURN,
    N3_DUE,
    N3_RETURN,
    NOW,
    POLICY_365,
    POLICY_608,
    QUALIFYING_KINDS,
    RCP,
    REASSIGN,
    REASSIGNED_AT,
    RESPONDED,
    SEC,
    TASK1,
    TASK2,
    TASK3,
    UK,
    close,
    decide,
    dump,
    escalated,
    event,
    notified,
    overdue,
    refused,
    registration,
    resent,
    reviewed,
    snapshot,
    state,
    step,
)

# --- screen_events ---------------------------------------------------------------------


def test_screen_events_splits_refused_events_into_audit_refusals() -> None:
    s = state()
    good = event("EV-GOOD", "bill", NOW - timedelta(hours=1))
    unknown = event("EV-ENQ", "case_enquiry", NOW - timedelta(hours=1), source="portal")
    future = event("EV-FUT", "amendment", NOW + timedelta(minutes=6), source=None)
    accepted, refusals = rules.screen_events(s, [good, unknown, future], NOW)
    assert accepted == [good]
    assert [type(r) for r in refusals] == [AuditRefusal, AuditRefusal]
    first, second = refusals
    assert first.refusal_key.startswith("300001416143-event-EV-ENQ-refused-")
    assert dump(first, "reason", "refusal_key") == {
        "kind": "audit_refusal",
        "case_reference": CASE,
        "actor": "portal",
        "action": "activity_refused",
        "detail": {"event_id": "EV-ENQ", "kind": "case_enquiry"},
        "at": NOW,
    }
    assert "case_enquiry" in first.reason and "application" in first.reason
    assert second.refusal_key.startswith("300001416143-event-EV-FUT-refused-")
    assert second.actor == "activity source"
    assert "5 minutes" in second.reason
    # The same refused event again audits once; another with the same id is audited too.
    _, again = rules.screen_events(s, [unknown], NOW)
    assert again[0].refusal_key == first.refusal_key
    other = event("EV-ENQ", "means_reassessment", NOW - timedelta(hours=1), source="portal")
    _, others = rules.screen_events(s, [other], NOW)
    assert others[0].refusal_key != first.refusal_key


# --- load ------------------------------------------------------------------------------


def test_load_starts_clock_from_last_activity() -> None:
    s = state()
    assert s.loaded is True
    assert s.registration == registration()
    assert s.last_activity_at == LAST
    assert s.clock_from == LAST
    assert s.stage == IcrStage.ACTIVE
    assert s.notification is None and s.task is None
    assert s.notification_cycle == 0
    assert rules.inactivity_deadline(s) == DUE_608
    assert [h.what for h in s.history] == ["review started"]
    assert s.history[0].at == LOADED_AT


def test_load_of_unregistered_certificate_without_activity_waits_for_its_first_event() -> None:
    s = state(reg=None, last_activity_at=None)
    assert s.registration is None
    assert s.clock_from is None and rules.inactivity_deadline(s) is None
    assert [h.what for h in s.history] == ["review started (not registered)"]
    assert rules.next_step(s, LOADED_AT + timedelta(days=5000)) == rules.Wait(None)
    # An old event reported later starts the clock from the event, not from the load.
    event = ActivityEvent(event_id="a1", kind="application", occurred_at=LOADED_AT - timedelta(days=700))
    s = rules.apply_events(s, [event], LOADED_AT).state
    assert s.clock_from == event.occurred_at


def test_policy_version_taking_effect_asks_for_a_reload() -> None:
    change = LOADED_AT + timedelta(days=10)
    s = state(next_policy_change_at=change)
    wake = rules.policy_wake_at(CASE, change)  # the certificate's own moment after the date
    assert isinstance(rules.next_step(s, change - timedelta(seconds=1)), rules.Wait)
    assert rules.next_step(s, wake - timedelta(seconds=1)) == Wait(wake)
    assert rules.next_step(s, wake) == rules.Reload()


def test_load_takes_policy_and_next_policy_change() -> None:
    change = datetime(2027, 1, 1, tzinfo=UK)
    s = state(policy=POLICY_365, next_policy_change_at=change)
    assert s.policy == POLICY_365
    assert s.next_policy_change_at == change
    assert rules.inactivity_deadline(s) == DUE_365


def test_reload_with_a_new_policy_records_the_change() -> None:
    s = state()
    at = datetime(2025, 1, 1, tzinfo=UTC)
    s2 = rules.load(s, snapshot(policy=POLICY_365), at).state
    assert s2.policy == POLICY_365
    assert s2.history[-1].what == "policy version 1 in force (365 days)"
    assert s2.history[-1].at == at
    assert rules.inactivity_deadline(s2) == DUE_365


def test_reload_with_newer_activity_closes_the_open_notification_and_the_resent_task() -> None:
    s = resent()
    assert s.notification is not None and s.task is not None and s.notification_cycle == 2
    later = N1_RETURN + timedelta(hours=1)
    t = rules.load(s, snapshot(last_activity_at=later), later + timedelta(minutes=5))
    assert t.state.notification is None and t.state.task is None
    assert t.state.clock_from == later and t.state.notification_cycle == 0
    assert t.state.stage == IcrStage.ACTIVE
    assert [type(e) for e in t.effects] == [CloseNotification, CloseTask]
    assert t.effects[0].status == NotificationStatus.ACTIVITY_RECORDED  # type: ignore[union-attr]


def test_reload_with_nothing_newer_changes_no_notification() -> None:
    s = notified()
    t = rules.load(s, snapshot(), N1 + timedelta(hours=1))
    assert t.effects == [] and t.state.notification == s.notification


def test_reload_with_newer_last_activity_moves_the_clock() -> None:
    later = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    s = rules.load(state(), snapshot(last_activity_at=later), LOADED_AT).state
    assert s.last_activity_at == later
    assert s.clock_from == later


def test_reload_with_older_last_activity_keeps_the_later_clock() -> None:
    s = state().model_copy(update={"clock_from": datetime(2025, 5, 5, tzinfo=UTC)})
    s2 = rules.load(s, snapshot(), LOADED_AT).state
    assert s2.clock_from == datetime(2025, 5, 5, tzinfo=UTC)
    assert s2.last_activity_at == LAST


def test_load_of_closed_snapshot_closes_the_state() -> None:
    s = state(closed=True)
    assert s.closed_at == LOADED_AT
    assert s.closed_reason == "already closed in the registry"
    assert s.stage == IcrStage.CLOSED
    assert rules.next_step(s, DUE_608 + timedelta(days=100)) == Wait(None)


def test_load_of_closed_snapshot_drops_open_notification_and_task() -> None:
    s = resent()
    at = N2_DUE - timedelta(days=1)
    s2 = rules.load(s, snapshot(closed=True), at).state
    assert s2.closed_at == at
    assert s2.notification is None and s2.task is None
    assert s2.stage == IcrStage.CLOSED


def test_load_does_not_mutate_its_input() -> None:
    s = CertificateState(case_reference=CASE)
    rules.load(s, snapshot(), LOADED_AT)
    assert s == CertificateState(case_reference=CASE)


# --- next_step: the inactivity deadline ------------------------------------------------

POLICIES = pytest.mark.parametrize(
    ("policy", "deadline"), [(POLICY_608, DUE_608), (POLICY_365, DUE_365)], ids=["608d", "365d"]
)


@POLICIES
def test_one_second_before_deadline_waits_until_deadline(policy: Policy, deadline: datetime) -> None:
    assert rules.next_step(state(policy=policy), deadline - SEC) == Wait(deadline)


@POLICIES
def test_at_deadline_raises_notification(policy: Policy, deadline: datetime) -> None:
    t = step(state(policy=policy), deadline)
    assert t.effects == [
        RaiseNotification(
            case_reference=CASE,
            notification_id=ID1,
            cycle=1,
            provider_firm_id=FIRM,
            assigned_to=CONTACT,
            date_assigned=deadline,
            due_date=deadline + timedelta(days=14),
            return_date=deadline + timedelta(days=21),
            subject="Inactive Case Please Review",
            letter=rules.notification_letter(CASE, deadline + timedelta(days=14), response_due=timedelta(days=14),
                                             return_after=timedelta(days=21)),
        )
    ]
    n = t.state.notification
    assert n is not None
    assert (n.notification_id, n.cycle, n.assigned_to, n.overdue) == (ID1, 1, CONTACT, False)
    assert t.state.notification_cycle == 1
    assert t.state.notifications_raised == 1
    assert t.state.stage == IcrStage.AWAITING_RESPONSE


def test_late_wake_raises_notification_dated_now() -> None:
    late = DUE_608 + timedelta(hours=3)
    t = step(state(), late)
    (raised,) = t.effects
    assert isinstance(raised, RaiseNotification)
    assert raised.date_assigned == late
    assert raised.due_date == datetime(2026, 5, 31, 13, 0, tzinfo=UTC)
    assert raised.return_date == datetime(2026, 6, 7, 13, 0, tzinfo=UTC)


def test_next_step_does_not_mutate_its_input() -> None:
    s = state()
    before = s.model_copy(deep=True)
    step(s, DUE_608)
    assert s == before


def test_wait_includes_an_earlier_policy_change() -> None:
    change = datetime(2026, 5, 17, 0, 0, tzinfo=UK)
    s = state(next_policy_change_at=change)
    assert rules.next_step(s, datetime(2026, 1, 1, tzinfo=UTC)) == Wait(rules.policy_wake_at(CASE, change))


def test_shortened_policy_makes_certificate_due_at_once() -> None:
    s = state()  # 608 days: due 2026-05-17
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # after LAST + 365
    assert rules.next_step(s, now) == Wait(DUE_608)
    s2 = rules.load(s, snapshot(policy=POLICY_365), now).state
    assert s2.policy == POLICY_365
    assert s2.history[-1].what == "policy version 1 in force (365 days)"
    t = step(s2, now)
    (raised,) = t.effects
    assert isinstance(raised, RaiseNotification)
    assert raised.date_assigned == now


def test_lengthened_policy_moves_the_deadline_later() -> None:
    s = state(policy=POLICY_365)
    now = datetime(2025, 9, 1, tzinfo=UTC)
    assert rules.next_step(s, now) == Wait(DUE_365)
    s2 = rules.load(s, snapshot(policy=POLICY_608), now).state
    assert rules.next_step(s2, now) == Wait(DUE_608)


def test_closed_certificate_never_falls_due() -> None:
    s = rules.apply_close(state(), CloseCertificateRequest(reason="discharged", occurred_at=LOADED_AT),
                          LOADED_AT).state
    assert rules.next_step(s, DUE_608 + timedelta(days=1000)) == Wait(None)


# --- next_step: the response window ----------------------------------------------------


def test_due_and_return_dates_are_exactly_14_and_21_days_after_assignment() -> None:
    n = notified().notification
    assert n is not None
    assert n.date_assigned == datetime(2026, 5, 17, 10, 0, tzinfo=UTC)
    assert n.due_date == datetime(2026, 5, 31, 10, 0, tzinfo=UTC)
    assert n.return_date == datetime(2026, 6, 7, 10, 0, tzinfo=UTC)


def test_open_notification_waits_until_its_due_date() -> None:
    assert rules.next_step(notified(), N1 + SEC) == Wait(N1_DUE)
    assert rules.next_step(notified(), N1_DUE - SEC) == Wait(N1_DUE)


def test_notification_becomes_overdue_exactly_at_14_days() -> None:
    t = step(notified(), N1_DUE)
    assert t.effects == [MarkNotificationOverdue(case_reference=CASE, notification_id=ID1, at=N1_DUE)]
    assert t.state.notification is not None
    assert t.state.notification.overdue is True
    assert t.state.notification.notification_id == ID1
    assert t.state.stage == IcrStage.OVERDUE


def test_overdue_notification_waits_until_return_date() -> None:
    assert rules.next_step(overdue(), N1_DUE + SEC) == Wait(N1_RETURN)
    assert rules.next_step(overdue(), N1_RETURN - SEC) == Wait(N1_RETURN)


def test_returned_at_21_days_closes_as_no_response_raises_task_and_resends() -> None:
    t = step(overdue(), N1_RETURN)
    close, task, resend = t.effects
    assert close == CloseNotification(case_reference=CASE, notification_id=ID1,
                                      status=NotificationStatus.NO_RESPONSE, at=N1_RETURN)
    assert isinstance(task, RaiseTask)
    assert dump(task, "detail") == {
        "kind": "raise_task",
        "case_reference": CASE,
        "task_id": TASK1,
        "task_kind": TaskKind.NO_RESPONSE,
        "notification_id": ID1,
        "response": None,
        "at": N1_RETURN,
    }
    assert resend == RaiseNotification(
        case_reference=CASE,
        notification_id=ID2,
        cycle=2,
        provider_firm_id=FIRM,
        assigned_to=CONTACT,
        date_assigned=N1_RETURN,
        due_date=N2_DUE,
        return_date=N2_RETURN,
        subject="Inactive Case Please Review",
        letter=rules.notification_letter(CASE, N2_DUE, response_due=timedelta(days=14),
                                         return_after=timedelta(days=21)),
    )
    s = t.state
    assert s.task is not None
    assert (s.task.task_id, s.task.kind, s.task.blocking) == (TASK1, TaskKind.NO_RESPONSE, False)
    assert s.notification is not None
    assert (s.notification.notification_id, s.notification.cycle, s.notification.overdue) == (ID2, 2, False)
    assert s.notification_cycle == 2
    assert s.stage == IcrStage.AWAITING_RESPONSE


def test_return_also_happens_if_overdue_step_was_missed() -> None:
    t = step(notified(), N1_RETURN)
    assert [type(e) for e in t.effects] == [CloseNotification, RaiseTask, RaiseNotification]


def test_second_return_supersedes_previous_no_response_task() -> None:
    s = step(resent(), N2_DUE).state
    t = step(s, N2_RETURN)
    close_n, close_t, task, resend = t.effects
    assert close_n == CloseNotification(case_reference=CASE, notification_id=ID2,
                                        status=NotificationStatus.NO_RESPONSE, at=N2_RETURN)
    assert isinstance(close_t, CloseTask)
    assert (close_t.task_id, close_t.decision, close_t.decided_by, close_t.at) == (TASK1, None, "engine", N2_RETURN)
    assert isinstance(task, RaiseTask)
    assert (task.task_id, task.task_kind, task.notification_id) == (TASK2, TaskKind.NO_RESPONSE, ID2)
    assert isinstance(resend, RaiseNotification)
    assert (resend.notification_id, resend.cycle, resend.due_date, resend.return_date) == (ID3, 3, N3_DUE, N3_RETURN)
    assert t.state.notification_cycle == 3


def test_third_unanswered_cycle_escalates_without_resend() -> None:
    s = resent()
    s = step(step(step(s, N2_DUE).state, N2_RETURN).state, N3_DUE).state
    assert s.stage == IcrStage.OVERDUE
    t = step(s, N3_RETURN)
    close_n, close_t, task = t.effects
    assert close_n == CloseNotification(case_reference=CASE, notification_id=ID3,
                                        status=NotificationStatus.NO_RESPONSE, at=N3_RETURN)
    assert isinstance(close_t, CloseTask) and close_t.task_id == TASK2
    assert isinstance(task, RaiseTask)
    assert (task.task_id, task.task_kind, task.notification_id, task.at) == (
        TASK3, TaskKind.ESCALATION, ID3, N3_RETURN)
    assert not any(isinstance(e, RaiseNotification) for e in t.effects)
    assert t.state.notification is None
    assert t.state.task is not None and t.state.task.blocking is True
    assert t.state.stage == IcrStage.ESCALATED
    assert t.state.notifications_raised == 3


def test_escalated_certificate_waits_for_a_decision() -> None:
    assert rules.next_step(escalated(), N3_RETURN + timedelta(days=900)) == Wait(None)


def test_max_unanswered_cycles_is_policy() -> None:
    one = POLICY_608.model_copy(update={"max_unanswered_cycles": 1})
    t = step(notified(policy=one), N1_RETURN)
    assert [type(e) for e in t.effects] == [CloseNotification, RaiseTask]
    assert t.effects[1].task_kind == TaskKind.ESCALATION
    assert t.state.stage == IcrStage.ESCALATED


def test_response_periods_are_policy() -> None:
    short = POLICY_608.model_copy(update={"response_due": timedelta(days=7), "return_after": timedelta(days=10)})
    n = notified(policy=short).notification
    assert n is not None
    assert n.due_date == datetime(2026, 5, 24, 10, 0, tzinfo=UTC)
    assert n.return_date == datetime(2026, 5, 27, 10, 0, tzinfo=UTC)


def test_exercise_list_certificate_returned_raises_blocking_task_and_no_resend() -> None:
    s = overdue().model_copy(update={"on_exercise_list": True})
    t = step(s, N1_RETURN)
    close, task = t.effects
    assert close == CloseNotification(case_reference=CASE, notification_id=ID1,
                                      status=NotificationStatus.NO_RESPONSE, at=N1_RETURN)
    assert isinstance(task, RaiseTask)
    assert (task.task_id, task.task_kind, task.notification_id) == (TASK1, TaskKind.NO_RESPONSE, ID1)
    assert t.state.task is not None and t.state.task.blocking is True
    assert t.state.notification is None
    assert t.state.stage == IcrStage.LAA_REVIEW
    assert rules.next_step(t.state, N1_RETURN + timedelta(days=800)) == Wait(None)


# --- apply_events ----------------------------------------------------------------------

T1 = datetime(2025, 2, 3, 14, 30, tzinfo=UTC)
T1_DUE = datetime(2026, 10, 4, 14, 30, tzinfo=UTC)  # T1 + 608 days


def test_newer_event_restarts_the_clock() -> None:
    t = rules.apply_events(state(), [event("EV-1", "amendment", T1)], T1)
    assert t.effects == []
    assert t.state.last_activity_at == T1
    assert t.state.clock_from == T1
    assert rules.inactivity_deadline(t.state) == T1_DUE
    assert rules.next_step(t.state, T1) == Wait(T1_DUE)
    assert t.state.history[-1].what == "activity amendment at 2025-02-03T14:30:00+00:00: clock restarts"


def test_same_event_applied_twice_moves_nothing_the_second_time() -> None:
    first = rules.apply_events(state(), [event("EV-1", "bill", T1)], T1).state
    again = rules.apply_events(first, [event("EV-1", "bill", T1)], T1 + SEC)
    assert again.effects == []
    assert again.state.clock_from == T1
    assert again.state.last_activity_at == T1
    assert again.state.notification_cycle == first.notification_cycle


def test_older_event_is_recorded_but_moves_no_deadline() -> None:
    old = datetime(2024, 1, 5, 9, 0, tzinfo=UTC)
    t = rules.apply_events(state(), [event("EV-OLD", "application", old)], T1)
    assert t.effects == []
    assert t.state.last_activity_at == LAST
    assert t.state.clock_from == LAST
    assert rules.inactivity_deadline(t.state) == DUE_608
    assert "moves no deadline" in t.state.history[-1].what


def test_older_event_leaves_an_open_notification_open() -> None:
    s = notified()
    t = rules.apply_events(s, [event("EV-OLD", "application", datetime(2024, 1, 5, tzinfo=UTC))], N1 + SEC)
    assert t.effects == []
    assert t.state.notification == s.notification
    assert t.state.stage == IcrStage.AWAITING_RESPONSE


def test_events_are_applied_in_time_order() -> None:
    later = T1 + timedelta(days=2)
    t = rules.apply_events(state(), [event("EV-2", "bill", later), event("EV-1", "amendment", T1)], later)
    assert t.state.clock_from == later
    assert t.state.last_activity_at == later


def test_activity_during_open_notification_closes_it_and_restarts_the_clock() -> None:
    at = N1 + timedelta(days=2)
    t = rules.apply_events(notified(), [event("EV-9", "bill", at)], at)
    assert t.effects == [CloseNotification(case_reference=CASE, notification_id=ID1,
                                           status=NotificationStatus.ACTIVITY_RECORDED, at=at)]
    assert t.state.notification is None
    assert t.state.clock_from == at
    assert t.state.notification_cycle == 0
    assert t.state.stage == IcrStage.ACTIVE
    assert rules.next_step(t.state, at) == Wait(datetime(2028, 1, 17, 10, 0, tzinfo=UTC))


def test_newer_event_after_resend_resets_cycle_and_supersedes_no_response_task() -> None:
    at = N1_RETURN + timedelta(days=1)
    t = rules.apply_events(resent(), [event("EV-9", "case_outcome", at)], at)
    close_n, close_t = t.effects
    assert close_n == CloseNotification(case_reference=CASE, notification_id=ID2,
                                        status=NotificationStatus.ACTIVITY_RECORDED, at=at)
    assert isinstance(close_t, CloseTask)
    assert (close_t.task_id, close_t.decision, close_t.decided_by) == (TASK1, None, "engine")
    assert t.state.notification_cycle == 0
    assert t.state.task is None
    assert t.state.stage == IcrStage.ACTIVE


def test_next_review_after_activity_starts_again_at_cycle_one() -> None:
    at = N1_RETURN + timedelta(days=1)
    s = rules.apply_events(resent(), [event("EV-9", "case_outcome", at)], at).state
    t = step(s, at + timedelta(days=608))
    (raised,) = t.effects
    assert isinstance(raised, RaiseNotification)
    assert (raised.notification_id, raised.cycle) == (ID3, 1)


def test_activity_during_escalation_keeps_the_blocking_task() -> None:
    at = N3_RETURN + timedelta(days=1)
    t = rules.apply_events(escalated(), [event("EV-9", "bill", at)], at)
    assert t.effects == []
    assert t.state.task is not None and t.state.task.kind == TaskKind.ESCALATION
    assert t.state.clock_from == at
    assert t.state.stage == IcrStage.ESCALATED


def test_bill_clears_a_follow_up_watch() -> None:
    s = state().model_copy(update={"follow_up": FollowUpWatch(
        response=Response.COMPLETE_TO_BE_BILLED, due_at=datetime(2026, 4, 1, tzinfo=UK))})
    t = rules.apply_events(s, [event("EV-B", "bill", T1)], T1)
    assert t.state.follow_up is None
    assert "bill received: no follow-up needed" in [h.what for h in t.state.history]


@pytest.mark.parametrize("kind", [k for k in QUALIFYING_KINDS if k != "bill"])
def test_other_activity_keeps_a_follow_up_watch(kind: str) -> None:
    watch = FollowUpWatch(response=Response.COMPLETE_TO_BE_BILLED, due_at=datetime(2026, 4, 1, tzinfo=UK))
    s = state().model_copy(update={"follow_up": watch})
    t = rules.apply_events(s, [event("EV-X", kind, T1)], T1)
    assert t.state.follow_up == watch


# --- apply_response --------------------------------------------------------------------


def _record(response: Response, by: str = CONTACT, message: str | None = None) -> RecordResponse:
    return RecordResponse(case_reference=CASE, response_key=ID1, notification_id=ID1, response=response,
                          message=message, responded_by=by, at=ANSWERED)


def test_case_ongoing_response_restarts_the_clock() -> None:
    request = RespondRequest(user_login_id=CONTACT, response="case_ongoing", message="trial listed for June")
    t = rules.apply_response(notified(), request, ANSWERED)
    assert t.effects == [_record(Response.CASE_ONGOING, message="trial listed for June")]
    s = t.state
    assert s.clock_from == ANSWERED
    assert s.last_activity_at == ANSWERED
    assert s.notification is None and s.task is None
    assert s.notification_cycle == 0
    assert s.stage == IcrStage.ACTIVE
    assert rules.next_step(s, ANSWERED) == Wait(datetime(2028, 1, 18, 12, 0, tzinfo=UTC))


@pytest.mark.parametrize("response", BILLED)
def test_billed_response_raises_review_task(response: Response) -> None:
    t = rules.apply_response(notified(), RespondRequest(user_login_id=CONTACT, response=response.value), ANSWERED)
    record, task = t.effects
    assert record == _record(response)
    assert isinstance(task, RaiseTask)
    assert dump(task, "detail") == {
        "kind": "raise_task",
        "case_reference": CASE,
        "task_id": TASK1,
        "task_kind": TaskKind.REVIEW,
        "notification_id": ID1,
        "response": response,
        "at": ANSWERED,
    }
    s = t.state
    assert s.task is not None
    assert (s.task.kind, s.task.response, s.task.blocking, s.task.raised_at) == (
        TaskKind.REVIEW, response, True, ANSWERED)
    assert s.notification is None
    assert s.clock_from == LAST
    assert s.stage == IcrStage.LAA_REVIEW
    assert rules.next_step(s, ANSWERED + timedelta(days=900)) == Wait(None)


def test_no_bill_due_response_closes_with_recoupment() -> None:
    t = rules.apply_response(notified(), RespondRequest(user_login_id=CONTACT, response="complete_no_bill_due"),
                             ANSWERED)
    assert t.effects == [
        _record(Response.COMPLETE_NO_BILL_DUE),
        CloseCertificate(case_reference=CASE, recoupment_id=RCP, recoup=True,
                         reason="Case Complete No Bill Due", actor=CONTACT, at=ANSWERED),
    ]
    assert t.state.closed_at == ANSWERED
    assert t.state.closed_reason == "Case Complete No Bill Due"
    assert t.state.stage == IcrStage.CLOSED


def test_response_by_cross_office_user_is_recorded_as_that_user() -> None:
    t = rules.apply_response(notified(), RespondRequest(user_login_id="XO1", response="case_ongoing"), ANSWERED)
    assert t.effects == [_record(Response.CASE_ONGOING, by="XO1")]


def test_response_after_resend_supersedes_no_response_task() -> None:
    at = N1_RETURN + timedelta(days=1)
    t = rules.apply_response(resent(), RespondRequest(user_login_id=CONTACT, response="case_ongoing"), at)
    record, close_t = t.effects
    assert isinstance(record, RecordResponse)
    assert (record.notification_id, record.response_key) == (ID2, ID2)
    assert isinstance(close_t, CloseTask)
    assert (close_t.task_id, close_t.decision, close_t.decided_by) == (TASK1, None, "engine")
    assert t.state.task is None
    assert t.state.notification_cycle == 0


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        (Response.CASE_ONGOING, "clock restarted"),
        (Response.COMPLETE_TO_BE_BILLED, "LAA review task raised"),
        (Response.COMPLETE_COSTS_NEGOTIATED, "LAA review task raised"),
        (Response.COMPLETE_COURT_ASSESSMENT, "LAA review task raised"),
        (Response.COMPLETE_NO_BILL_DUE, "certificate closed; outstanding payments on account recouped"),
    ],
)
def test_response_outcome_text(response: Response, outcome: str) -> None:
    assert rules.response_outcome(response) == outcome


# --- apply_decision --------------------------------------------------------------------


def test_close_decision_closes_with_recoupment() -> None:
    t = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "close", reason="bill not expected")
    assert t.effects == [
        CloseTask(case_reference=CASE, task_id=TASK1, decision=Decision.CLOSE, decided_by=CASEWORKER,
                  reason="bill not expected", at=DECIDED),
        CloseCertificate(case_reference=CASE, recoupment_id=RCP, recoup=True,
                         reason="LAA decision: bill not expected", actor=CASEWORKER, at=DECIDED),
    ]
    assert t.state.task is None
    assert t.state.closed_at == DECIDED
    assert t.state.stage == IcrStage.CLOSED


def test_close_decision_on_escalation_closes_with_recoupment() -> None:
    at = N3_RETURN + timedelta(days=2)
    t = decide(escalated(), "close", now=at)
    close_t, close_c = t.effects
    assert isinstance(close_t, CloseTask) and (close_t.task_id, close_t.decision) == (TASK3, Decision.CLOSE)
    assert isinstance(close_c, CloseCertificate) and close_c.recoup is True and close_c.at == at
    assert t.state.stage == IcrStage.CLOSED


def test_close_decision_while_notification_open_closes_it_too() -> None:
    at = N1_RETURN + timedelta(days=1)
    t = decide(resent(), "close", now=at)
    close_t, close_n, close_c = t.effects
    assert isinstance(close_t, CloseTask) and close_t.task_id == TASK1
    assert close_n == CloseNotification(case_reference=CASE, notification_id=ID2,
                                        status=NotificationStatus.CERTIFICATE_CLOSED, at=at)
    assert isinstance(close_c, CloseCertificate) and close_c.recoup is True
    assert t.state.notification is None
    assert t.state.stage == IcrStage.CLOSED


def test_keep_open_restarts_the_clock_from_the_decision() -> None:
    at = N3_RETURN + timedelta(days=2)
    t = decide(escalated(), "keep_open", now=at)
    assert t.effects == [CloseTask(case_reference=CASE, task_id=TASK3, decision=Decision.KEEP_OPEN,
                                   decided_by=CASEWORKER, reason="checked", at=at)]
    assert t.state.clock_from == at
    assert t.state.notification_cycle == 0
    assert t.state.task is None
    assert t.state.follow_up is None
    assert t.state.stage == IcrStage.ACTIVE
    assert rules.next_step(t.state, at) == Wait(datetime(2028, 3, 20, 10, 0, tzinfo=UTC))


@pytest.mark.parametrize("response", BILLED)
def test_keep_open_on_billed_review_sets_follow_up_at_end_of_financial_year(response: Response) -> None:
    t = decide(reviewed(response, RESPONDED), "keep_open")
    assert t.state.follow_up == FollowUpWatch(response=response, due_at=FY_END_2027, since=RESPONDED)
    assert t.state.follow_up.due_at.astimezone(UTC) == datetime(2027, 3, 31, 23, 0, tzinfo=UTC)
    assert t.state.clock_from == DECIDED
    assert t.state.stage == IcrStage.ACTIVE
    assert rules.next_step(t.state, DECIDED) == Wait(FY_END_2027)


def test_follow_up_is_counted_from_the_response_not_the_decision() -> None:
    responded = datetime(2027, 3, 20, 10, 0, tzinfo=UTC)
    decided = datetime(2027, 4, 5, 10, 0, tzinfo=UTC)
    s = decide(reviewed(Response.COMPLETE_COSTS_NEGOTIATED, responded), "keep_open", now=decided).state
    assert s.follow_up is not None
    assert s.follow_up.due_at.astimezone(UTC) == datetime(2027, 3, 31, 23, 0, tzinfo=UTC)
    t = step(s, decided)  # already past: the follow-up task goes at once
    (task,) = t.effects
    assert isinstance(task, RaiseTask) and task.task_kind == TaskKind.FOLLOW_UP and task.at == decided


def test_follow_up_task_is_raised_exactly_at_due_at_when_no_bill_arrives() -> None:
    s = decide(reviewed(Response.COMPLETE_COURT_ASSESSMENT, RESPONDED), "keep_open").state
    assert rules.next_step(s, FY_END_2027 - SEC) == Wait(FY_END_2027)
    t = step(s, FY_END_2027)
    (task,) = t.effects
    assert isinstance(task, RaiseTask)
    assert dump(task, "detail") == {
        "kind": "raise_task",
        "case_reference": CASE,
        "task_id": TASK2,
        "task_kind": TaskKind.FOLLOW_UP,
        "notification_id": None,
        "response": Response.COMPLETE_COURT_ASSESSMENT,
        "at": FY_END_2027,
    }
    assert t.state.follow_up is None
    assert t.state.task is not None and t.state.task.blocking is True
    assert t.state.stage == IcrStage.LAA_REVIEW


def test_bill_before_the_end_of_the_financial_year_prevents_the_follow_up() -> None:
    s = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "keep_open").state
    bill_at = datetime(2027, 2, 14, 11, 0, tzinfo=UTC)
    s = rules.apply_events(s, [event("EV-BILL", "bill", bill_at)], bill_at).state
    assert s.follow_up is None
    assert rules.next_step(s, FY_END_2027) == Wait(datetime(2028, 10, 14, 11, 0, tzinfo=UTC))


def test_keep_open_on_follow_up_task_sets_no_new_follow_up() -> None:
    s = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "keep_open").state
    s = step(s, FY_END_2027).state
    at = datetime(2027, 4, 10, 9, 0, tzinfo=UTC)
    t = decide(s, "keep_open", now=at)
    assert t.state.follow_up is None
    assert t.state.clock_from == at
    assert t.state.stage == IcrStage.ACTIVE


def test_refused_decision_is_audited_and_changes_nothing_else() -> None:
    s = notified()
    request = LaaDecisionRequest(caseworker=CASEWORKER, decision="close")
    error = refused(rules.check_decision, s, request)
    t = rules.refuse_decision(s, request, error, DECIDED)
    assert t.effects == [AuditRefusal(case_reference=CASE, refusal_key="300001416143-decision-1-refused",
                                      actor=CASEWORKER, action="decision_refused", reason=error.message,
                                      detail={"decision": "close"}, at=DECIDED)]
    assert t.state.model_copy(update={"history": s.history, "refusals": s.refusals}) == s
    again = rules.refuse_decision(t.state, request, error, DECIDED + SEC)
    assert again.effects[0].refusal_key == "300001416143-decision-2-refused"


# --- apply_close -----------------------------------------------------------------------


def test_close_certificate_closes_notification_and_task_without_recoupment() -> None:
    t = close(resent())
    assert t.effects == [
        CloseNotification(case_reference=CASE, notification_id=ID2,
                          status=NotificationStatus.CERTIFICATE_CLOSED, at=CLOSED_AT),
        CloseTask(case_reference=CASE, task_id=TASK1, decision=None, decided_by="engine",
                  reason="certificate closed: discharged", at=CLOSED_AT),
        CloseCertificate(case_reference=CASE, recoupment_id=RCP, recoup=False,
                         reason="closed elsewhere: discharged", actor="close_certificate (no system named)", at=CLOSED_AT),
    ]
    assert t.state.notification is None and t.state.task is None
    assert t.state.closed_at == CLOSED_AT
    assert t.state.closed_reason == "closed elsewhere: discharged"
    assert t.state.stage == IcrStage.CLOSED


def test_close_active_certificate_only_closes_it() -> None:
    t = close(state())
    assert t.effects == [CloseCertificate(case_reference=CASE, recoupment_id=RCP, recoup=False,
                                          reason="closed elsewhere: discharged", actor="close_certificate (no system named)",
                                          at=CLOSED_AT)]
    assert t.state.stage == IcrStage.CLOSED


def test_close_clears_a_follow_up_watch() -> None:
    s = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "keep_open").state
    assert s.follow_up is not None
    assert close(s, now=DECIDED + timedelta(days=1)).state.follow_up is None


def test_close_on_closed_state_changes_nothing() -> None:
    s = close(notified()).state
    t = close(s, reason="again", now=CLOSED_AT + timedelta(days=1))
    assert t.effects == []
    assert t.state == s


# --- reassign --------------------------------------------------------------------------


def test_apply_reassign_updates_contact_for_later_notifications() -> None:
    t = rules.apply_reassign(state(), REASSIGN, REASSIGNED_AT)
    assert t.effects == [UpdateContact(case_reference=CASE, new_contact_login_id="NEW1", actor="XO1",
                                       at=REASSIGNED_AT)]
    assert t.state.registration is not None
    assert t.state.registration.provider_contact_login == "NEW1"
    assert t.state.registration.provider_firm_id == FIRM
    raised = step(t.state, DUE_608).effects[0]
    assert isinstance(raised, RaiseNotification) and raised.assigned_to == "NEW1"


# --- registration missing --------------------------------------------------------------


def test_unregistered_certificate_waits_until_its_deadline() -> None:
    assert rules.next_step(state(reg=None), DUE_608 - SEC) == Wait(DUE_608)


def test_unregistered_certificate_due_raises_registration_missing_task() -> None:
    t = step(state(reg=None), DUE_608)
    (task,) = t.effects
    assert isinstance(task, RaiseTask)
    assert dump(task, "detail") == {
        "kind": "raise_task",
        "case_reference": CASE,
        "task_id": TASK1,
        "task_kind": TaskKind.REGISTRATION_MISSING,
        "notification_id": None,
        "response": None,
        "at": DUE_608,
    }
    assert t.state.notification is None
    assert t.state.notifications_raised == 0
    assert t.state.stage == IcrStage.LAA_REVIEW
    assert rules.status_of(t.state).open_task == TaskView(task_id=TASK1, kind=TaskKind.REGISTRATION_MISSING)


# --- exercise responses ----------------------------------------------------------------


def exercise(response: Response) -> ExerciseResponse:
    return ExerciseResponse(case_reference=CASE, response=response, reported_on=date(2024, 1, 22))


def _exercise_effects(response: Response) -> list[object]:
    key = "300001416143-exercise"
    return [
        ClaimExerciseResponse(case_reference=CASE, claim_key=key, at=DUE_608),
        RecordResponse(case_reference=CASE, response_key=key, notification_id=None, response=response,
                       message=None, responded_by=EXERCISE_ACTOR, at=DUE_608),
    ]


def test_load_keeps_the_exercise_response_until_due() -> None:
    s = state(exercise_response=exercise(Response.CASE_ONGOING))
    assert s.exercise_response == exercise(Response.CASE_ONGOING)
    assert s.on_exercise_list is False
    assert rules.next_step(s, DUE_608 - SEC) == Wait(DUE_608)


def test_exercise_case_ongoing_applied_when_due_restarts_the_clock() -> None:
    t = step(state(exercise_response=exercise(Response.CASE_ONGOING)), DUE_608)
    assert t.effects == _exercise_effects(Response.CASE_ONGOING)
    assert EXERCISE_ACTOR == "LAA (exercise)"
    s = t.state
    assert s.on_exercise_list is True
    assert s.exercise_response is None
    assert s.notification is None and s.notifications_raised == 0
    assert s.clock_from == DUE_608
    assert s.last_activity_at == DUE_608
    assert s.stage == IcrStage.ACTIVE


@pytest.mark.parametrize("response", BILLED)
def test_exercise_billed_response_applied_when_due_raises_review_task(response: Response) -> None:
    t = step(state(exercise_response=exercise(response)), DUE_608)
    claim, record, task = t.effects
    assert [claim, record] == _exercise_effects(response)
    assert isinstance(task, RaiseTask)
    assert (task.task_id, task.task_kind, task.response, task.notification_id, task.at) == (
        TASK1, TaskKind.REVIEW, response, None, DUE_608)
    assert t.state.on_exercise_list is True
    assert t.state.notification is None
    assert t.state.stage == IcrStage.LAA_REVIEW


def test_exercise_no_bill_due_applied_when_due_closes_with_recoupment() -> None:
    t = step(state(exercise_response=exercise(Response.COMPLETE_NO_BILL_DUE)), DUE_608)
    assert t.effects == _exercise_effects(Response.COMPLETE_NO_BILL_DUE) + [
        CloseCertificate(case_reference=CASE, recoupment_id=RCP, recoup=True, reason="Case Complete No Bill Due",
                         actor=EXERCISE_ACTOR, at=DUE_608)
    ]
    assert t.state.on_exercise_list is True
    assert t.state.stage == IcrStage.CLOSED


def test_exercise_response_is_used_once_and_the_certificate_is_never_resent() -> None:
    ex = exercise(Response.CASE_ONGOING)
    s = step(state(exercise_response=ex), DUE_608).state
    # The registry still lists it: reloading must not re-arm it.
    s = rules.load(s, snapshot(exercise_response=ex), DUE_608 + SEC).state
    assert s.exercise_response is None
    again = DUE_608 + timedelta(days=608)  # 2028-01-15T10:00Z
    assert rules.next_step(s, DUE_608 + SEC) == Wait(datetime(2028, 1, 15, 10, 0, tzinfo=UTC))
    t = step(s, again)
    (raised,) = t.effects
    assert isinstance(raised, RaiseNotification)
    assert (raised.notification_id, raised.cycle, raised.assigned_to) == (ID1, 1, CONTACT)
    returned = step(t.state, again + timedelta(days=21))
    assert [type(e) for e in returned.effects] == [CloseNotification, RaiseTask]
    assert returned.effects[1].task_kind == TaskKind.NO_RESPONSE
    assert returned.state.task is not None and returned.state.task.blocking is True
    assert returned.state.notification is None
    assert returned.state.stage == IcrStage.LAA_REVIEW


# --- an exercise response imported while a notification is open ------------------------

REPORTED = date(2024, 1, 31)
REPORTED_FROM = datetime(2024, 1, 31, 0, 0, tzinfo=UTC)  # 00:00 GMT on the day reported
FY_END_2024 = datetime(2024, 3, 31, 23, 0, tzinfo=UTC)  # 00:00 BST on 1 April 2024
EXERCISE_KEY = "300001416143-exercise"


def with_exercise(s: CertificateState, response: Response, at: datetime) -> CertificateState:
    """The exercise list is imported at `at`: the workflow reloads the registry."""
    ex = ExerciseResponse(case_reference=CASE, response=response, reported_on=REPORTED)
    t = rules.load(s, snapshot(exercise_response=ex), at)
    assert t.effects == []
    return t.state


def test_exercise_imported_mid_notice_answers_the_open_notification_at_once() -> None:
    at = N1 + timedelta(days=2)
    t = step(with_exercise(notified(), Response.CASE_ONGOING, at), at)
    assert t.effects == [
        ClaimExerciseResponse(case_reference=CASE, claim_key=EXERCISE_KEY, at=at),
        RecordResponse(case_reference=CASE, response_key=EXERCISE_KEY, notification_id=ID1,
                       response=Response.CASE_ONGOING, message=None, responded_by=EXERCISE_ACTOR, at=at),
    ]
    s = t.state
    assert s.notification is None and s.on_exercise_list and s.exercise_response is None
    assert s.clock_from == at and s.notification_cycle == 0 and s.stage == IcrStage.ACTIVE
    # Never chased: nothing more until the next deadline.
    assert rules.next_step(s, at) == Wait(at + timedelta(days=608))


def test_exercise_imported_at_the_return_date_answers_instead_of_a_return() -> None:
    # Both fall at the same moment: the report predates the return, the provider is not chased.
    t = step(with_exercise(overdue(), Response.COMPLETE_TO_BE_BILLED, N1_RETURN), N1_RETURN)
    assert [type(e) for e in t.effects] == [ClaimExerciseResponse, RecordResponse, RaiseTask]
    assert t.effects[1].notification_id == ID1  # type: ignore[union-attr]
    task = t.effects[2]
    assert isinstance(task, RaiseTask) and (task.task_kind, task.notification_id) == (TaskKind.REVIEW, ID1)
    assert t.state.notifications_raised == 1 and t.state.stage == IcrStage.LAA_REVIEW


def test_exercise_imported_after_a_resend_answers_it_and_supersedes_the_no_response_task() -> None:
    at = N1_RETURN + timedelta(days=1)
    t = step(with_exercise(resent(), Response.COMPLETE_NO_BILL_DUE, at), at)
    claim, record, superseded, closed = t.effects
    assert isinstance(record, RecordResponse) and record.notification_id == ID2
    assert superseded == CloseTask(case_reference=CASE, task_id=TASK1, decision=None, decided_by="engine",
                                   reason="superseded: exercise response applied", at=at)
    assert closed == CloseCertificate(case_reference=CASE, recoupment_id=RCP, recoup=True,
                                      reason="Case Complete No Bill Due", actor=EXERCISE_ACTOR, at=at)
    assert t.state.stage == IcrStage.CLOSED


def test_exercise_imported_while_a_task_blocks_waits_until_due() -> None:
    s = with_exercise(escalated(), Response.CASE_ONGOING, N3_RETURN + SEC)
    assert rules.next_step(s, N3_RETURN + SEC) == Wait(None)
    assert s.exercise_response is not None and not s.on_exercise_list


# --- stale events close nothing ---------------------------------------------------------


def test_stale_event_moves_the_deadline_but_closes_nothing() -> None:
    now = N1 + timedelta(days=2)
    stale_at = now - timedelta(days=608)  # its own deadline is exactly now: already passed
    t = rules.apply_events(notified(), [event("EV-LATE", "amendment", stale_at)], now)
    assert t.effects == []
    assert t.state.notification is not None and t.state.notification.notification_id == ID1
    assert t.state.notification_cycle == 1
    assert t.state.clock_from == stale_at and t.state.last_activity_at == stale_at
    assert rules.inactivity_deadline(t.state) == now
    assert t.state.stage == IcrStage.AWAITING_RESPONSE


def test_event_one_second_short_of_stale_closes_the_notification() -> None:
    now = N1 + timedelta(days=2)
    fresh_at = now - timedelta(days=608) + SEC
    t = rules.apply_events(notified(), [event("EV-JUST", "amendment", fresh_at)], now)
    assert t.effects == [CloseNotification(case_reference=CASE, notification_id=ID1,
                                           status=NotificationStatus.ACTIVITY_RECORDED, at=now)]
    assert t.state.notification_cycle == 0


def test_stale_events_never_put_off_the_escalation() -> None:
    s = resent()  # cycle 2, TASK1 (no response) open
    for i, now in enumerate([N2_DUE - SEC, N2_RETURN - SEC]):
        late = now - timedelta(days=608)  # newer than any before it, its own deadline already passed
        s = rules.apply_events(s, [event(f"EV-{i}", "bill", late)], now).state
        assert s.clock_from == late
        assert s.notification_cycle == 2 and s.task is not None and s.task.task_id == TASK1
    s = step(step(s, N2_DUE).state, N2_RETURN).state
    s = step(step(s, N3_DUE).state, N3_RETURN).state
    assert s.task is not None and s.task.kind == TaskKind.ESCALATION and s.stage == IcrStage.ESCALATED


def test_registry_reporting_stale_newer_activity_closes_nothing() -> None:
    now = N1 + timedelta(days=2)
    stale_at = now - timedelta(days=608)  # newer than LAST, yet its own deadline is now
    t = rules.load(notified(), snapshot(last_activity_at=stale_at), now)
    assert t.effects == [] and t.state.notification is not None and t.state.clock_from == stale_at


# --- a bill between the response and the decision ---------------------------------------


@pytest.mark.parametrize("when", [RESPONDED + SEC, DECIDED - SEC], ids=["just-after-response", "just-before-decision"])
def test_bill_before_the_decision_spares_the_follow_up(when: datetime) -> None:
    s = reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED)
    s = rules.apply_events(s, [event("EV-BILL", "bill", when)], when).state
    t = decide(s, "keep_open")
    assert t.state.follow_up is None
    assert rules.next_step(t.state, FY_END_2027) == Wait(DECIDED + timedelta(days=608))


@pytest.mark.parametrize("when", [RESPONDED, RESPONDED - timedelta(days=30)], ids=["at-response", "before"])
def test_bill_not_after_the_response_does_not_count(when: datetime) -> None:
    s = reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED)
    s = rules.apply_events(s, [event("EV-BILL", "bill", when)], RESPONDED + SEC).state
    s = decide(s, "keep_open").state
    assert s.follow_up == FollowUpWatch(response=Response.COMPLETE_TO_BE_BILLED, due_at=FY_END_2027,
                                        since=RESPONDED)
    # reported after the decision, still dated before the response: no bill since the response
    late = rules.apply_events(s, [event("EV-OLD-BILL", "bill", RESPONDED - SEC)], DECIDED + SEC).state
    assert late.follow_up is not None


# --- a late registration carries on the review -----------------------------------------


def test_registration_closes_the_registration_missing_task_and_the_review_carries_on() -> None:
    s = step(state(reg=None), DUE_608).state
    assert s.task is not None and s.task.kind == TaskKind.REGISTRATION_MISSING
    at = DUE_608 + timedelta(days=3)
    t = rules.load(s, snapshot(reg=registration(contact="NEWCONTACT")), at)
    assert t.effects == [CloseTask(case_reference=CASE, task_id=TASK1, decision=None, decided_by="engine",
                                   reason="registered", at=at)]
    assert t.state.task is None and t.state.stage == IcrStage.ACTIVE
    (raised,) = step(t.state, at).effects  # due: notified at once, to the imported contact
    assert isinstance(raised, RaiseNotification)
    assert (raised.notification_id, raised.assigned_to, raised.date_assigned) == (ID1, "NEWCONTACT", at)


def test_registration_before_the_deadline_raises_no_task() -> None:
    s = state(reg=None)
    t = rules.load(s, snapshot(), DUE_608 - SEC)
    assert t.effects == [] and rules.next_step(t.state, DUE_608 - SEC) == Wait(DUE_608)


def test_registration_leaves_another_task_alone() -> None:
    s = step(state(reg=None), DUE_608).state
    assert s.task is not None
    s.task = s.task.model_copy(update={"kind": TaskKind.ESCALATION})
    t = rules.load(s, snapshot(), DUE_608 + SEC)
    assert t.effects == [] and t.state.task == s.task


# --- closed while unregistered stays closed --------------------------------------------


def test_a_review_restarted_for_a_certificate_closed_unregistered_closes_at_once() -> None:
    # The registry reports it closed: no task is raised, whatever events come.
    s = rules.load(rules.initial_state(CASE), snapshot(reg=None, closed=True, last_activity_at=None), NOW).state
    s = rules.apply_events(s, [event("EV-LATE", "application", NOW - timedelta(days=700))], NOW).state
    assert s.stage == IcrStage.CLOSED and rules.next_step(s, NOW) == Wait(None)
    assert s.tasks_raised == 0 and s.task is None


# --- stale decisions ---------------------------------------------------------------------


def test_refused_stale_decision_is_audited_with_the_task_it_named() -> None:
    s = step(step(resent(), N2_DUE).state, N2_RETURN).state  # TASK2 open
    request = LaaDecisionRequest(caseworker=CASEWORKER, decision="close", task_id=TASK1)
    error = refused(rules.apply_decision, s, request, N2_RETURN + SEC)
    t = rules.refuse_decision(s, request, error, N2_RETURN + SEC)
    (audit,) = t.effects
    assert isinstance(audit, AuditRefusal) and audit.detail == {"decision": "close", "task_id": TASK1}
    assert t.state.task == s.task and t.state.closed_at is None


# --- the exercise follow-up year ----------------------------------------------------------


def exercise_reviewed(*bills: datetime) -> CertificateState:
    """On the exercise list with "to be billed" reported on 31 January 2024; applied when due."""
    ex = ExerciseResponse(case_reference=CASE, response=Response.COMPLETE_TO_BE_BILLED, reported_on=REPORTED)
    s = state(exercise_response=ex)
    s = rules.apply_events(s, [event(f"EV-B{i}", "bill", at) for i, at in enumerate(bills)], LOADED_AT).state
    return step(s, DUE_608).state


def test_exercise_review_counts_from_the_day_reported() -> None:
    s = exercise_reviewed()
    assert s.task is not None and s.task.responded_at == REPORTED_FROM


def test_exercise_kept_open_with_no_bill_since_the_report_is_followed_up_at_once() -> None:
    t = decide(exercise_reviewed(), "keep_open")
    assert t.state.follow_up == FollowUpWatch(response=Response.COMPLETE_TO_BE_BILLED, due_at=FY_END_2024,
                                              since=REPORTED_FROM)
    (task,) = step(t.state, DECIDED).effects
    assert isinstance(task, RaiseTask) and (task.task_kind, task.task_id, task.at) == (
        TaskKind.FOLLOW_UP, TASK2, DECIDED)


@pytest.mark.parametrize("bill_at", [REPORTED_FROM, REPORTED_FROM - timedelta(days=10)], ids=["at-report", "before"])
def test_exercise_bill_not_after_the_report_does_not_count(bill_at: datetime) -> None:
    s = decide(exercise_reviewed(bill_at), "keep_open").state
    assert s.follow_up is not None and s.follow_up.due_at == FY_END_2024


@pytest.mark.parametrize("bill_at", [REPORTED_FROM + SEC, datetime(2024, 6, 1, tzinfo=UTC)], ids=["just-after", "later"])
def test_exercise_bill_after_the_report_spares_the_follow_up(bill_at: datetime) -> None:
    s = decide(exercise_reviewed(bill_at), "keep_open").state
    assert s.follow_up is None


# --- one open task at a time ---------------------------------------------------------------


def kept_open_then_shortened() -> CertificateState:
    """Kept open on 1 December 2026 (follow-up due 1 April 2027); a 100-day policy then makes
    the certificate due on 11 March 2027: notification ID2 open over 1 April."""
    s = decide(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED), "keep_open").state
    short = POLICY_608.model_copy(update={"version": 3, "inactivity_days": 100})
    s = rules.load(s, snapshot(policy=short), DECIDED + SEC).state
    (raised,) = step(s, DECIDED + timedelta(days=100)).effects
    assert isinstance(raised, RaiseNotification) and raised.notification_id == ID2
    return step(s, DECIDED + timedelta(days=100)).state


def test_follow_up_due_while_a_notification_is_open_waits() -> None:
    s = kept_open_then_shortened()
    assert s.notification is not None
    n = step(s, s.notification.due_date).state  # overdue
    assert rules.next_step(n, FY_END_2027) == Wait(s.notification.return_date)
    assert n.task is None and n.follow_up is not None


def test_follow_up_waiting_on_a_notification_is_raised_once_it_is_answered() -> None:
    s = kept_open_then_shortened()
    t = rules.apply_response(s, RespondRequest(user_login_id=CONTACT, response="case_ongoing"), FY_END_2027 + SEC)
    assert t.state.task is None
    (task,) = step(t.state, FY_END_2027 + SEC).effects
    assert isinstance(task, RaiseTask) and task.task_kind == TaskKind.FOLLOW_UP


def test_follow_up_waiting_on_an_escalation_is_raised_after_the_decision() -> None:
    s = escalated().model_copy(update={"follow_up": FollowUpWatch(
        response=Response.COMPLETE_TO_BE_BILLED, due_at=N3_RETURN - timedelta(days=1), since=N1)})
    assert rules.next_step(s, N3_RETURN + SEC) == Wait(None)  # the escalation is open: it waits
    s = decide(s, "keep_open", now=N3_RETURN + timedelta(days=1)).state
    (task,) = step(s, N3_RETURN + timedelta(days=1)).effects
    assert isinstance(task, RaiseTask) and (task.task_kind, task.task_id) == (TaskKind.FOLLOW_UP, "TASK-300001416143-004")


def test_a_new_billed_review_replaces_a_waiting_follow_up() -> None:
    s = kept_open_then_shortened()
    answered = FY_END_2027 + SEC
    s = rules.apply_response(s, RespondRequest(user_login_id=CONTACT, response="complete_costs_negotiated"),
                             answered).state
    assert s.task is not None and s.task.kind == TaskKind.REVIEW
    s = rules.apply_events(s, [event("EV-BILL", "bill", answered + SEC)], answered + SEC).state
    s = decide(s, "keep_open", now=answered + timedelta(days=1)).state
    assert s.follow_up is None
    assert isinstance(rules.next_step(s, answered + timedelta(days=1)), Wait)


def test_raising_a_task_closes_the_open_one_first_with_its_reason() -> None:
    # A blocking task alongside an open notification (as an older engine could leave it): the
    # return never overwrites it unseen.
    s = overdue().model_copy(update={"task": OpenTask(task_id="TASK-300001416143-009", kind=TaskKind.FOLLOW_UP,
                                              raised_at=N1, response=Response.COMPLETE_TO_BE_BILLED),
                             "tasks_raised": 9})
    t = step(s, N1_RETURN)
    closed_n, superseded, raised, resend = t.effects
    assert isinstance(closed_n, CloseNotification)
    assert superseded == CloseTask(case_reference=CASE, task_id="TASK-300001416143-009", decision=None,
                                   decided_by="engine", reason="superseded by TASK-300001416143-010 (no_response)",
                                   at=N1_RETURN)
    assert isinstance(raised, RaiseTask) and raised.task_id == "TASK-300001416143-010"
    assert isinstance(resend, RaiseNotification)

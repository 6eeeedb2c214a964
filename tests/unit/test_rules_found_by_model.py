"""What the rules' state-machine model (tests/unit/test_rules_model.py) found, kept as regular
tests: each shrunk sequence replayed through the model, and the rule it broke pinned with
literal instants (tests/rules_builders.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from icr.domain import rules
from icr.domain.models import (
    CloseNotification,
    CloseTask,
    IcrStage,
    NotificationStatus,
    Policy,
    RaiseNotification,
    RaiseTask,
    Response,
    TaskKind,
)
from icr.domain.rules import Wait
from tests.rules_builders import (
    CASE,
    DECIDED,
    ID1,
    ID2,
    N1,
    N1_RETURN,
    RESPONDED,
    TASK1,
    TASK2,
    decide,
    event,
    notified,
    reviewed,
    snapshot,
    step,
)
from tests.unit.test_rules_model import CertificateLife

DAY = timedelta(days=1)
# Versions added while notification ID1 (raised at N1, 17 May 2026) is open.
POLICY_730 = Policy(version=3, inactivity_days=730, effective_from=datetime(2026, 5, 20, tzinfo=UTC))
POLICY_608_ONE_CYCLE = Policy(version=4, inactivity_days=608, max_unanswered_cycles=1,
                              effective_from=datetime(2026, 6, 10, tzinfo=UTC))
DUE_730 = datetime(2026, 9, 16, 10, 0, tzinfo=UTC)  # LAST (16 Sep 2024 10:00) + 730 days


def replay(*steps: tuple[str, dict[str, Any]]) -> CertificateLife:
    """A sequence the model shrank to, step by step, every invariant checked after each."""
    life = CertificateLife()
    for name, arguments in steps:
        getattr(life, name)(**arguments)
        life.at_most_one_open_notification_and_task()
        life.a_closed_certificate_never_changes()
        life.the_deadline_is_the_last_activity_plus_the_policy_in_force()
        life.nothing_due_is_left_waiting()
    return life


START = {"start_days": 365, "start_seconds": 0, "registered": True, "granted_days": 2000, "active_days": 608,
         "poa": ("0.00", "0.00")}  # 1 June 2026, due at once: ICR-...-001 raised


# --- a returned notification is resent only if the certificate is still due ----------------


def test_model_a_lengthened_policy_is_not_resent_at_the_return() -> None:
    life = replay(("start", START),
                  ("policy_set", {"days": 730, "response_days": 14, "return_days": 21, "cycles": 3,
                                  "effective": timedelta(0)}),
                  ("time_passes", {"amount": 21 * DAY, "at_until": True}))
    assert life.state.notification is None and life.state.notification_cycle == 1


def test_a_notification_returned_when_no_longer_due_is_not_resent_until_it_falls_due() -> None:
    s = rules.load(notified(), snapshot(policy=POLICY_730), N1 + DAY).state
    assert s.notification is not None and s.notification.notification_id == ID1  # not withdrawn

    t = step(s, N1_RETURN)
    assert [type(e) for e in t.effects] == [CloseNotification, RaiseTask]
    closed, task = t.effects
    assert isinstance(closed, CloseNotification) and closed.status == NotificationStatus.NO_RESPONSE
    assert isinstance(task, RaiseTask) and task.task_kind == TaskKind.NO_RESPONSE
    assert t.state.notification is None and t.state.stage == IcrStage.ACTIVE
    assert t.state.notification_cycle == 1  # only activity or an answer restarts the review
    assert rules.next_step(t.state, N1_RETURN) == Wait(DUE_730)

    again = step(t.state, DUE_730)
    (raised,) = again.effects
    assert isinstance(raised, RaiseNotification)
    assert (raised.notification_id, raised.cycle, raised.date_assigned) == (ID2, 2, DUE_730)


# --- never a notification past the limit of unanswered cycles --------------------------------


def test_model_falling_due_again_past_the_cycle_limit_escalates() -> None:
    life = replay(("start", START),
                  ("policy_set", {"days": 730, "response_days": 14, "return_days": 21, "cycles": 3,
                                  "effective": timedelta(0)}),
                  ("time_passes", {"amount": 21 * DAY, "at_until": True}),
                  ("policy_set", {"days": 608, "response_days": 14, "return_days": 21, "cycles": 1,
                                  "effective": timedelta(0)}))
    assert life.state.task is not None and life.state.task.kind == TaskKind.ESCALATION


def test_falling_due_again_with_the_unanswered_cycles_at_the_limit_raises_the_escalation() -> None:
    returned = step(rules.load(notified(), snapshot(policy=POLICY_730), N1 + DAY).state, N1_RETURN).state
    at = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)
    s = rules.load(returned, snapshot(policy=POLICY_608_ONE_CYCLE), at).state  # due again at once, limit 1

    t = step(s, at)
    assert t.effects == [
        CloseTask(case_reference=CASE, task_id=TASK1, decision=None, decided_by="engine",
                  reason=f"superseded by {TASK2} (escalation)", at=at),
        RaiseTask(case_reference=CASE, task_id=TASK2, task_kind=TaskKind.ESCALATION,
                  detail="1 consecutive notifications unanswered: contract manager intervention", at=at),
    ]
    assert t.state.notification is None and t.state.stage == IcrStage.ESCALATED


# --- a keep-open decision never moves the clock back ------------------------------------------


def test_model_keep_open_after_an_event_dated_minutes_ahead() -> None:
    life = replay(("start", START),
                  ("provider_answers", {"login": "CONTACT1", "response": Response.COMPLETE_TO_BE_BILLED}),
                  ("activity_reported", {"events": [("new", "amendment", timedelta(minutes=4))]}),
                  ("caseworker_decides_the_open_task", {"decision": "keep_open", "which": "open"}))
    assert life.state.task is None


def test_keep_open_keeps_a_clock_an_event_dated_minutes_ahead_has_moved() -> None:
    ahead = DECIDED + timedelta(minutes=4)  # accepted: within the 5 minutes allowed
    s = rules.apply_events(reviewed(Response.COMPLETE_TO_BE_BILLED, RESPONDED),
                           [event("EV-AHEAD", "amendment", ahead)], DECIDED).state
    assert s.clock_from == ahead and s.task is not None  # the review task stays

    t = decide(s, "keep_open", now=DECIDED)
    assert t.state.clock_from == ahead
    assert rules.inactivity_deadline(t.state) == datetime(2028, 7, 31, 9, 4, tzinfo=UTC)  # ahead + 608 days

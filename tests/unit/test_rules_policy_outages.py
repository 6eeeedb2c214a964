"""Unit tests of policy changes, declared outages and the forecast in the rules
(icr/domain/rules/dates.py, checks.py, transitions.py, forecast.py).

No clock, no I/O: builders and fixed instants are in tests/rules_builders.py; expected
instants are written out literally.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from icr.domain import rules
from icr.domain.models import (
    CertificateState,
    ExtendNotification,
    MarkNotificationOverdue,
    OpenCertificate,
    Outage,
    OutageDeclaration,
    Policy,
    PolicyChange,
    RaiseNotification,
)
from icr.domain.rules import Refused, Transition, Wait
from tests.rules_builders import (
    CASE,
    DUE_365,
    DUE_608,
    ID1,
    LOADED_AT,
    N1,
    N1_DUE,
    N1_RETURN,
    POLICY_365,
    POLICY_608,
    SEC,
    notified,
    snapshot,
    state,
    step,
)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def outage(outage_id: int, starts_at: datetime, ends_at: datetime, reason: str = "CCMS down") -> Outage:
    return Outage(outage_id=outage_id, starts_at=starts_at, ends_at=ends_at, reason=reason)


def reload(s: CertificateState, now: datetime, outages: list[Outage], **fields: object) -> Transition:
    """The registry read again (the `outages_changed` / `policy_changed` signal)."""
    return rules.load(s, snapshot(**fields).model_copy(update={"outages": outages}), now)


# --- policy_wake_at: a version dated in the future is taken up spread over an hour -----------


def test_policy_wake_is_fixed_per_certificate_and_within_the_hour() -> None:
    change = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    wake = rules.policy_wake_at(CASE, change)
    assert wake == rules.policy_wake_at(CASE, change)  # the same on every replay
    assert change <= wake < change + HOUR
    assert rules.POLICY_SPREAD == HOUR


def test_policy_wakes_of_many_certificates_are_spread_over_the_hour() -> None:
    change = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    offsets = [rules.policy_wake_at(f"3000{i:08d}", change) - change for i in range(2000)]
    assert all(timedelta(0) <= o < HOUR for o in offsets)
    per_quarter = [sum(1 for o in offsets if q * 15 * 60 <= o.total_seconds() < (q + 1) * 15 * 60)
                   for q in range(4)]
    assert all(400 <= n <= 600 for n in per_quarter), per_quarter  # about 500 in each quarter hour
    assert max(offsets.count(o) for o in offsets) < 10  # no instant where many wake at once


def test_a_version_to_come_holds_falling_due_until_the_certificate_takes_it_up() -> None:
    # 365 days in force, 608 from just before the certificate falls due under 365: it must not
    # be notified under the version going out while it waits for its moment to reload.
    change = DUE_365 - 60 * SEC
    s = state(policy=POLICY_365, next_policy_change_at=change)
    wake = rules.policy_wake_at(CASE, change)
    assert wake > DUE_365  # this case reference's moment is after its 365-day deadline
    assert rules.next_step(s, change - SEC) == Wait(DUE_365)
    assert rules.next_step(s, DUE_365) == Wait(wake)  # not a notification
    assert rules.next_step(s, wake) == rules.Reload()
    after = rules.load(s, snapshot(policy=POLICY_608), wake).state
    assert rules.next_step(after, wake) == Wait(DUE_608)


def test_before_a_version_takes_effect_the_certificate_falls_due_as_usual() -> None:
    change = DUE_365 + 30 * DAY
    s = state(policy=POLICY_365, next_policy_change_at=change)
    t = step(s, DUE_365)
    assert [type(e) for e in t.effects] == [RaiseNotification]


# --- check_policy_change: every refusal ------------------------------------------------------

NOW = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


def change(**fields: object) -> PolicyChange:
    values: dict[str, object] = dict(inactivity_days=365, response_due=14 * DAY, return_after=21 * DAY,
                                     max_unanswered_cycles=3, effective_from=NOW, reason="back to 12 months",
                                     actor="ops.lead")
    values.update(fields)
    return PolicyChange.model_validate(values)


def test_a_complete_policy_change_is_accepted() -> None:
    rules.check_policy_change(change(), NOW)
    rules.check_policy_change(change(effective_from=NOW - DAY), NOW)  # a day back is the limit
    rules.check_policy_change(change(effective_from=NOW + 90 * DAY), NOW)


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"inactivity_days": 0}, "not_positive", "inactivity days must be more than 0 (got 0)"),
        ({"inactivity_days": -365}, "not_positive", "inactivity days must be more than 0"),
        ({"response_due": timedelta(0)}, "not_positive", "response days must be more than 0"),
        ({"response_due": -DAY}, "not_positive", "response days must be more than 0"),
        ({"return_after": timedelta(0)}, "not_positive", "return days must be more than 0"),
        ({"max_unanswered_cycles": 0}, "not_positive", "maximum unanswered cycles must be more than 0"),
        ({"return_after": 14 * DAY}, "return_not_after_due",
         "the return (14 days) must come after the due date (14 days)"),
        ({"return_after": 10 * DAY}, "return_not_after_due", "must come after the due date"),
        ({"effective_from": NOW - DAY - SEC}, "effective_too_early", "more than a day in the past"),
        ({"effective_from": datetime(2026, 9, 1, 9, 0)}, "naive_time", "timezone"),
        ({"reason": ""}, "missing_reason", "a reason is required"),
        ({"reason": "   "}, "missing_reason", "a reason is required"),
        ({"actor": ""}, "missing_actor", "who is making the change is required"),
    ],
)
def test_a_policy_change_is_refused(fields: dict[str, object], code: str, words: str) -> None:
    with pytest.raises(Refused) as refused:
        rules.check_policy_change(change(**fields), NOW)
    assert refused.value.code == code
    assert words in refused.value.message


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"ends_at": NOW}, "outage_not_after_start", "must end after it starts"),
        ({"ends_at": NOW - HOUR}, "outage_not_after_start", "must end after it starts"),
        ({"starts_at": datetime(2026, 9, 1, 9, 0)}, "naive_time", "--from must carry a timezone"),
        ({"reason": " "}, "missing_reason", "a reason is required"),
        ({"actor": ""}, "missing_actor", "is required"),
    ],
)
def test_an_outage_declaration_is_refused(fields: dict[str, object], code: str, words: str) -> None:
    values: dict[str, object] = dict(starts_at=NOW, ends_at=NOW + 2 * DAY, reason="CCMS down", actor="ops")
    values.update(fields)
    with pytest.raises(Refused) as refused:
        rules.check_outage(OutageDeclaration.model_validate(values))
    assert (refused.value.code, words in refused.value.message) == (code, True)


# --- extended_deadline: a response period counts only time CCMS was up -----------------------

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)  # 09:00 BST on 1 June 2026


def test_an_outage_inside_the_period_moves_the_deadline_by_its_length() -> None:
    # The rules page's example: 48 hours from 00:00 on 5 June to 00:00 on 7 June (UK time).
    o = outage(1, datetime(2026, 6, 4, 23, 0, tzinfo=UTC), datetime(2026, 6, 6, 23, 0, tzinfo=UTC))
    assert rules.extended_deadline(T0, 14 * DAY, [o]) == (
        datetime(2026, 6, 17, 8, 0, tzinfo=UTC), {1: 2 * DAY})
    assert rules.extended_deadline(T0, 21 * DAY, [o]) == (
        datetime(2026, 6, 24, 8, 0, tzinfo=UTC), {1: 2 * DAY})


def test_outages_outside_the_period_move_nothing() -> None:
    before = outage(1, T0 - 3 * DAY, T0 - DAY)
    after = outage(2, T0 + 14 * DAY, T0 + 16 * DAY)  # starts exactly at the deadline
    assert rules.extended_deadline(T0, 14 * DAY, [before, after]) == (T0 + 14 * DAY, {})


def test_an_outage_across_the_deadline_moves_it_past_the_outage() -> None:
    # Up 13 days, down 5 (across the original deadline), then 1 more day: never due mid-outage.
    o = outage(1, T0 + 13 * DAY, T0 + 18 * DAY)
    assert rules.extended_deadline(T0, 14 * DAY, [o]) == (T0 + 19 * DAY, {1: 5 * DAY})


def test_an_outage_reached_only_once_the_deadline_moved_counts_too() -> None:
    first = outage(1, T0 + 5 * DAY, T0 + 7 * DAY)
    second = outage(2, T0 + 15 * DAY, T0 + 17 * DAY)  # after the 14-day deadline, before the moved one
    assert rules.extended_deadline(T0, 14 * DAY, [second, first]) == (
        T0 + 18 * DAY, {1: 2 * DAY, 2: 2 * DAY})


def test_overlapping_outages_count_their_shared_time_once() -> None:
    a = outage(1, T0 + 5 * DAY, T0 + 10 * DAY)
    b = outage(2, T0 + 8 * DAY, T0 + 12 * DAY)
    inside = outage(3, T0 + 6 * DAY, T0 + 7 * DAY)
    assert rules.extended_deadline(T0, 14 * DAY, [a, b, inside]) == (
        T0 + 21 * DAY, {1: 5 * DAY, 2: 2 * DAY})


def test_an_outage_going_on_when_the_period_starts_counts_from_the_start() -> None:
    o = outage(1, T0 - 2 * DAY, T0 + HOUR)
    assert rules.extended_deadline(T0, 14 * DAY, [o]) == (T0 + 14 * DAY + HOUR, {1: HOUR})


def test_outage_end_takes_overlapping_outages_together() -> None:
    a = outage(1, T0, T0 + 2 * DAY)
    b = outage(2, T0 + DAY, T0 + 3 * DAY)
    assert rules.outage_end(T0 - SEC, [a, b]) is None
    assert rules.outage_end(T0, [a, b]) == T0 + 3 * DAY
    assert rules.outage_end(T0 + 3 * DAY, [a, b]) is None  # over at its end


# --- outages in a certificate's review -------------------------------------------------------

DAY_10 = N1 + 10 * DAY  # an outage across day 10 of the first notification's response window


def test_a_declared_outage_across_day_10_moves_the_due_date_and_return_by_its_length() -> None:
    s = notified()
    o = outage(7, DAY_10 - 6 * HOUR, DAY_10 + 30 * HOUR, reason="CCMS outage June 2026")
    declared_at = DAY_10 + 2 * DAY
    t = reload(s, declared_at, [o])
    n = t.state.notification
    assert n is not None
    assert (n.due_date, n.return_date) == (datetime(2026, 6, 1, 22, 0, tzinfo=UTC),
                                           datetime(2026, 6, 8, 22, 0, tzinfo=UTC))
    assert (n.due_date - N1_DUE, n.return_date - N1_RETURN) == (36 * HOUR, 36 * HOUR)
    assert t.effects == [ExtendNotification(
        case_reference=CASE, notification_id=ID1, due_date=n.due_date, return_date=n.return_date,
        overdue=False, extensions=n.extensions, at=declared_at)]
    (ext,) = n.extensions
    assert (ext.outage_id, ext.reason, ext.due_date_by, ext.return_date_by) == (
        7, "CCMS outage June 2026", 36 * HOUR, 36 * HOUR)
    # The status shows it, the search attribute moves, and the rest of the review follows.
    view = rules.status_of(t.state).open_notification
    assert view is not None and view.extensions == [ext] and view.due_date == n.due_date
    assert rules.search_attributes(t.state)["ResponseDueDate"] == n.due_date
    assert rules.next_step(t.state, N1_DUE) == Wait(n.due_date)
    assert [type(e) for e in step(t.state, n.due_date).effects] == [MarkNotificationOverdue]
    # Read again with the same outages: nothing moves twice.
    assert reload(t.state, declared_at + HOUR, [o]).effects == []


def test_an_outage_declared_after_the_due_date_takes_back_the_overdue() -> None:
    s = step(notified(), N1_DUE).state
    assert s.notification is not None and s.notification.overdue
    o = outage(1, DAY_10, DAY_10 + 2 * DAY)
    t = reload(s, N1_DUE + HOUR, [o])
    n = t.state.notification
    assert n is not None and not n.overdue and n.due_date == N1_DUE + 2 * DAY
    assert t.state.stage == "AwaitingResponse"
    (effect,) = t.effects
    assert isinstance(effect, ExtendNotification) and not effect.overdue


def test_an_outage_declared_after_the_return_moves_nothing() -> None:
    s = notified()
    o = outage(1, DAY_10, DAY_10 + 2 * DAY)
    t = reload(s, N1_RETURN, [o])
    assert t.effects == [] and t.state.notification == s.notification


def test_a_notification_raised_with_an_outage_to_come_is_raised_with_moved_dates() -> None:
    o = outage(3, N1 + 2 * DAY, N1 + 3 * DAY)
    s = reload(state(), LOADED_AT, [o]).state
    t = step(s, N1)
    raised, extended = t.effects
    assert isinstance(raised, RaiseNotification) and isinstance(extended, ExtendNotification)
    assert (raised.due_date, raised.return_date) == (N1_DUE + DAY, N1_RETURN + DAY)
    assert raised.due_date == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    assert "1 June 2026" in raised.letter  # the letter states the moved due date
    assert [e.outage_id for e in extended.extensions] == [3]


def test_a_certificate_falling_due_during_an_outage_is_notified_when_it_ends() -> None:
    o = outage(1, DUE_608 - DAY, DUE_608 + 2 * DAY)
    s = reload(state(), LOADED_AT, [o]).state
    assert rules.next_step(s, DUE_608) == Wait(DUE_608 + 2 * DAY)
    assert rules.next_step(s, DUE_608 + 2 * DAY - SEC) == Wait(DUE_608 + 2 * DAY)
    t = step(s, DUE_608 + 2 * DAY)
    (raised,) = t.effects  # the outage is over: no extension of its dates
    assert isinstance(raised, RaiseNotification) and raised.date_assigned == DUE_608 + 2 * DAY
    assert raised.due_date == DUE_608 + 16 * DAY


def test_a_new_outage_is_noted_in_the_history() -> None:
    o = outage(4, DAY_10, DAY_10 + DAY, reason="planned upgrade")
    s = reload(notified(), N1 + DAY, [o]).state
    whats = [h.what for h in s.history]
    assert any("outage 4 declared" in w and "planned upgrade" in w for w in whats), whats


# --- forecast ---------------------------------------------------------------------------------

F_NOW = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


def certificate(ref: str, clock_from: datetime, in_review: bool = False) -> OpenCertificate:
    return OpenCertificate(case_reference=ref, clock_from=clock_from, registered=True, in_review=in_review)


def test_policy_at_and_spans() -> None:
    later = Policy(version=3, inactivity_days=365, effective_from=F_NOW + 10 * DAY)
    versions = [POLICY_365, POLICY_608, later]
    assert rules.policy_at(versions, F_NOW) == POLICY_608
    spans = rules.policy_spans(versions, F_NOW)
    assert [(s.policy.version, s.starts_at, s.ends_at) for s in spans] == [
        (2, F_NOW, F_NOW + 10 * DAY), (3, F_NOW + 10 * DAY, None)]


def test_falls_due_under_the_version_in_force_at_that_moment() -> None:
    later = Policy(version=3, inactivity_days=365, effective_from=F_NOW + 10 * DAY)
    spans = rules.policy_spans([POLICY_365, POLICY_608, later], F_NOW)
    # 600 days inactive: due under 608 in 8 days, before 365 takes effect.
    assert rules.falls_due_at(F_NOW - 600 * DAY, spans, []) == F_NOW + 8 * DAY
    # 400 days inactive: due under 365 the moment it takes effect.
    assert rules.falls_due_at(F_NOW - 400 * DAY, spans, []) == F_NOW + 10 * DAY
    # 100 days inactive: due 365 days after its clock.
    assert rules.falls_due_at(F_NOW - 100 * DAY, spans, []) == F_NOW + 265 * DAY
    # 700 days inactive: already due under 608.
    assert rules.falls_due_at(F_NOW - 700 * DAY, spans, []) == F_NOW - 92 * DAY


def test_falling_due_during_an_outage_is_forecast_at_its_end() -> None:
    spans = rules.policy_spans([POLICY_608], F_NOW)
    o = outage(1, F_NOW + 5 * DAY, F_NOW + 9 * DAY)
    assert rules.falls_due_at(F_NOW - 600 * DAY, spans, [o]) == F_NOW + 9 * DAY
    now_down = outage(2, F_NOW - DAY, F_NOW + DAY)
    assert rules.falls_due_at(F_NOW - 700 * DAY, spans, [now_down]) == F_NOW + DAY


def test_forecast_counts_at_once_each_week_and_later_with_the_earliest_first() -> None:
    certs = [
        certificate("300000000001", F_NOW - 608 * DAY - 30 * DAY),  # due a month ago
        certificate("300000000002", F_NOW - 608 * DAY - 2 * DAY),  # due 2 days ago
        certificate("300000000003", F_NOW - 608 * DAY + HOUR),  # week 1
        certificate("300000000004", F_NOW - 608 * DAY + 7 * DAY),  # week 2: exactly 7 days on
        certificate("300000000005", F_NOW - 608 * DAY + 20 * DAY),  # week 3
        certificate("300000000006", F_NOW - 10 * DAY),  # later
        certificate("300000000007", F_NOW - 700 * DAY, in_review=True),  # a notification open
    ]
    f = rules.forecast(certs, [POLICY_365, POLICY_608], [], F_NOW, weeks=4, examples=1)
    assert [(b.label, b.count) for b in f.buckets] == [
        ("at once", 2), ("week 1", 1), ("week 2", 1), ("week 3", 1), ("week 4", 0), ("later", 1)]
    assert f.at_once.examples == [("300000000001", F_NOW - 30 * DAY)]  # the longest inactive
    assert (f.open_certificates, f.in_review) == (7, 1)
    assert "300000000007" not in f.due_at
    assert f.due_at["300000000006"] == F_NOW + 598 * DAY


def test_forecast_of_a_shortened_policy() -> None:
    certs = [certificate(f"3000000001{i:02d}", F_NOW - (400 + i) * DAY) for i in range(5)]
    certs.append(certificate("300000000200", F_NOW - 360 * DAY))  # due in 5 days under 365
    shortened = Policy(version=3, inactivity_days=365, effective_from=F_NOW)
    now = rules.forecast(certs, [POLICY_365, POLICY_608], [], F_NOW, weeks=12)
    after = rules.forecast(certs, [POLICY_365, POLICY_608, shortened], [], F_NOW, weeks=12)
    assert (now.at_once.count, now.buckets[-1].count) == (0, 6)
    assert (after.at_once.count, after.buckets[1].count) == (5, 1)
    assert [ref for ref, _ in after.at_once.examples] == ["300000000104", "300000000103", "300000000102"]

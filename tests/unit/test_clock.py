"""The workflow's guard against a stale clock (workflows/clock.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflows.clock import STALE_CLOCK, StaleClockError, TaskClock

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(microseconds=1)


def test_the_first_reading_is_taken_as_it_is() -> None:
    assert TaskClock().read(T0, 3, replaying=False) == T0


def test_readings_within_one_task_may_repeat_the_time() -> None:
    clock = TaskClock()
    for _ in range(3):
        assert clock.read(T0, 3, replaying=False) == T0


def test_a_later_task_reads_a_later_time() -> None:
    clock = TaskClock()
    clock.read(T0, 3, replaying=False)
    assert clock.read(LATER, 8, replaying=False) == LATER


@pytest.mark.parametrize("at", [T0, T0 - timedelta(seconds=1)], ids=["same time", "earlier time"])
def test_a_new_point_in_the_history_at_no_later_time_is_refused(at: datetime) -> None:
    clock = TaskClock()
    clock.read(T0, 3, replaying=False)
    with pytest.raises(StaleClockError, match=STALE_CLOCK):
        clock.read(at, 7, replaying=False)


def test_a_refused_reading_leaves_the_last_good_one_in_place() -> None:
    clock = TaskClock()
    clock.read(T0, 3, replaying=False)
    with pytest.raises(StaleClockError):
        clock.read(T0, 7, replaying=False)
    with pytest.raises(StaleClockError):
        clock.read(T0, 9, replaying=False)
    assert clock.read(LATER, 9, replaying=False) == LATER


def test_a_replay_is_never_refused_and_a_live_task_after_it_is_checked_against_it() -> None:
    # Replayed times come from the history's own task-started events.
    clock = TaskClock()
    clock.read(T0, 3, replaying=True)
    assert clock.read(T0, 7, replaying=True) == T0
    with pytest.raises(StaleClockError):
        clock.read(T0, 12, replaying=False)
    assert clock.read(LATER, 12, replaying=False) == LATER


def test_a_later_time_read_at_an_unchanged_length_still_counts() -> None:
    """Replaying a local activity resolved in a later workflow task, the SDK (temporalio 1.35)
    reports that task's time with the earlier task's history length; a stale run at that time
    (a new history length, not replaying) is refused (found by tests/e2e/test_stale_clock.py)."""
    clock = TaskClock()
    clock.read(T0, 3, replaying=True)
    clock.read(LATER, 3, replaying=True)
    with pytest.raises(StaleClockError, match=STALE_CLOCK):
        clock.read(LATER, 9, replaying=False)
    assert clock.read(LATER + timedelta(seconds=1), 9, replaying=False) == LATER + timedelta(seconds=1)

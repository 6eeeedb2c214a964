"""Unit tests of time in the rules: UK dates, exact deadlines, the financial year (icr/domain/rules/dates.py).

No clock, no I/O: builders and fixed instants are in tests/rules_builders.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from icr.domain import rules
from icr.domain.rules import Transition
from tests.rules_builders import (
    UK,
    registration,
    state,
)

# --- start_of_day_uk: a grant date starts at UK midnight; periods are exact ------------


@pytest.mark.parametrize(
    ("granted_on", "midnight_utc"),
    [
        (date(2023, 2, 10), datetime(2023, 2, 10, 0, 0, tzinfo=UTC)),  # GMT
        (date(2024, 6, 1), datetime(2024, 5, 31, 23, 0, tzinfo=UTC)),  # BST
    ],
)
def test_load_without_activity_starts_clock_at_uk_midnight_of_grant_date(
    granted_on: date, midnight_utc: datetime
) -> None:
    s = state(reg=registration(granted_on=granted_on), last_activity_at=None)
    assert s.last_activity_at is None
    assert s.clock_from is not None
    assert s.clock_from.astimezone(UTC) == midnight_utc
    assert s.clock_from.astimezone(UK).replace(tzinfo=None) == datetime.combine(granted_on, datetime.min.time())


def test_deadline_from_summer_grant_date_is_exactly_608_days_of_24_hours() -> None:
    # Spec: "every period is an exact duration from the moment it starts". Granted on
    # 1 June 2024 (BST): the clock starts 2024-05-31T23:00Z, so the deadline is
    # 2026-01-29T23:00Z (608 x 24 h later), not UK wall-clock midnight 2026-01-30 (GMT).
    s = state(reg=registration(granted_on=date(2024, 6, 1)), last_activity_at=None)
    exact = datetime(2026, 1, 29, 23, 0, tzinfo=UTC)
    deadline = rules.inactivity_deadline(s)
    assert deadline is not None
    assert deadline.astimezone(UTC) == exact
    assert isinstance(rules.next_step(s, exact), Transition)


# --- financial_year_end_after ----------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 11, 23, 15, 0, tzinfo=UTC), datetime(2027, 4, 1, 0, 0, tzinfo=UK)),
        (datetime(2027, 3, 31, 23, 30, tzinfo=UK), datetime(2027, 4, 1, 0, 0, tzinfo=UK)),
        (datetime(2027, 4, 1, 0, 30, tzinfo=UK), datetime(2028, 4, 1, 0, 0, tzinfo=UK)),
        # BST: 22:30 UTC on 31 March 2026 is 23:30 UK, still 31 March
        (datetime(2026, 3, 31, 22, 30, tzinfo=UTC), datetime(2026, 4, 1, 0, 0, tzinfo=UK)),
        # BST: 23:30 UTC on 31 March 2026 is 00:30 UK on 1 April, the next financial year
        (datetime(2026, 3, 31, 23, 30, tzinfo=UTC), datetime(2027, 4, 1, 0, 0, tzinfo=UK)),
        (datetime(2027, 1, 15, 9, 0, tzinfo=UTC), datetime(2027, 4, 1, 0, 0, tzinfo=UK)),
        (datetime(2026, 4, 1, 0, 0, tzinfo=UK), datetime(2027, 4, 1, 0, 0, tzinfo=UK)),
    ],
)
def test_financial_year_end_after(at: datetime, expected: datetime) -> None:
    result = rules.financial_year_end_after(at)
    assert result.astimezone(UTC) == expected.astimezone(UTC)
    assert result.astimezone(UK).replace(tzinfo=None) == expected.replace(tzinfo=None)

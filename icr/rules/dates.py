"""Time in the rules: UK dates, the inactivity deadline and the financial year.

Every period is an exact duration from the moment it starts; dates shown to people (a due
date, the 31 March boundary) are in UK time (Europe/London).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from icr.models import CertificateState

UK = ZoneInfo("Europe/London")


def start_of_day_uk(day: date) -> datetime:
    """A day on its own (a grant date) starts at midnight UK time."""
    # In UTC: adding days to a Europe/London time would count wall-clock days, an hour off
    # across a clock change; every period here is an exact duration.
    return datetime.combine(day, time(0), tzinfo=UK).astimezone(timezone.utc)


def inactivity_deadline(state: CertificateState) -> datetime | None:
    """A certificate falls due when it has had no qualifying activity for the policy's inactivity period."""
    if state.clock_from is None or state.policy is None:
        return None
    return state.clock_from + timedelta(days=state.policy.inactivity_days)


def financial_year_end_after(at: datetime) -> datetime:
    """The financial year ends at the end of 31 March, UK time: the first 1 April midnight after `at`."""
    local = at.astimezone(UK)
    year = local.year if (local.month, local.day) <= (3, 31) else local.year + 1
    return datetime(year, 4, 1, tzinfo=UK).astimezone(timezone.utc)

"""Time in the rules: UK dates, the inactivity deadline, the financial year, declared
outages and when a certificate takes up a policy version dated in the future.

Every period is an exact duration from the moment it starts; dates shown to people (a due
date, the 31 March boundary) are in UK time (Europe/London).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from icr.domain.models import CertificateState, Outage, OutageExtension

UK = ZoneInfo("Europe/London")


def start_of_day_uk(day: date) -> datetime:
    """A day on its own (a grant date) starts at midnight UK time."""
    # In UTC: adding days to a Europe/London time would count wall-clock days, an hour off
    # across a clock change; every period here is an exact duration.
    return datetime.combine(day, time(0), tzinfo=UK).astimezone(UTC)


def inactivity_deadline(state: CertificateState) -> datetime | None:
    """A certificate falls due when it has had no qualifying activity for the policy's inactivity period."""
    if state.clock_from is None or state.policy is None:
        return None
    return state.clock_from + timedelta(days=state.policy.inactivity_days)


def financial_year_end_after(at: datetime) -> datetime:
    """The financial year ends at the end of 31 March, UK time: the first 1 April midnight after `at`."""
    local = at.astimezone(UK)
    year = local.year if (local.month, local.day) <= (3, 31) else local.year + 1
    return datetime(year, 4, 1, tzinfo=UK).astimezone(UTC)


# A policy version dated in the future is taken up by each certificate at its own moment in
# this window after the version's date, so that 200,000 certificates do not all wake (and
# read the registry) at the same instant. The cost: a certificate may apply the new version
# up to this long after its date (a shortened policy may notify it up to an hour late).
POLICY_SPREAD = timedelta(hours=1)


def policy_wake_at(case_reference: str, change_at: datetime) -> datetime:
    """A certificate takes up a new policy version at a fixed offset after its date, the same
    on every replay and every run: a hash of its case reference within POLICY_SPREAD."""
    digest = hashlib.sha256(case_reference.encode()).digest()
    offset = int.from_bytes(digest[:8], "big") % int(POLICY_SPREAD.total_seconds())
    return change_at + timedelta(seconds=offset)


def _merged(outages: list[Outage]) -> list[tuple[datetime, datetime]]:
    """The declared windows, overlapping or touching ones merged, in time order."""
    merged: list[tuple[datetime, datetime]] = []
    for o in sorted(outages, key=lambda o: (o.starts_at, o.ends_at)):
        if merged and o.starts_at <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], o.ends_at))
        else:
            merged.append((o.starts_at, o.ends_at))
    return merged


def outage_end(at: datetime, outages: list[Outage]) -> datetime | None:
    """When the outage going on at `at` ends (overlapping outages taken together), or None."""
    for starts_at, ends_at in _merged(outages):
        if starts_at <= at < ends_at:
            return ends_at
    return None


def extended_deadline(start: datetime, period: timedelta,
                      outages: list[Outage]) -> tuple[datetime, dict[int, timedelta]]:
    """A response period counts only the time CCMS was up: the deadline `start + period` moves
    by the length of every declared outage it overlaps, including one it reaches only once
    moved, so it never falls inside an outage. Returns the deadline and how far each outage
    moved it (by outage id; overlapping outages share the time, each counted once)."""
    deadline = start + period
    by: dict[int, timedelta] = {}
    counted_until = start  # time before this is already accounted for
    for o in sorted(outages, key=lambda o: (o.starts_at, o.ends_at, o.outage_id)):
        if o.starts_at >= deadline:
            break  # sorted by start: no later outage can reach the deadline either
        begin = max(o.starts_at, counted_until)
        if o.ends_at <= begin:
            continue
        extra = o.ends_at - begin
        deadline += extra
        by[o.outage_id] = by.get(o.outage_id, timedelta(0)) + extra
        counted_until = o.ends_at
    return deadline, by


def outage_extensions(outages: list[Outage], due_by: dict[int, timedelta],
                      return_by: dict[int, timedelta]) -> list[OutageExtension]:
    """One entry per outage that moved the due date or the return date, in time order."""
    return [
        OutageExtension(outage_id=o.outage_id, reason=o.reason, starts_at=o.starts_at, ends_at=o.ends_at,
                        due_date_by=due_by.get(o.outage_id, timedelta(0)),
                        return_date_by=return_by.get(o.outage_id, timedelta(0)))
        for o in sorted(outages, key=lambda o: (o.starts_at, o.outage_id))
        if o.outage_id in due_by or o.outage_id in return_by
    ]

"""When open certificates fall due: under the policy versions in force and to come, and the
declared outages. What the `forecast` command and a policy change's dry run print.

The certificate's own rules (`next_step`) decide when it actually falls due; this module
works out the same moment from the registry's view of it, for thousands at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from icr.domain.models import OpenCertificate, Outage, Policy
from icr.domain.rules.dates import outage_end

WEEK = timedelta(days=7)


def policy_at(versions: list[Policy], at: datetime) -> Policy | None:
    """The version in force at `at`: the latest `effective_from` at or before it, then the
    highest version number."""
    in_force = [p for p in versions if p.effective_from <= at]
    return max(in_force, key=lambda p: (p.effective_from, p.version), default=None)


@dataclass(frozen=True)
class PolicySpan:
    """One policy version in force from `starts_at` until `ends_at` (None: no end known)."""

    policy: Policy
    starts_at: datetime
    ends_at: datetime | None


def policy_spans(versions: list[Policy], now: datetime) -> list[PolicySpan]:
    """The versions in force from `now` on, one span per change, in time order."""
    current = policy_at(versions, now)
    if current is None:
        raise ValueError(f"no policy version is in force at {now.isoformat()}")
    changes = sorted({p.effective_from for p in versions if p.effective_from > now})
    spans: list[PolicySpan] = []
    starts_at, policy = now, current
    for change in changes:
        following = policy_at(versions, change)
        assert following is not None
        if following == policy:
            continue  # an older version dated later changes nothing
        spans.append(PolicySpan(policy, starts_at, change))
        starts_at, policy = change, following
    spans.append(PolicySpan(policy, starts_at, None))
    return spans


def falls_due_at(clock_from: datetime, spans: list[PolicySpan], outages: list[Outage]) -> datetime:
    """The first moment the certificate is inactive for N days under the version in force at
    that moment; a moment inside an outage moves to its end. Before the first span's start
    (now) means it is due at once."""
    due: datetime | None = None
    for i, span in enumerate(spans):
        deadline = clock_from + timedelta(days=span.policy.inactivity_days)
        candidate = deadline if i == 0 else max(deadline, span.starts_at)
        if span.ends_at is None or candidate < span.ends_at:
            due = candidate
            break
    assert due is not None  # the last span has no end
    now = spans[0].starts_at
    end = outage_end(max(due, now), outages)
    return due if end is None else end


@dataclass
class Bucket:
    """Certificates falling due in one period: how many, and the earliest few."""

    label: str
    starts_at: datetime | None
    ends_at: datetime | None
    count: int = 0
    examples: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass
class Forecast:
    at: datetime
    open_certificates: int
    in_review: int
    buckets: list[Bucket]  # at once, week 1 ... week N, later
    due_at: dict[str, datetime]  # every certificate not under review, by case reference

    @property
    def at_once(self) -> Bucket:
        return self.buckets[0]


def forecast(certificates: list[OpenCertificate], versions: list[Policy], outages: list[Outage],
             now: datetime, weeks: int, examples: int = 3) -> Forecast:
    """How many of these certificates fall due at once, in each of the next `weeks` weeks
    (week k runs from now + 7(k-1) days up to now + 7k days), and later, with the earliest `examples` of each, earliest first:
    a shortened policy notifies the longest-inactive first. Certificates under review (a
    notification or a task open) do not fall due and are only counted."""
    spans = policy_spans(versions, now)
    buckets = [Bucket("at once", None, now)]
    buckets += [Bucket(f"week {k}", now + (k - 1) * WEEK, now + k * WEEK) for k in range(1, weeks + 1)]
    buckets.append(Bucket("later", now + weeks * WEEK, None))
    due_at: dict[str, datetime] = {}
    for c in certificates:
        if not c.in_review:
            due_at[c.case_reference] = falls_due_at(c.clock_from, spans, outages)
    for ref, due in sorted(due_at.items(), key=lambda item: (item[1], item[0])):
        if due <= now:
            bucket = buckets[0]
        else:
            bucket = buckets[min(int((due - now) / WEEK) + 1, weeks + 1)]
        bucket.count += 1
        if len(bucket.examples) < examples:
            bucket.examples.append((ref, due))
    return Forecast(at=now, open_certificates=len(certificates),
                    in_review=sum(1 for c in certificates if c.in_review), buckets=buckets, due_at=due_at)

"""The operator's policy and outage tools, between the command line and the store: a policy
change worked out in full, forecasts from the registry and the ledger, and their text."""

from __future__ import annotations

from datetime import datetime, timedelta

from icr.adapters.db.store import Store
from icr.domain import rules
from icr.domain.models import OutageRecord, Policy, PolicyChange, PolicyRecord, RolloutRecord
from icr.domain.rules import UK, Forecast


def policy_change(versions: list[Policy], *, inactivity_days: int, effective_from: datetime, reason: str,
                  actor: str, response_days: int | None = None, return_days: int | None = None,
                  max_cycles: int | None = None) -> PolicyChange:
    """A new version with every period: those not given are kept from the version it follows
    (the one in force at its effective date)."""
    follows = rules.policy_at(versions, effective_from)
    assert follows is not None, "the migrations ship a version in force since 2000"
    return PolicyChange(
        inactivity_days=inactivity_days,
        response_due=follows.response_due if response_days is None else timedelta(days=response_days),
        return_after=follows.return_after if return_days is None else timedelta(days=return_days),
        max_unanswered_cycles=follows.max_unanswered_cycles if max_cycles is None else max_cycles,
        effective_from=effective_from, reason=reason, actor=actor)


def proposed_version(versions: list[Policy], change: PolicyChange) -> Policy:
    """The version `change` would add (not yet numbered in the store)."""
    return Policy(version=max(p.version for p in versions) + 1, inactivity_days=change.inactivity_days,
                  response_due=change.response_due, return_after=change.return_after,
                  max_unanswered_cycles=change.max_unanswered_cycles, effective_from=change.effective_from)


async def forecast(store: Store, now: datetime, weeks: int, examples: int = 3,
                   extra_version: Policy | None = None) -> Forecast:
    """When the open certificates fall due, from the registry and the ledger, under the policy
    versions in force and to come (and `extra_version`, for a dry run) and the declared outages."""
    versions: list[Policy] = list(await store.policy_versions())
    if extra_version is not None:
        versions.append(extra_version)
    outages = list(await store.outages())
    return rules.forecast(await store.open_certificates(), versions, list(outages), now, weeks, examples)


# --- text for people -------------------------------------------------------------------------


def uk(at: datetime) -> str:
    """A moment as people read it: UK time."""
    return at.astimezone(UK).strftime("%Y-%m-%d %H:%M %Z")


def period(value: timedelta) -> str:
    """14 days, 20 seconds (the demo's pace), or the exact duration when it is not a whole unit."""
    seconds = value.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds > 0 and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return str(value)


def describe_policy(p: Policy) -> str:
    return (f"version {p.version}: {p.inactivity_days} days without activity; response due after "
            f"{period(p.response_due)}, returned after {period(p.return_after)}; escalated after "
            f"{p.max_unanswered_cycles} unanswered cycle{'s' if p.max_unanswered_cycles != 1 else ''}")


def render_versions(versions: list[PolicyRecord], now: datetime) -> list[str]:
    in_force = rules.policy_at(list(versions), now)
    lines = [f"  {'version':>7}  {'inactivity':>10}  {'response':>9}  {'return':>9}  {'cycles':>6}  "
             f"{'in force from':<22}  {'by':<14}  why"]
    for p in versions:
        mark = "*" if in_force is not None and p.version == in_force.version else " "
        later = " (to come)" if p.effective_from > now else ""
        lines.append(f"{mark} {p.version:>7}  {p.inactivity_days:>5} days  {period(p.response_due):>9}  "
                     f"{period(p.return_after):>9}  {p.max_unanswered_cycles:>6}  "
                     f"{uk(p.effective_from) + later:<22}  {p.created_by:<14}  {p.note}")
    lines.append("* in force now")
    return lines


def render_outages(outages: list[OutageRecord], now: datetime) -> list[str]:
    if not outages:
        return ["no outages declared"]
    lines = [f"  {'id':>3}  {'from':<20}  {'to':<20}  {'length':<16}  {'declared by':<14}  why"]
    for o in outages:
        state = "going on" if o.starts_at <= now < o.ends_at else ("to come" if now < o.starts_at else "")
        lines.append(f"  {o.outage_id:>3}  {uk(o.starts_at):<20}  {uk(o.ends_at):<20}  "
                     f"{str(o.ends_at - o.starts_at):<16}  {o.declared_by:<14}  {o.reason}"
                     + (f"  [{state}]" if state else ""))
    return lines


def render_rollouts(rollouts: list[RolloutRecord]) -> list[str]:
    if not rollouts:
        return ["no roll-outs yet"]
    lines = [f"  {'id':>3}  {'of':<16}  {'status':<11}  {'reached':>15}  {'not running':>11}  "
             f"{'rate/s':>6}  {'started':<20}  {'by':<14}  why"]
    for r in rollouts:
        of = f"policy version {r.subject}" if r.kind == "policy" else f"outage {r.subject}"
        lines.append(f"  {r.rollout_id:>3}  {of:<16}  {r.status:<11}  {f'{r.done}/{r.total}':>15}  "
                     f"{r.not_running:>11}  {r.rate:>6g}  {uk(r.started_at):<20}  {r.started_by:<14}  {r.reason}")
    return lines


def render_forecast(columns: list[tuple[str, Forecast]]) -> list[str]:
    """One column of counts per forecast, with the earliest certificates of the last one."""
    first = columns[-1][1]
    lines = [f"open certificates: {first.open_certificates}, of which {first.in_review} under review "
             "(a notification or an LAA task open: not counted below)"]
    head = f"  {'falls due':<26}" + "".join(f"{name:>12}" for name, _ in columns) + "   earliest"
    lines.append(head)
    for i, bucket in enumerate(first.buckets):
        if bucket.label == "at once":
            label = "at once"
        elif bucket.ends_at is None:
            label = "later"
        else:
            label = f"{bucket.label} (to {bucket.ends_at.astimezone(UK):%d %b %Y})"
        counts = "".join(f"{f.buckets[i].count:>12}" for _, f in columns)
        shown = ", ".join(f"{ref} ({uk(due)})" for ref, due in bucket.examples)
        lines.append(f"  {label:<26}{counts}   {shown}")
    return lines

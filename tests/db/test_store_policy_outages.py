"""Database tests of policy changes, declared outages and roll-outs in the store, on real
PostgreSQL (a fresh database per test): what is written and audited, which certificates the
registry calls open and where their clocks run from, and roll-out bookkeeping.

Every instant is a fixed, timezone-aware datetime; expected values are written out literally.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import ActivityEnvironment

from activities.certificate_activities import CertificateActivities
from icr.adapters.db.store import Store
from icr.domain.models import (
    ActivityEvent,
    CloseCertificate,
    CloseTask,
    Decision,
    ExtendNotification,
    OpenCertificate,
    OutageDeclaration,
    OutageExtension,
    PolicyChange,
    RaiseNotification,
    RaiseTask,
    RecordActivityEvents,
    Registration,
    RolloutKind,
    TaskKind,
)

UTC = UTC
UK = ZoneInfo("Europe/London")
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FIRM = "26517"

A, B, C, D, E, F = (f"30000000000{i}" for i in range(1, 7))


async def register(store: Store, ref: str, last_activity_at: datetime | None,
                   granted_on: date = date(2020, 1, 6)) -> None:
    await store.upsert_certificate(ref, Registration(provider_firm_id=FIRM, office_code="2L847Q",
                                                     provider_contact_login="CW1", granted_on=granted_on),
                                   last_activity_at, Decimal("0"), Decimal("0"), "import", T0 - 30 * DAY)


async def ledger(store: Store, ref: str, event_id: str, occurred_at: datetime) -> None:
    await store.record_activity_events(RecordActivityEvents(
        case_reference=ref, events=[ActivityEvent(event_id=event_id, kind="bill", occurred_at=occurred_at)],
        received_at=T0 - DAY))


def raise_step(ref: str, at: datetime) -> RaiseNotification:
    return RaiseNotification(case_reference=ref, notification_id=f"ICR-{ref}-001", cycle=1, provider_firm_id=FIRM,
                             assigned_to="CW1", date_assigned=at, due_date=at + 14 * DAY,
                             return_date=at + 21 * DAY, subject="Inactive Case Please Review", letter="...")


async def audit_row(store: Store, key: str) -> dict:
    row = await store.pool.fetchrow("SELECT * FROM audit_log WHERE idempotency_key = $1", key)
    assert row is not None, f"no audit row {key}"
    return {**dict(row), "detail": json.loads(row["detail"])}


def change(**fields: object) -> PolicyChange:
    values: dict[str, object] = dict(inactivity_days=365, response_due=14 * DAY, return_after=21 * DAY,
                                     max_unanswered_cycles=3, effective_from=T0, reason="back to 12 months",
                                     actor="ops.lead")
    values.update(fields)
    return PolicyChange.model_validate(values)


# --- open certificates: the registry and the ledger -----------------------------------------


async def test_open_certificates_and_where_their_clocks_run_from(store: Store) -> None:
    await register(store, A, T0 - 400 * DAY)  # registry activity only
    await register(store, B, T0 - 400 * DAY)
    await ledger(store, B, "b1", T0 - 100 * DAY)  # a later ledger event wins
    await register(store, C, None, granted_on=date(2025, 7, 1))  # no activity: the grant date, UK midnight
    await ledger(store, D, "d1", T0 - 50 * DAY)  # known only from the ledger
    await register(store, E, T0 - 700 * DAY)
    await store.raise_task(RaiseTask(case_reference=E, task_id=f"TASK-{E}-001", task_kind=TaskKind.REVIEW,
                                     detail="review", at=T0 - 20 * DAY))
    await store.close_task(CloseTask(case_reference=E, task_id=f"TASK-{E}-001", decision=Decision.KEEP_OPEN,
                                     decided_by="CW", reason="ok", at=T0 - 10 * DAY))  # clock from the decision
    await register(store, F, T0 - 30 * DAY)
    await store.raise_notification(raise_step(F, T0 - DAY))  # under review
    closed, closed_unregistered = "300000000007", "300000000008"
    await register(store, closed, T0 - 30 * DAY)
    await store.close_certificate(CloseCertificate(case_reference=closed, recoupment_id=f"RCP-{closed}",
                                                   recoup=False, reason="discharged", actor="x", at=T0))
    await ledger(store, closed_unregistered, "u1", T0 - 30 * DAY)
    await store.close_certificate(CloseCertificate(
        case_reference=closed_unregistered, recoupment_id=f"RCP-{closed_unregistered}", recoup=False,
        reason="LAA decision", actor="CW", at=T0))

    found = await store.open_certificates()
    assert found == [  # oldest clock first
        OpenCertificate(case_reference=C, clock_from=datetime(2025, 6, 30, 23, 0, tzinfo=UTC), registered=True,
                        in_review=False),
        OpenCertificate(case_reference=A, clock_from=T0 - 400 * DAY, registered=True, in_review=False),
        OpenCertificate(case_reference=B, clock_from=T0 - 100 * DAY, registered=True, in_review=False),
        OpenCertificate(case_reference=D, clock_from=T0 - 50 * DAY, registered=False, in_review=False),
        OpenCertificate(case_reference=F, clock_from=T0 - 30 * DAY, registered=True, in_review=True),
        OpenCertificate(case_reference=E, clock_from=T0 - 10 * DAY, registered=True, in_review=False),
    ]


# --- policy versions --------------------------------------------------------------------------


async def test_change_policy_adds_the_version_and_its_rollout_together(store: Store) -> None:
    policy, rollout = await store.change_policy(change(response_due=10 * DAY, return_after=30 * DAY,
                                                       max_unanswered_cycles=2), 250.0, T0)
    assert (policy.version, policy.inactivity_days, policy.response_due, policy.return_after,
            policy.max_unanswered_cycles, policy.effective_from) == (3, 365, 10 * DAY, 30 * DAY, 2, T0)
    assert (rollout.rollout_id, rollout.kind, rollout.subject, rollout.started_by, rollout.reason,
            rollout.rate, rollout.status, rollout.started_at) == (
        1, RolloutKind.POLICY, 3, "ops.lead", "back to 12 months", 250.0, "running", T0)
    versions = await store.policy_versions()
    assert [(v.version, v.created_by, v.note) for v in versions] == [
        (1, "migration", "no activity for 12 months"),
        (2, "migration", "after the 2026 CCMS outage: 20 months from 17 May 2026"),
        (3, "ops.lead", "back to 12 months")]
    audit = await audit_row(store, "policy-3")
    assert (audit["actor"], audit["action"], audit["at"]) == ("ops.lead", "policy_changed", T0)
    assert audit["detail"]["response_due"] == "10 days, 0:00:00" and audit["detail"]["note"] == "back to 12 months"
    started = await audit_row(store, "rollout-1-started")
    assert (started["actor"], started["action"], started["detail"]) == (
        "ops.lead", "rollout_started",
        {"rollout_id": 1, "kind": "policy", "subject": 3, "rate": 250.0, "reason": "back to 12 months"})


async def test_a_new_policy_rollout_supersedes_unfinished_ones(store: Store) -> None:
    _, first = await store.change_policy(change(), 100, T0)
    _, outage_rollout = await store.declare_outage(
        OutageDeclaration(starts_at=T0, ends_at=T0 + DAY, reason="down", actor="ops"), 100, T0 + HOUR)
    await store.record_rollout_progress(first.rollout_id, T0 + HOUR, "interrupted", "ops")
    _, second = await store.change_policy(change(inactivity_days=400), 100, T0 + 2 * HOUR)
    statuses = {r.rollout_id: r.status for r in await store.rollouts()}
    assert statuses == {first.rollout_id: "superseded", outage_rollout.rollout_id: "superseded",
                        second.rollout_id: "running"}


# --- outages ----------------------------------------------------------------------------------


async def test_declare_outage_records_and_audits_it(store: Store) -> None:
    declaration = OutageDeclaration(starts_at=T0, ends_at=T0 + 2 * DAY, reason="CCMS down", actor="ops.lead")
    outage, rollout = await store.declare_outage(declaration, 50, T0 + 3 * DAY)
    assert (outage.outage_id, outage.starts_at, outage.ends_at, outage.declared_by, outage.declared_at) == (
        1, T0, T0 + 2 * DAY, "ops.lead", T0 + 3 * DAY)
    assert (rollout.kind, rollout.subject, rollout.rate) == (RolloutKind.OUTAGE, 1, 50)
    second, _ = await store.declare_outage(declaration, 50, T0 + 4 * DAY)
    assert second.outage_id == 2
    assert [o.outage_id for o in await store.outages()] == [1, 2]
    audit = await audit_row(store, "outage-1")
    assert (audit["actor"], audit["action"], audit["detail"]) == (
        "ops.lead", "outage_declared", {"outage_id": 1, "starts_at": T0.isoformat(),
                                        "ends_at": (T0 + 2 * DAY).isoformat(), "reason": "CCMS down"})


async def test_a_snapshot_carries_the_outages_that_can_still_matter(store: Store) -> None:
    async def declare(starts_at: datetime, ends_at: datetime) -> int:
        o, _ = await store.declare_outage(OutageDeclaration(starts_at=starts_at, ends_at=ends_at,
                                                            reason="r", actor="ops"), 10, T0)
        return o.outage_id

    old = await declare(T0 - 60 * DAY, T0 - 50 * DAY)
    during_notification = await declare(T0 - 5 * DAY, T0 - 4 * DAY)
    going_on = await declare(T0 - HOUR, T0 + HOUR)
    to_come = await declare(T0 + 10 * DAY, T0 + 11 * DAY)
    await register(store, A, T0 - 30 * DAY)
    await register(store, B, T0 - 30 * DAY)
    await store.raise_notification(raise_step(B, T0 - 10 * DAY))
    assert [o.outage_id for o in (await store.load_certificate(A, T0)).outages] == [going_on, to_come]
    assert [o.outage_id for o in (await store.load_certificate(B, T0)).outages] == [
        during_notification, going_on, to_come]
    assert old not in [o.outage_id for o in (await store.load_certificate(B, T0)).outages]


async def test_extend_notification_twice_extends_once(store: Store) -> None:
    acts = CertificateActivities(store)
    await register(store, A, T0 - 30 * DAY)
    await store.raise_notification(raise_step(A, T0))
    extension = OutageExtension(outage_id=1, reason="down", starts_at=T0 + DAY, ends_at=T0 + 3 * DAY,
                                due_date_by=2 * DAY, return_date_by=2 * DAY)
    step = ExtendNotification(case_reference=A, notification_id=f"ICR-{A}-001", due_date=T0 + 16 * DAY,
                              return_date=T0 + 23 * DAY, overdue=False, extensions=[extension], at=T0 + 4 * DAY)
    env = ActivityEnvironment()
    await env.run(acts.extend_notification, step)
    await env.run(acts.extend_notification, step)
    [n] = await store.notifications_of(A)
    assert (n.due_date, n.return_date, n.status) == (T0 + 16 * DAY, T0 + 23 * DAY, "Open")
    assert n.extensions == [extension.model_dump(mode="json")]
    rows = [a for a in await store.audit_of(A) if a.action == "notification_extended"]
    assert len(rows) == 1 and rows[0].actor == "engine"


# --- roll-outs ----------------------------------------------------------------------------------


async def test_rollout_targets_oldest_clock_first_and_each_once(store: Store) -> None:
    await register(store, A, T0 - 100 * DAY)
    await register(store, B, T0 - 500 * DAY)
    await ledger(store, C, "c1", T0 - 300 * DAY)
    _, rollout = await store.change_policy(change(), 100, T0)
    assert await store.add_rollout_targets(rollout) == 3
    assert await store.add_rollout_targets(rollout) == 0  # taken once
    assert await store.next_rollout_targets(rollout.rollout_id, 10) == [B, C, A]
    await store.mark_reached(rollout.rollout_id, B, True, T0 + HOUR)
    await store.mark_reached(rollout.rollout_id, C, False, T0 + HOUR)
    assert await store.next_rollout_targets(rollout.rollout_id, 10) == [A]
    await register(store, D, T0 - 900 * DAY)  # appeared while it ran
    assert await store.add_rollout_targets(rollout) == 1
    assert await store.next_rollout_targets(rollout.rollout_id, 10) == [D, A]
    record = await store.record_rollout_progress(rollout.rollout_id, T0 + 2 * HOUR, "interrupted", "ops.night")
    assert (record.total, record.done, record.not_running, record.status) == (4, 2, 1, "interrupted")
    audit = await audit_row(store, f"rollout-1-interrupted-{(T0 + 2 * HOUR).isoformat()}")
    assert (audit["actor"], audit["action"], audit["detail"]["done"], audit["detail"]["total"]) == (
        "ops.night", "rollout_interrupted", 2, 4)


async def test_an_outage_rollout_targets_the_certificates_it_can_affect(store: Store) -> None:
    await register(store, A, T0 - 30 * DAY)  # due in 335 days at the soonest: unaffected
    await register(store, B, T0 - 30 * DAY)
    await store.raise_notification(raise_step(B, T0 - DAY))  # its response window moves
    await register(store, C, T0 - 360 * DAY)  # may fall due (under 365 days) during the outage
    _, rollout = await store.declare_outage(
        OutageDeclaration(starts_at=T0 + 2 * DAY, ends_at=T0 + 9 * DAY, reason="upgrade", actor="ops"), 10, T0)
    assert await store.add_rollout_targets(rollout) == 2
    assert await store.next_rollout_targets(rollout.rollout_id, 10) == [C, B]


async def test_one_process_at_a_time_runs_a_rollout(store: Store) -> None:
    _, rollout = await store.change_policy(change(), 100, T0)
    async with store.rollout_lock(rollout.rollout_id) as first:
        async with store.rollout_lock(rollout.rollout_id) as second:
            assert (first, second) == (True, False)
    async with store.rollout_lock(rollout.rollout_id) as again:
        assert again


@pytest.mark.parametrize("status", ["finished", "running"])
async def test_rollout_progress_statuses_are_audited(store: Store, status: str) -> None:
    _, rollout = await store.change_policy(change(), 100, T0)
    record = await store.record_rollout_progress(rollout.rollout_id, T0 + HOUR, status, "ops")
    assert record.status == status
    assert (record.finished_at is not None) == (status == "finished")
    action = {"finished": "rollout_finished", "running": "rollout_resumed"}[status]
    assert (await audit_row(store, f"rollout-1-{status}-{(T0 + HOUR).isoformat()}"))["action"] == action

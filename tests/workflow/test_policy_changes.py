"""Changing the rules under running certificates, on the time-skipping server: policy versions
rolled out from the registry (now, and dated in the future), declared outages, the dry run,
the forecast against what the certificates report, an interrupted roll-out resumed, and
every refusal of the operator's commands (run in-process against this test's engine)."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

from icr.cli import common, policy
from icr.cli import operations as operations_cli
from icr.cli.main import build_parser
from icr.domain import rules
from icr.domain.models import (
    ActivityEvent,
    CertificateInput,
    OutageDeclaration,
    Policy,
    RolloutRecord,
)
from icr.runtime.engine import Runtime
from icr.runtime.servers import Services
from icr.runtime.settings import Settings
from icr.services import operations
from icr.services.rollout import RolloutProgress, TokenBucket, run_rollout
from tests.conftest import Engine, add_certificate, add_user
from tests.workflow_helpers import search_attributes, status
from workflows.certificate import CertificateWorkflow

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
SEC = timedelta(seconds=1)
FAST = 1000.0  # signals a second, for tests that are not about the rate


def ref(n: int, engine: Engine) -> str:
    """A case reference of this test's own (the engine's, with its last two digits replaced)."""
    return f"{engine.ref[:10]}{n:02d}"




async def signals(handle: WorkflowHandle, name: str) -> int:
    """How many `name` signals the certificate's workflow has received."""
    count = 0
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_signaled_event_attributes") \
                and event.workflow_execution_signaled_event_attributes.signal_name == name:
            count += 1
    return count


async def certificate(engine: Engine, n: int, inactive: timedelta) -> WorkflowHandle:
    """A registered certificate (contact CASEWORKER1) last active `inactive` ago, its review started."""
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, ref(n, engine), last_activity_at=now - inactive)
    return await engine.start(ref(n, engine))


async def new_version(engine: Engine, inactivity_days: int, effective_from: datetime | None = None,
                      rate: float = FAST) -> tuple[Policy, RolloutRecord]:
    """`policy set`, as the command does it: checked, added with its roll-out, not yet run."""
    now = await engine.now()
    change = operations.policy_change(list(await engine.store.policy_versions()), inactivity_days=inactivity_days,
                                      effective_from=effective_from or now, reason="test change", actor="ops.lead")
    rules.check_policy_change(change, now)
    return await engine.store.change_policy(change, rate, now)


async def roll_out(engine: Engine, rollout: RolloutRecord, **options: Any) -> RolloutRecord:
    finished = await run_rollout(engine.store, engine.certificates, rollout, actor="ops.lead", settle=0.2, **options)
    await engine.env.sleep(1)  # the certificates take in the signal
    return finished


async def declare_outage(engine: Engine, starts_at: datetime, ends_at: datetime) -> int:
    outage, rollout = await engine.store.declare_outage(
        OutageDeclaration(starts_at=starts_at, ends_at=ends_at, reason="CCMS outage", actor="ops.lead"),
        FAST, await engine.now())
    finished = await roll_out(engine, rollout)
    assert finished.status == "finished"
    return outage.outage_id


# --- policy versions ---------------------------------------------------------------------------


async def test_608_to_365_makes_a_400_day_certificate_due_at_once_and_moves_a_recent_one_earlier(
        engine: Engine) -> None:
    old = await certificate(engine, 1, 400 * DAY)
    recent = await certificate(engine, 2, 100 * DAY)
    await engine.env.sleep(1)
    before = await status(recent)
    assert (await status(old)).stage == "Active" and before.policy_version == 2
    assert before.last_activity_at is not None
    assert before.inactivity_deadline == before.last_activity_at + 608 * DAY

    policy, rollout = await new_version(engine, 365)
    finished = await roll_out(engine, rollout)
    assert (finished.status, finished.done, finished.total, finished.not_running) == ("finished", 2, 2, 0)

    s = await status(old)
    assert (s.stage, s.policy_version) == ("AwaitingResponse", policy.version)
    assert s.open_notification is not None
    after = await status(recent)
    assert after.stage == "Active" and after.policy_version == policy.version
    assert after.inactivity_deadline == before.last_activity_at + 365 * DAY  # 243 days earlier
    attrs = await search_attributes(engine, recent)
    assert attrs["PolicyVersion"] == policy.version
    assert datetime.fromisoformat(attrs["InactivityDeadline"]) == after.inactivity_deadline
    assert [await signals(h, "policy_changed") for h in (old, recent)] == [1, 1]
    # Who started it, when and how far it got.
    audit = await engine.store.pool.fetch(
        "SELECT actor, action, detail FROM audit_log WHERE action LIKE 'rollout_%' ORDER BY id")
    assert [(a["actor"], a["action"]) for a in audit] == [("ops.lead", "rollout_started"),
                                                          ("ops.lead", "rollout_finished")]
    assert json.loads(audit[1]["detail"])["done"] == 2


async def test_365_to_608_pushes_deadlines_back(engine: Engine) -> None:
    handle = await certificate(engine, 1, 200 * DAY)
    notified = await certificate(engine, 2, 400 * DAY)
    await engine.env.sleep(1)
    _, rollout = await new_version(engine, 365)
    await roll_out(engine, rollout)
    s = await status(handle)
    assert s.last_activity_at is not None
    assert s.inactivity_deadline == s.last_activity_at + 365 * DAY
    assert (await status(notified)).stage == "AwaitingResponse"

    policy, rollout = await new_version(engine, 608)
    await roll_out(engine, rollout)
    s = await status(handle)
    assert (s.policy_version, s.inactivity_deadline) == (policy.version, s.last_activity_at + 608 * DAY)
    assert datetime.fromisoformat((await search_attributes(engine, handle))["InactivityDeadline"]) == \
        s.last_activity_at + 608 * DAY
    # A notification already raised stays open: the provider has been asked.
    n = await status(notified)
    assert n.stage == "AwaitingResponse" and n.policy_version == policy.version


async def test_a_future_dated_version_changes_nothing_until_its_date(engine: Engine) -> None:
    handle = await certificate(engine, 1, 400 * DAY)
    await engine.env.sleep(1)
    now = await engine.now()
    takes_effect = now + 10 * DAY
    policy, rollout = await new_version(engine, 365, effective_from=takes_effect)
    await roll_out(engine, rollout)
    s = await status(handle)
    assert (s.stage, s.policy_version) == ("Active", 2)
    assert s.last_activity_at is not None and s.inactivity_deadline == s.last_activity_at + 608 * DAY

    # Nobody runs anything at the date: the certificate wakes by itself, at its own moment
    # within the hour after the date (so that 200,000 do not wake at the same instant).
    wake = rules.policy_wake_at(ref(1, engine), takes_effect)
    assert takes_effect <= wake < takes_effect + HOUR
    await engine.env.sleep(takes_effect - await engine.now() - SEC)
    assert ((await status(handle)).stage, (await status(handle)).policy_version) == ("Active", 2)
    await engine.env.sleep(wake - await engine.now() - SEC)
    assert (await status(handle)).stage == "Active"
    await engine.env.sleep(2 * SEC)
    s = await status(handle)
    assert (s.stage, s.policy_version) == ("AwaitingResponse", policy.version)
    assert s.open_notification is not None
    assert wake <= s.open_notification.date_assigned <= wake + SEC
    assert await signals(handle, "policy_changed") == 1  # only the roll-out's, when it was added


# --- roll-outs from the registry ---------------------------------------------------------------


async def test_the_token_bucket_holds_the_rate() -> None:
    bucket = TokenBucket(20)
    started = asyncio.get_running_loop().time()
    for _ in range(41):
        await bucket.take()
    elapsed = asyncio.get_running_loop().time() - started
    # 41 takes at 20 a second, with at most 2 in a burst: no less than 1.9 s.
    assert 1.9 <= elapsed < 10, elapsed
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_an_interrupted_rollout_resumed_reaches_each_certificate_once(engine: Engine) -> None:
    handles = [await certificate(engine, n, (100 + 50 * n) * DAY) for n in range(6)]
    await engine.env.sleep(1)
    _, rollout = await new_version(engine, 365, rate=5)
    seen: list[RolloutProgress] = []
    task: asyncio.Task[RolloutRecord] | None = None

    def stop_after_two(progress: RolloutProgress) -> None:
        seen.append(progress)
        if progress.done >= 2 and task is not None:
            task.cancel()  # Ctrl-C

    task = asyncio.create_task(run_rollout(engine.store, engine.certificates, rollout, actor="ops.lead",
                                           on_progress=stop_after_two, settle=0.2))
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped = await engine.store.rollout(rollout.rollout_id)
    assert stopped is not None and stopped.status == "interrupted"
    assert 2 <= stopped.done < 6 and stopped.total == 6
    # Oldest deadline first: those told are the longest inactive.
    told = [r["case_reference"] for r in await engine.store.pool.fetch(
        "SELECT case_reference FROM rollout_targets WHERE reached_at IS NOT NULL ORDER BY clock_from")]
    assert told == [ref(n, engine) for n in range(5, 5 - stopped.done, -1)]

    resumed = await roll_out(engine, stopped, rate=FAST)
    assert (resumed.status, resumed.done, resumed.total) == ("finished", 6, 6)
    assert [await signals(h, "policy_changed") for h in handles] == [1] * 6
    assert [s.finished for s in seen][-1] is False  # the interrupted run never reported finishing
    actions = [r["action"] for r in await engine.store.pool.fetch(
        "SELECT action FROM audit_log WHERE action LIKE 'rollout_%' ORDER BY id")]
    assert actions == ["rollout_started", "rollout_interrupted", "rollout_resumed", "rollout_finished"]


async def test_the_rollout_reaches_ledger_only_certificates_and_ones_started_while_it_runs(
        engine: Engine) -> None:
    registered = [await certificate(engine, n, (300 + n) * DAY) for n in range(4)]
    # Known only from an activity source's event: no registry row.
    unregistered = ref(50, engine)
    now = await engine.now()
    await engine.client.start_workflow(
        CertificateWorkflow.run, CertificateInput(case_reference=unregistered), id=f"certificate-{unregistered}",
        task_queue=engine.task_queue, start_signal=CertificateWorkflow.record_activity.__name__,
        start_signal_args=[ActivityEvent(event_id="a1", kind="application", occurred_at=now - 30 * DAY)])
    await engine.env.sleep(1)
    policy, rollout = await new_version(engine, 365, rate=4)
    late: list[WorkflowHandle] = []
    starting: list[asyncio.Task[None]] = []

    async def start_another() -> None:
        late.append(await certificate(engine, 60, 10 * DAY))

    def on_progress(progress: RolloutProgress) -> None:
        if progress.done == 1 and not starting:
            starting.append(asyncio.create_task(start_another()))

    finished = await roll_out(engine, rollout, on_progress=on_progress)
    await asyncio.gather(*starting)
    await engine.env.sleep(1)
    assert finished.status == "finished"
    for handle in [*registered, engine.client.get_workflow_handle(f"certificate-{unregistered}"), *late]:
        assert (await status(handle)).policy_version == policy.version, handle.id
    targets = {r["case_reference"] for r in await engine.store.pool.fetch(
        "SELECT case_reference FROM rollout_targets WHERE rollout_id = $1", rollout.rollout_id)}
    assert unregistered in targets and {ref(n, engine) for n in range(4)} <= targets


async def test_the_forecast_agrees_with_the_deadlines_the_certificates_report(engine: Engine) -> None:
    handles = [await certificate(engine, n, days * DAY) for n, days in
               enumerate([700, 607, 600, 590, 560, 500, 30])]
    await engine.env.sleep(1)
    now = await engine.now()
    forecast = await operations.forecast(engine.store, now, weeks=12)
    statuses = [await status(h) for h in handles]
    reported = {s.case_reference: s.inactivity_deadline for s in statuses if s.open_notification is None}
    assert reported == forecast.due_at
    assert forecast.in_review == 1  # the 700-day one was notified at once
    counts = [0] * 14
    for deadline in reported.values():
        assert deadline is not None
        counts[0 if deadline <= now else min(int((deadline - now) / (7 * DAY)) + 1, 13)] += 1
    assert [b.count for b in forecast.buckets] == counts
    assert [b.count for b in forecast.buckets][:3] == [0, 1, 1]  # 607 days: week 1; 600: week 2


# --- outages ------------------------------------------------------------------------------------


async def test_an_outage_across_day_10_moves_the_due_date_and_the_return_by_its_length(engine: Engine) -> None:
    handle = await certificate(engine, 1, 608 * DAY)
    await engine.env.sleep(1)
    raised = (await status(handle)).open_notification
    assert raised is not None
    day_10 = raised.date_assigned + 10 * DAY
    length = 36 * HOUR
    outage_id = await declare_outage(engine, day_10 - 6 * HOUR, day_10 + 30 * HOUR)

    s = await status(handle)
    n = s.open_notification
    assert n is not None
    assert (n.due_date - raised.due_date, n.return_date - raised.return_date) == (length, length)
    (ext,) = n.extensions
    assert (ext.outage_id, ext.reason, ext.due_date_by, ext.return_date_by) == (
        outage_id, "CCMS outage", length, length)
    assert datetime.fromisoformat((await search_attributes(engine, handle))["ResponseDueDate"]) == n.due_date
    [row] = await engine.store.notifications_of(ref(1, engine))
    assert (row.due_date, row.return_date) == (n.due_date, n.return_date)
    assert [e["outage_id"] for e in row.extensions] == [outage_id]
    audit = {a.action for a in await engine.store.audit_of(ref(1, engine))}
    assert "notification_extended" in audit

    await engine.env.sleep(raised.due_date + HOUR - await engine.now())
    assert (await status(handle)).stage == "AwaitingResponse"  # not overdue on the old date
    await engine.env.sleep(n.due_date + SEC - await engine.now())
    assert (await status(handle)).stage == "Overdue"
    await engine.env.sleep(n.return_date - 2 * SEC - await engine.now())
    assert (await status(handle)).notification_cycle == 1
    await engine.env.sleep(3 * SEC)
    assert (await status(handle)).notification_cycle == 2  # returned on the moved date, and resent


async def test_a_certificate_due_during_an_outage_is_notified_when_it_ends(engine: Engine) -> None:
    handle = await certificate(engine, 1, 606 * DAY)  # due in 2 days
    await engine.env.sleep(1)
    now = await engine.now()
    ends = now + 4 * DAY
    await declare_outage(engine, now + DAY, ends)
    await engine.env.sleep(3 * DAY)
    s = await status(handle)
    assert s.stage == "Active" and s.open_notification is None
    await engine.env.sleep(ends - await engine.now() - SEC)
    assert (await status(handle)).stage == "Active"
    await engine.env.sleep(2 * SEC)
    s = await status(handle)
    assert s.stage == "AwaitingResponse" and s.open_notification is not None
    n = s.open_notification
    assert ends <= n.date_assigned < ends + SEC  # when its timer fired
    assert n.extensions == [] and n.due_date == n.date_assigned + 14 * DAY  # raised after it: 14 full days


# --- the operator's commands, in-process against this engine -------------------------------------


def runtime(engine: Engine) -> Runtime:
    return Runtime(engine.client, engine.store, Services("", "", None), Settings(task_queue=engine.task_queue))


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


async def everything(engine: Engine, handles: list[WorkflowHandle]) -> tuple[object, ...]:
    """What a change would touch: versions, outages, roll-outs, the audit log, each certificate."""
    audit = await engine.store.pool.fetchval("SELECT count(*) FROM audit_log")
    return (await engine.store.policy_versions(), await engine.store.outages(), await engine.store.rollouts(),
            audit, [await status(h) for h in handles], [await signals(h, "policy_changed") for h in handles])


async def test_a_dry_run_prints_what_would_fall_due_and_changes_nothing(
        engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    handles = [await certificate(engine, 1, 450 * DAY), await certificate(engine, 2, 420 * DAY),
               await certificate(engine, 3, 360 * DAY), await certificate(engine, 4, 10 * DAY)]
    await engine.env.sleep(1)
    before = await everything(engine, handles)
    capsys.readouterr()
    code = await policy.cmd_policy_set(runtime(engine), parse(
        "policy", "set", "--inactivity-days", "365", "--reason", "back to 12 months", "--actor", "ops.lead",
        "--dry-run"))
    out = capsys.readouterr().out
    assert code == 0
    assert "Dry run: nothing is changed." in out
    assert "proposed: version 3: 365 days without activity" in out
    at_once = next(line for line in out.splitlines() if line.strip().startswith("at once"))
    assert at_once.split()[2:4] == ["0", "2"], out  # as now: none; proposed: two
    assert ref(1, engine) in at_once and ref(2, engine) in at_once
    assert at_once.index(ref(1, engine)) < at_once.index(ref(2, engine))  # the longest inactive first
    week_1 = next(line for line in out.splitlines() if line.strip().startswith("week 1 "))
    assert ref(3, engine) in week_1  # 360 days inactive: due in 5 days under 365
    assert await everything(engine, handles) == before


async def test_forecast_command_prints_the_weeks(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    await certificate(engine, 1, 604 * DAY)
    await engine.env.sleep(1)
    capsys.readouterr()
    assert await policy.cmd_forecast(runtime(engine), parse("forecast", "--weeks", "4")) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip().startswith(("at once", "week", "later"))]
    assert [line.split()[0] for line in lines] == ["at", "week", "week", "week", "week", "later"]
    assert ref(1, engine) in lines[1] and lines[1].split()[6] == "1", out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--inactivity-days", "0"], "inactivity days must be more than 0"),
        (["--inactivity-days", "-5"], "inactivity days must be more than 0"),
        (["--inactivity-days", "365", "--response-days", "0"], "response days must be more than 0"),
        (["--inactivity-days", "365", "--response-days", "-1"], "response days must be more than 0"),
        (["--inactivity-days", "365", "--return-days", "0"], "return days must be more than 0"),
        (["--inactivity-days", "365", "--max-cycles", "0"], "maximum unanswered cycles must be more than 0"),
        (["--inactivity-days", "365", "--response-days", "21", "--return-days", "21"],
         "the return (21 days) must come after the due date (21 days)"),
        (["--inactivity-days", "365", "--return-days", "10"], "must come after the due date (14 days)"),
        (["--inactivity-days", "365", "--effective-from", "{two_days_ago}"], "more than a day in the past"),
        (["--inactivity-days", "365", "--reason", " "], "a reason is required"),
        (["--inactivity-days", "365", "--actor", ""], "who is making the change is required"),
    ],
)
async def test_policy_set_refusals_change_nothing(engine: Engine, args: list[str], words: str) -> None:
    handle = await certificate(engine, 1, 400 * DAY)
    await engine.env.sleep(1)
    before = await everything(engine, [handle])
    two_days_ago = (await engine.now() - 2 * DAY).isoformat()
    argv = ["policy", "set", "--reason", "why", "--actor", "ops.lead"]
    argv += [a.format(two_days_ago=two_days_ago) for a in args]
    for dry_run in ([], ["--dry-run"]):
        with pytest.raises(common.CliError) as refused:
            await policy.cmd_policy_set(runtime(engine), parse(*argv, *dry_run))
        assert refused.value.code == common.EXIT_USAGE and words in str(refused.value), str(refused.value)
    assert await everything(engine, [handle]) == before


# Without --actor (and ICR_ACTOR) the command line refuses before it connects:
# tests/unit/test_cli_exit_codes.py.
@pytest.mark.parametrize("missing", ["--reason", "--inactivity-days"])
def test_policy_set_without_reason_or_days_is_a_usage_error(
        missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = {"--inactivity-days": "365", "--reason": "why", "--actor": "ops.lead"}
    del argv[missing]
    with pytest.raises(SystemExit) as exited:
        parse("policy", "set", *[word for pair in argv.items() for word in pair])
    assert exited.value.code == 2
    assert f"the following arguments are required: {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--from", "2026-06-05T00:00:00+01:00", "--to", "2026-06-05T00:00:00+01:00"], "must end after it starts"),
        (["--from", "2026-06-07T00:00:00+01:00", "--to", "2026-06-05T00:00:00+01:00"], "must end after it starts"),
        (["--from", "2026-06-05T00:00:00+01:00", "--to", "2026-06-07T00:00:00+01:00", "--reason", ""],
         "a reason is required"),
        (["--from", "2026-06-05T00:00:00+01:00", "--to", "2026-06-07T00:00:00+01:00", "--actor", " "],
         "is required"),
    ],
)
async def test_outage_declare_refusals_change_nothing(engine: Engine, args: list[str], words: str) -> None:
    before = await everything(engine, [])
    with pytest.raises(common.CliError) as refused:
        await policy.cmd_outage_declare(runtime(engine), parse(
            "outage", "declare", "--reason", "down", "--actor", "ops.lead", *args))
    assert refused.value.code == common.EXIT_USAGE and words in str(refused.value)
    assert await everything(engine, []) == before


async def test_policy_set_and_outage_declare_commands_run_their_rollouts(
        engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    handle = await certificate(engine, 1, 608 * DAY)
    await engine.env.sleep(1)
    raised = (await status(handle)).open_notification
    assert raised is not None
    rt = runtime(engine)
    now = await engine.now()
    assert await policy.cmd_outage_declare(rt, parse(
        "outage", "declare", "--from", (now + DAY).isoformat(), "--to", (now + 3 * DAY).isoformat(),
        "--reason", "CCMS upgrade", "--actor", "ops.lead")) == 0
    assert await policy.cmd_policy_set(rt, parse(
        "policy", "set", "--inactivity-days", "365", "--reason", "back to 12 months", "--actor", "ops.lead")) == 0
    await engine.env.sleep(1)
    out = capsys.readouterr()
    assert "declared outage 1" in out.out and "roll-out 1 finished: 1 of 1" in out.out, out
    assert "policy version 3" in out.out and "roll-out 2 finished: 1 of 1" in out.out, out
    assert "roll-out 2 [" in out.err  # the progress bar
    s = await status(handle)
    assert s.policy_version == 3 and s.open_notification is not None
    assert s.open_notification.due_date == raised.due_date + 2 * DAY
    assert await policy.cmd_rollout_list(rt, parse("rollout", "list")) == 0
    assert await policy.cmd_outage_list(rt, parse("outage", "list")) == 0
    assert await policy.cmd_policy_show(rt, parse("policy", "show")) == 0
    listing = capsys.readouterr().out
    assert "policy version 3" in listing and "outage 1" in listing and "CCMS upgrade" in listing
    assert "* " in listing and "back to 12 months" in listing
    # Who did each and why, from the audit log.
    assert await operations_cli.cmd_audit(rt, parse("audit", "--operators")) == 0
    audit = [line.split()[3:5] for line in capsys.readouterr().out.splitlines()[:-1]]
    audit = [row for row in audit if row[1] != "caseworker_imported"]  # the fixture's directory
    assert audit == [["test", "user_imported"], ["ops.lead", "outage_declared"], ["ops.lead", "rollout_started"],
                     ["ops.lead", "rollout_finished"], ["ops.lead", "policy_changed"],
                     ["ops.lead", "rollout_started"], ["ops.lead", "rollout_finished"]], audit
    assert await operations_cli.cmd_audit(rt, parse("audit", "--case", ref(1, engine))) == 0
    assert "notification_extended" in capsys.readouterr().out

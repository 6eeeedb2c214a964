"""The policy and outages, and rolling them out: policy show/set (and set-policy), outage
declare/list, forecast, rollout list/resume."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from icr.cli.common import (
    CliError,
    add_actor_argument,
    command,
    database_only,
    now_utc,
    positive_float_arg,
    positive_int_arg,
    timestamp_arg,
    usage_checked,
)
from icr.cli.progress import ProgressBar
from icr.domain import rules
from icr.domain.models import (
    OutageDeclaration,
    RolloutRecord,
)
from icr.runtime.engine import Runtime
from icr.services import operations
from icr.services.rollout import DEFAULT_RATE, RolloutBusy, run_rollout


async def _roll_out(rt: Runtime, rollout: RolloutRecord, actor: str, rate: float | None = None) -> RolloutRecord:
    """Run a roll-out with a progress bar; Ctrl-C or SIGTERM stops it resumably."""
    of = f"policy version {rollout.subject}" if rollout.kind == "policy" else f"outage {rollout.subject}"
    print(f"roll-out {rollout.rollout_id}: telling the open certificates about {of}, "
          f"at most {rate or rollout.rate:g} a second (Ctrl-C stops it; it can be resumed)", flush=True)
    bar = ProgressBar()
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        finished = await run_rollout(rt.store, rt.certificates, rollout, actor=actor, rate=rate, on_progress=bar)
    except RolloutBusy as err:
        raise CliError(str(err)) from None
    except asyncio.CancelledError:
        bar.close()
        stopped = await rt.store.rollout(rollout.rollout_id)
        done = f"{stopped.done}/{stopped.total}" if stopped else "?"
        print(f"roll-out {rollout.rollout_id} interrupted after {done}; resume it with: "
              f"./run starter rollout resume {rollout.rollout_id}", file=sys.stderr, flush=True)
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    print(f"roll-out {finished.rollout_id} {finished.status}: {finished.done} of {finished.total} open "
          f"certificate(s) told ({finished.not_running} had no running review)")
    return finished


async def cmd_policy_show(rt: Runtime, args: argparse.Namespace) -> int:
    for line in operations.render_versions(await rt.store.policy_versions(), now_utc()):
        print(line)
    return 0


async def cmd_policy_set(rt: Runtime, args: argparse.Namespace) -> int:
    now = now_utc()
    versions = list(await rt.store.policy_versions())
    change = operations.policy_change(
        list(versions), inactivity_days=args.inactivity_days, response_days=args.response_days,
        return_days=args.return_days, max_cycles=args.max_cycles,
        effective_from=args.effective_from or now, reason=args.reason, actor=args.actor)
    usage_checked(lambda: rules.check_policy_change(change, now))
    proposed = operations.proposed_version(list(versions), change)
    in_force = rules.policy_at(list(versions), now)
    assert in_force is not None
    when = "now" if change.effective_from <= now else f"from {operations.uk(change.effective_from)}"
    if args.dry_run:
        print("Dry run: nothing is changed.")
        print(f"  in force: {operations.describe_policy(in_force)}")
        print(f"  proposed: {operations.describe_policy(proposed)}, {when}")
        before = await operations.forecast(rt.store, now, args.weeks)
        after = await operations.forecast(rt.store, now, args.weeks, extra_version=proposed)
        for line in operations.render_forecast([("as now", before), ("proposed", after)]):
            print(line)
        print("Run the same command without --dry-run to add the version and tell every open certificate.")
        return 0
    policy, rollout = await rt.store.change_policy(change, args.rate, now)
    print(f"added policy {operations.describe_policy(policy)}, {when}; by {change.actor}: {change.reason}")
    await _roll_out(rt, rollout, change.actor)
    return 0


async def cmd_outage_declare(rt: Runtime, args: argparse.Namespace) -> int:
    declaration = OutageDeclaration(starts_at=args.starts_at, ends_at=args.ends_at, reason=args.reason,
                                    actor=args.actor)
    usage_checked(lambda: rules.check_outage(declaration))
    outage, rollout = await rt.store.declare_outage(declaration, args.rate, now_utc())
    print(f"declared outage {outage.outage_id}: {operations.uk(outage.starts_at)} to "
          f"{operations.uk(outage.ends_at)} ({outage.ends_at - outage.starts_at}); by {outage.declared_by}: "
          f"{outage.reason}. Response deadlines overlapping it move by the overlap; certificates falling "
          "due during it are notified when it ends.")
    await _roll_out(rt, rollout, declaration.actor)
    return 0


async def cmd_outage_list(rt: Runtime, args: argparse.Namespace) -> int:
    for line in operations.render_outages(await rt.store.outages(), now_utc()):
        print(line)
    return 0


async def cmd_forecast(rt: Runtime, args: argparse.Namespace) -> int:
    now = now_utc()
    in_force = rules.policy_at(list(await rt.store.policy_versions()), now)
    assert in_force is not None
    print(f"in force: {operations.describe_policy(in_force)} (and any version to come: `policy show`)")
    result = await operations.forecast(rt.store, now, args.weeks, args.examples)
    for line in operations.render_forecast([("certificates", result)]):
        print(line)
    return 0


async def cmd_rollout_list(rt: Runtime, args: argparse.Namespace) -> int:
    for line in operations.render_rollouts(await rt.store.rollouts()):
        print(line)
    return 0


async def cmd_rollout_resume(rt: Runtime, args: argparse.Namespace) -> int:
    if args.rollout_id is not None:
        found = await rt.store.rollout(args.rollout_id)
        if found is None:
            raise CliError(f"there is no roll-out {args.rollout_id} (`rollout list` shows them)")
        if found.status in ("finished", "superseded"):
            raise CliError(f"roll-out {found.rollout_id} is {found.status}: nothing to resume")
        todo = [found]
    else:
        todo = [r for r in await rt.store.rollouts() if r.status in ("running", "interrupted")]
        if not todo:
            print("no unfinished roll-outs")
    for rollout in todo:
        await _roll_out(rt, rollout, args.actor, args.rate)
    return 0


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands, each with its arguments."""

    def policy_set_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--inactivity-days", type=int, required=True, metavar="N",
                       help="a certificate falls due after N days without qualifying activity")
        p.add_argument("--response-days", type=int, default=None, metavar="D",
                       help="a notification is overdue D days after it is raised (default: as the version "
                            "it follows, 14 as shipped)")
        p.add_argument("--return-days", type=int, default=None, metavar="D",
                       help="an unanswered notification returns to the LAA after D days (default: as the "
                            "version it follows, 21 as shipped)")
        p.add_argument("--max-cycles", type=int, default=None, metavar="C",
                       help="unanswered cycles before escalation (default: as the version it follows, 3 as shipped)")
        p.add_argument("--effective-from", type=timestamp_arg, default=None, metavar="T",
                       help="when it takes effect, ISO 8601 with timezone (default now; at most a day back)")
        p.add_argument("--reason", "--note", dest="reason", required=True, help="why (the audit log keeps it)")
        add_actor_argument(p, "making the change")
        p.add_argument("--dry-run", action="store_true",
                       help="change nothing; print how many certificates would fall due, at once and week by week")
        p.add_argument("--weeks", type=positive_int_arg, default=12, help="weeks the dry run looks ahead (default 12)")
        p.add_argument("--rate", type=positive_float_arg, default=DEFAULT_RATE,
                       help=f"certificates told per second (default {DEFAULT_RATE:g})")

    policy = sub.add_parser("policy", help="the inactivity policy: its versions, and a new one",
                            description="the inactivity policy: its versions, and a new one")
    policy_sub = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = policy_sub.add_parser("show", help="the policy versions, the one in force marked",
                              description="the policy versions, the one in force marked")
    database_only(p).set_defaults(handler=cmd_policy_show)
    set_help = ("add a policy version (every period, from a date, with who and why) and tell every open "
                "certificate, oldest deadline first, at a rate; --dry-run first shows what would fall due")
    p = policy_sub.add_parser("set", help=set_help, description=set_help)
    policy_set_arguments(p)
    p.set_defaults(handler=cmd_policy_set)
    p = command(sub, "set-policy", cmd_policy_set, "the same as `policy set`")
    policy_set_arguments(p)

    outage = sub.add_parser("outage", help="declared CCMS outages", description="declared CCMS outages")
    outage_sub = outage.add_subparsers(dest="action", required=True, metavar="ACTION")
    declare_help = ("declare an outage window: response deadlines overlapping it move by the overlap, and "
                    "certificates falling due during it are notified when it ends")
    p = outage_sub.add_parser("declare", help=declare_help, description=declare_help)
    p.add_argument("--from", dest="starts_at", type=timestamp_arg, required=True, metavar="T",
                   help="when it began, ISO 8601 with timezone")
    p.add_argument("--to", dest="ends_at", type=timestamp_arg, required=True, metavar="T",
                   help="when it ended (or will end), ISO 8601 with timezone")
    p.add_argument("--reason", required=True, help="why (the audit log keeps it)")
    add_actor_argument(p, "declaring it")
    p.add_argument("--rate", type=positive_float_arg, default=DEFAULT_RATE,
                   help=f"certificates told per second (default {DEFAULT_RATE:g})")
    p.set_defaults(handler=cmd_outage_declare)
    p = outage_sub.add_parser("list", help="the declared outages", description="the declared outages")
    database_only(p).set_defaults(handler=cmd_outage_list)

    forecast_help = ("how many open certificates fall due at once and in each coming week under the policy in "
                     "force (from the registry and the ledger)")
    p = database_only(command(sub, "forecast", cmd_forecast, forecast_help))
    p.add_argument("--weeks", type=positive_int_arg, default=12, help="weeks to look ahead (default 12)")
    p.add_argument("--examples", type=int, default=3, help="certificates shown per line (default 3)")

    rollout = sub.add_parser("rollout", help="roll-outs of policy versions and outages to open certificates",
                             description="roll-outs of policy versions and outages to open certificates")
    rollout_sub = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = rollout_sub.add_parser("list", help="every roll-out: who started it, when, and how far it got",
                               description="every roll-out: who started it, when, and how far it got")
    database_only(p).set_defaults(handler=cmd_rollout_list)
    p = rollout_sub.add_parser("resume", help="carry on an interrupted roll-out (no certificate is told twice)",
                               description="carry on an interrupted roll-out (no certificate is told twice)")
    p.add_argument("rollout_id", type=int, nargs="?", default=None, metavar="ID",
                   help="the roll-out (default: every unfinished one)")
    p.add_argument("--rate", type=positive_float_arg, default=None,
                   help="certificates told per second (default: the rate it was started with)")
    add_actor_argument(p, "resuming it")
    p.set_defaults(handler=cmd_rollout_resume)

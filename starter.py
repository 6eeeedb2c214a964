"""The operator's command line for the Inactive Case Review engine.

Uses TEMPORAL_ADDRESS / DATABASE_URL when set; otherwise the embedded servers under the
data directory (shared with a running `./run demo` or worker). Every subcommand has --help,
prints a clear error and exits non-zero on bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
from temporalio.service import RPCError

from icr import consistency, importer, operations, rules
from icr.client import (
    CertificateClient,
    CertificateClosed,
    CertificateNotFound,
    CertificateListing,
    MessageRefused,
    NoWorker,
    list_query,
    queue_query,
    web_ui_link,
)
from icr.db.outbox import Outbox
from icr.codec import PayloadKeyError, PayloadKeys
from icr.engine import Runtime, connected
from icr.keyring import ConfigurationError
from icr.logs import configure_logging
from icr.mail import outbox_lines
from icr.mail_sink import sink_folder, stored_messages
from icr.models import (
    ActivityEvent,
    ActivityKind,
    CertificateStatus,
    CloseCertificateRequest,
    IcrStage,
    LaaDecisionRequest,
    OutageDeclaration,
    ReassignContactRequest,
    RespondRequest,
    Response,
    RolloutRecord,
    TaskKind,
)
from icr.progress import ProgressBar
from icr.rollout import DEFAULT_RATE, RolloutBusy, run_rollout
from icr.settings import Settings

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
QUERY_TIMEOUT = timedelta(seconds=10)  # a query needs a running worker


class CliError(Exception):
    """Bad input or a refusal: printed as `error: ...`, exit non-zero."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _case_reference(value: str) -> str:
    try:
        return rules.check_case_reference(value)
    except rules.Refused as refused:
        raise argparse.ArgumentTypeError(refused.message) from None


def _response(value: str) -> str:
    values = [r.value for r in Response]
    if value not in values:
        raise argparse.ArgumentTypeError(f"{value!r} is not a response; use one of: {', '.join(values)}")
    return value


def _message(value: str) -> str:
    if len(value) > rules.MESSAGE_MAX_CHARS:
        raise argparse.ArgumentTypeError(f"message is {len(value)} characters; at most "
                                         f"{rules.MESSAGE_MAX_CHARS} are allowed")
    return value


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time, e.g. 2026-05-17T09:30:00+01:00") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone; add one, e.g. +00:00")
    return parsed


def _whole_number(value: str, least: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < least:
        raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
    return number


def _positive_int(value: str) -> int:
    return _whole_number(value, 1)


def _non_negative_int(value: str) -> int:
    return _whole_number(value, 0)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0")
    return number


async def _status(certificates: CertificateClient, case_reference: str) -> CertificateStatus:
    # Only a worker answers a query or an update: say so at once rather than time out.
    if not await certificates.worker_polling():
        raise CliError(str(NoWorker(certificates.task_queue)), EXIT_UNAVAILABLE)
    try:
        return await certificates.status(case_reference, rpc_timeout=QUERY_TIMEOUT)
    except CertificateNotFound as err:
        raise CliError(str(err)) from None
    except NoWorker as err:
        raise CliError(str(err), EXIT_UNAVAILABLE) from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _uk(at: datetime | None) -> str:
    return rules.uk_time(at) if at is not None else "-"


def _waited(since: datetime, now: datetime) -> str:
    """How long something has waited, to the minute: `3d 04h`, `2h 05m`, `7m`."""
    minutes = max(int((now - since).total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _ui_link(rt: Runtime, query: str) -> str | None:
    ui = rt.services.ui_url or rt.settings.temporal_ui_url
    return web_ui_link(ui, rt.settings.temporal_namespace, query) if ui else None


# --- subcommands -------------------------------------------------------------------------


async def cmd_import(rt: Runtime, args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"{path}: no such file", EXIT_USAGE)
    actor = args.actor
    try:
        if args.kind == "users":
            report = await importer.import_users(rt.store, path, actor=actor, now=_now())
        elif args.kind == "certificates":
            bar = ProgressBar(label="certificates") if args.progress else None
            try:
                report = await importer.import_certificates(rt.store, rt.certificates, path, actor=actor,
                                                            now=_now(), concurrency=args.concurrency,
                                                            max_backlog=args.max_backlog, on_progress=bar)
            except NoWorker as err:
                raise CliError(f"{err}. The import held its starts for a backlog no worker works through; "
                               "the rows written so far are kept: run the import again once a worker runs "
                               "(it carries on where it stopped), or pass --max-backlog 0 to start every "
                               "workflow without one", EXIT_UNAVAILABLE) from None
            finally:
                if bar is not None:
                    bar.close()
        elif args.kind == "caseworkers":
            report = await importer.import_caseworkers(rt.store, path, actor=actor, now=_now())
        else:
            report = await importer.import_exercise_responses(rt.store, rt.certificates, path, actor=actor,
                                                              now=_now())
    except importer.ImportFileError as err:
        raise CliError(str(err)) from None
    for error in report.refused:
        print(f"{path}: {error}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else EXIT_REFUSED


async def cmd_record_activity(rt: Runtime, args: argparse.Namespace) -> int:
    event = ActivityEvent(event_id=args.event_id, kind=args.kind, occurred_at=args.occurred_at or _now(),
                          source=args.source)
    try:
        rules.check_event(event, _now())
    except rules.Refused as refused:
        raise CliError(refused.message, EXIT_USAGE) from None
    recorded = [r for r in await rt.store.ledger_of(args.case_reference) if r["event_id"] == event.event_id]
    if recorded:
        print(f"event {event.event_id} was already recorded for {args.case_reference} ({recorded[0]['kind']} "
              f"at {recorded[0]['occurred_at'].isoformat()}); it counts once, nothing changed")
        return 0
    try:
        await rt.certificates.record_activity(args.case_reference, event)
    except CertificateClosed as err:
        raise CliError(f"{err}; the event was not recorded") from None
    print(f"recorded {event.kind} {event.event_id} for {args.case_reference}")
    return 0


async def cmd_respond(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = rt.certificates
    await _status(certificates, args.case_reference)  # a clear error for an unknown certificate
    request = RespondRequest(user_login_id=args.user, response=args.response, message=args.message)
    try:
        result = await certificates.respond(args.case_reference, request)
    except MessageRefused as err:
        raise CliError(f"response refused: {err}") from None
    _print_json(result.model_dump(mode="json"))
    return 0


async def cmd_decide(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = rt.certificates
    status = await _status(certificates, args.case_reference)  # a clear error for an unknown certificate
    if status.stage == IcrStage.CLOSED:
        raise CliError(f"decision refused: certificate {args.case_reference} is closed [certificate_closed]")
    # Names the task shown (unless --task-id says which), so a task that changed meanwhile is
    # not decided by mistake.
    task_id = args.task_id or (status.open_task.task_id if status.open_task else None)
    request = LaaDecisionRequest(caseworker=args.caseworker, decision=args.decision, reason=args.reason,
                                 task_id=task_id)
    try:
        result = await certificates.decide(args.case_reference, request)
    except MessageRefused as err:
        raise CliError(f"decision refused: {err}") from None
    _print_json(result.model_dump(mode="json"))
    return 0


async def cmd_reassign(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = rt.certificates
    await _status(certificates, args.case_reference)  # a clear error for an unknown certificate
    request = ReassignContactRequest(user_login_id=args.user, new_contact_login_id=args.new_contact)
    try:
        result = await certificates.reassign(args.case_reference, request)
    except MessageRefused as err:
        raise CliError(f"reassignment refused: {err}") from None
    _print_json(result.model_dump(mode="json"))
    return 0


async def cmd_close(rt: Runtime, args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise CliError("--reason must not be empty", EXIT_USAGE)
    certificates = rt.certificates
    status = await _status(certificates, args.case_reference)
    if status.stage == IcrStage.CLOSED:
        raise CliError(f"certificate {args.case_reference} is already closed")
    await certificates.close(args.case_reference,
                             CloseCertificateRequest(reason=args.reason, occurred_at=args.occurred_at or _now()))
    print(f"close sent for {args.case_reference}")
    return 0


async def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    status = await _status(rt.certificates, args.case_reference)
    print(status.model_dump_json(indent=2))
    return 0


_STAGE_ORDER = {stage.value: i for i, stage in enumerate(IcrStage)}
_LAST = datetime.max.replace(tzinfo=timezone.utc)


def _list_order(c: CertificateListing) -> tuple[int, datetime, datetime, str]:
    """By stage, then the soonest response due date, then the soonest inactivity deadline."""
    return (_STAGE_ORDER.get(c.stage or "", len(_STAGE_ORDER)), c.response_due_date or _LAST,
            c.inactivity_deadline or _LAST, c.case_reference)


async def cmd_list(rt: Runtime, args: argparse.Namespace) -> int:
    query = list_query(args.stage, args.firm)
    print(f"# filter: {query}")
    listed = sorted([c async for c in rt.certificates.list_certificates(args.stage, args.firm, limit=args.limit)],
                    key=_list_order)
    if listed:
        print(f"{'certificate':<14} {'stage':<17} {'firm':<8} {'open task':<21} {'cycle':>5}  "
              f"{'response due (UK)':<17}  {'inactivity deadline (UK)'}")
    for c in listed:
        print(f"{c.case_reference:<14} {c.stage or '?':<17} {c.provider_firm_id or '-':<8} "
              f"{c.open_task_kind or '-':<21} {c.notification_cycle if c.notification_cycle else '-':>5}  "
              f"{_uk(c.response_due_date):<17}  {_uk(c.inactivity_deadline)}")
    print(f"{len(listed)} certificate(s)")
    return 0


async def cmd_queue(rt: Runtime, args: argparse.Namespace) -> int:
    query = queue_query(args.kind, args.firm)
    listed = {c.case_reference: c async for c in rt.certificates.list_queue(args.kind, args.firm,
                                                                               limit=args.limit)}
    # The open task from the registry: what it asks, and since when (the oldest first).
    tasks = [t for t in await rt.store.open_tasks_of(list(listed)) if not args.kind or t["kind"] == args.kind]
    waiting = {t["case_reference"] for t in tasks}
    print(f"# filter: {query}")
    link = _ui_link(rt, query)
    if link:
        print(f"# Web UI: {link}")
    now = _now()
    if listed:
        print(f"{'waiting':>8}  {'certificate':<14} {'firm':<8} {'stage':<17} {'task':<22} {'kind':<21} asks")
    for t in tasks:
        c = listed[t["case_reference"]]
        print(f"{_waited(t['raised_at'], now):>8}  {c.case_reference:<14} {c.provider_firm_id or '-':<8} "
              f"{c.stage or '?':<17} {t['task_id']:<22} {t['kind']:<21} {t['detail']}")
    for ref in sorted(set(listed) - waiting):  # listed before the registry caught up (or after)
        c = listed[ref]
        print(f"{'?':>8}  {ref:<14} {c.provider_firm_id or '-':<8} {c.stage or '?':<17} {'-':<22} "
              f"{c.open_task_kind or '-':<21} -")
    print(f"{len(listed)} certificate(s) waiting for the LAA")
    return 0


def _refused(check: Callable[[], None]) -> None:
    """A rules check of operator input: its refusal is a usage error, exit 2."""
    try:
        check()
    except rules.Refused as refused:
        raise CliError(refused.message, EXIT_USAGE) from None


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
    for line in operations.render_versions(await rt.store.policy_versions(), _now()):
        print(line)
    return 0


async def cmd_policy_set(rt: Runtime, args: argparse.Namespace) -> int:
    now = _now()
    versions = list(await rt.store.policy_versions())
    change = operations.policy_change(
        list(versions), inactivity_days=args.inactivity_days, response_days=args.response_days,
        return_days=args.return_days, max_cycles=args.max_cycles,
        effective_from=args.effective_from or now, reason=args.reason, actor=args.actor)
    _refused(lambda: rules.check_policy_change(change, now))
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
    _refused(lambda: rules.check_outage(declaration))
    outage, rollout = await rt.store.declare_outage(declaration, args.rate, _now())
    print(f"declared outage {outage.outage_id}: {operations.uk(outage.starts_at)} to "
          f"{operations.uk(outage.ends_at)} ({outage.ends_at - outage.starts_at}); by {outage.declared_by}: "
          f"{outage.reason}. Response deadlines overlapping it move by the overlap; certificates falling "
          "due during it are notified when it ends.")
    await _roll_out(rt, rollout, declaration.actor)
    return 0


async def cmd_outage_list(rt: Runtime, args: argparse.Namespace) -> int:
    for line in operations.render_outages(await rt.store.outages(), _now()):
        print(line)
    return 0


async def cmd_forecast(rt: Runtime, args: argparse.Namespace) -> int:
    now = _now()
    in_force = rules.policy_at(list(await rt.store.policy_versions()), now)
    assert in_force is not None
    print(f"in force: {operations.describe_policy(in_force)} (and any version to come: `policy show`)")
    result = await operations.forecast(rt.store, now, args.weeks, args.examples)
    for line in operations.render_forecast([("certificates", result)]):
        print(line)
    return 0


async def cmd_audit(rt: Runtime, args: argparse.Namespace) -> int:
    rows = await rt.store.recent_audit(args.limit, args.case_reference, operators_only=args.operators)
    for row in rows:
        detail = json.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
        print(f"{operations.uk(row['at'])}  {row['actor']:<16} {row['action']:<24} "
              f"{row['case_reference'] or '-':<13} {json.dumps(detail, default=str)}")
    print(f"{len(rows)} audit row(s), oldest first")
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


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from None


async def cmd_mail_list(rt: Runtime, args: argparse.Namespace) -> int:
    rows = await Outbox(rt.store.pool).rows(day=args.date, problems_only=args.failed, limit=args.limit)
    print("\n".join(outbox_lines(rows)) if rows else "no daily digests" + (" to show" if args.failed else ""))
    if not rt.settings.smtp_host:
        folder = sink_folder(rt.settings.data_dir)
        print(f"# no ICR_SMTP_HOST: mail went to the local SMTP sink; {len(stored_messages(folder))} "
              f"message(s) in {folder}")
    return 0


def cmd_make_key(args: argparse.Namespace) -> int:
    key_id = args.id or f"k{_now():%Y%m%d}"
    try:
        print(PayloadKeys.generate(key_id).format())
    except PayloadKeyError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    return 0


async def cmd_check(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = rt.certificates
    refs: list[str] = args.case_references or [
        c.case_reference async for c in certificates.list_certificates(running=True)]
    found = await consistency.check(certificates, rt.store, refs, settle=args.settle)
    for disagreement in found:
        print(disagreement)
    print(f"{len(refs)} certificate(s) checked; {len(found)} disagreement(s)")
    return EXIT_REFUSED if found else 0


def cmd_generate_registry(args: argparse.Namespace) -> int:
    from icr.synthetic import generate_registry

    made = generate_registry(args.out, args.certificates, seed=args.seed, due_at=args.due_at,
                             due_within=args.due_within, prefix=args.prefix)
    print(f"{made.users}: {made.user_count} users of {made.firms} firms")
    print(f"{made.certificates}: {made.certificate_count} certificates")
    print(f"next: starter.py import users {made.users} && starter.py import certificates {made.certificates}")
    return 0


async def cmd_demo(rt: Runtime, args: argparse.Namespace) -> int:
    from icr.demo import run_demo

    return await run_demo(rt, keep_running=not args.exit_after_seed)


# --- parsing -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Bad arguments, whichever the command: `error: ...` on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="starter.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[Runtime, argparse.Namespace], Awaitable[int]],
                help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command("demo", cmd_demo, "run the engine on the embedded servers with demo certificates "
                                  "in every stage, and keep a worker running until Ctrl-C")
    p.add_argument("--exit-after-seed", action="store_true", help="stop once the demo data is in")

    imp = sub.add_parser("import", help="load the registry from a CSV file",
                         description="load the registry from a CSV file (UTF-8, a header row)")
    imp_sub = imp.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, columns in [
        ("users", "login_id, provider_firm_id, roles (;-separated), pre_silas (true/false), "
                  "email (optional: where the daily digest goes)"),
        ("certificates", "case_reference, provider_firm_id, office_code, provider_contact_login, "
                         "granted_on, last_activity_at (optional), poa_paid, poa_recouped"),
        ("exercise-responses", "case_reference, response, reported_on"),
        ("caseworkers", "caseworker_id (the name a caseworker decides under), active (true/false)"),
    ]:
        p = imp_sub.add_parser(kind, help=f"import {kind}", description=f"import {kind}; columns: {columns}")
        p.add_argument("file", type=Path, metavar="FILE")
        p.add_argument("--actor", default=os.environ.get("USER") or "operator",
                       help="who is importing (recorded in the audit log)")
        if kind == "certificates":
            p.add_argument("--concurrency", type=_positive_int, default=importer.CONCURRENCY,
                           help=f"rows written and workflows started at once (default {importer.CONCURRENCY})")
            p.add_argument("--max-backlog", type=_non_negative_int, default=importer.MAX_BACKLOG,
                           help="hold new starts while more workflow tasks than this wait for a worker, so "
                                "that live certificates are not queued behind the onboarding (default "
                                f"{importer.MAX_BACKLOG}; 0: never hold)")
            p.add_argument("--no-progress", dest="progress", action="store_false",
                           help="no progress bar on stderr")
        p.set_defaults(handler=cmd_import, kind=kind)

    p = command("record-activity", cmd_record_activity, "record a qualifying activity event "
                                                        "(starts the certificate's review if needed)")
    p.add_argument("case_reference", type=_case_reference)
    p.add_argument("--kind", required=True, help=f"one of: {', '.join(k.value for k in ActivityKind)}")
    p.add_argument("--event-id", required=True)
    p.add_argument("--occurred-at", type=_timestamp, default=None, help="ISO 8601 with timezone (default now)")
    p.add_argument("--source", default="starter.py")

    p = command("respond", cmd_respond, "answer a certificate's open notification as a provider user")
    p.add_argument("case_reference", type=_case_reference)
    p.add_argument("--user", required=True, help="the provider user's login id")
    p.add_argument("--response", required=True, type=_response,
                   help=f"one of: {', '.join(r.value for r in Response)}")
    p.add_argument("--message", default=None, type=_message, help="optional, at most 2,000 characters")

    p = command("decide", cmd_decide, "an LAA caseworker's decision on the open task")
    p.add_argument("case_reference", type=_case_reference)
    p.add_argument("--caseworker", required=True)
    p.add_argument("--decision", required=True, choices=["close", "keep_open"])
    p.add_argument("--reason", default="")
    p.add_argument("--task-id", default=None, help="the task decided (refused if it is no longer the open one)")

    p = command("reassign", cmd_reassign, "a Cross Office user points the certificate at another provider user")
    p.add_argument("case_reference", type=_case_reference)
    p.add_argument("--user", required=True, help="the Cross Office user's login id")
    p.add_argument("--new-contact", required=True)

    p = command("close", cmd_close, "the certificate was discharged or closed elsewhere")
    p.add_argument("case_reference", type=_case_reference)
    p.add_argument("--reason", required=True)
    p.add_argument("--occurred-at", type=_timestamp, default=None)

    p = command("status", cmd_status, "show a certificate's whole state")
    p.add_argument("case_reference", type=_case_reference)

    p = command("list", cmd_list, "list certificates by stage and firm (Temporal visibility)")
    p.add_argument("--stage", choices=[s.value for s in IcrStage])
    p.add_argument("--firm", help="provider firm id")
    p.add_argument("--limit", type=int, default=200)

    mail = sub.add_parser("mail", help="the daily digest e-mails", description="the daily digest e-mails")
    mail_sub = mail.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = mail_sub.add_parser("list", help="the outbox: who, which day, sent or why not",
                            description="the daily digest outbox: who, which day, sent (with the SMTP "
                                        "server's answer) or why not")
    p.add_argument("--failed", action="store_true",
                   help="only those not sent: failed for good, without an address, or waiting for a retry")
    p.add_argument("--date", type=_day, default=None, help="one digest day, YYYY-MM-DD")
    p.add_argument("--limit", type=int, default=500)
    p.set_defaults(handler=cmd_mail_list)
    p = sub.add_parser("make-key", help="print a new payload encryption key for ICR_PAYLOAD_KEYS",
                       description="print a new AES-256 payload key as `ID:BASE64`; put it first in "
                                   "ICR_PAYLOAD_KEYS to encrypt with it, and keep the old ones listed after "
                                   "it so that older histories still decrypt")
    p.add_argument("--id", default=None, help="the key's id (default: k + today's date)")
    p.set_defaults(offline=cmd_make_key)

    p = sub.add_parser("generate-registry", help="write synthetic users.csv and certificates.csv of any size",
                       description="write synthetic users.csv and certificates.csv of any size (for load "
                                   "tests and rehearsals; touches no server)")
    p.add_argument("--certificates", type=_positive_int, required=True, help="how many certificates")
    p.add_argument("--out", type=Path, required=True, help="directory to write them into")
    p.add_argument("--seed", type=int, default=1, help="the same seed writes the same files (default 1)")
    p.add_argument("--prefix", type=int, choices=range(10), default=0,
                   help="fifth digit of the case references, to keep generated sets apart (default 0)")
    p.add_argument("--due-at", type=_timestamp, default=None,
                   help="make every certificate fall due from this ISO time (a burst)")
    p.add_argument("--due-within", type=_positive_float, default=60.0,
                   help="seconds after --due-at over which they fall due (default 60)")
    p.set_defaults(offline=cmd_generate_registry)


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
        p.add_argument("--effective-from", type=_timestamp, default=None, metavar="T",
                       help="when it takes effect, ISO 8601 with timezone (default now; at most a day back)")
        p.add_argument("--reason", "--note", dest="reason", required=True, help="why (the audit log keeps it)")
        p.add_argument("--actor", required=True, help="who is making the change (the audit log keeps it)")
        p.add_argument("--dry-run", action="store_true",
                       help="change nothing; print how many certificates would fall due, at once and week by week")
        p.add_argument("--weeks", type=_positive_int, default=12, help="weeks the dry run looks ahead (default 12)")
        p.add_argument("--rate", type=_positive_float, default=DEFAULT_RATE,
                       help=f"certificates told per second (default {DEFAULT_RATE:g})")

    policy = sub.add_parser("policy", help="the inactivity policy: its versions, and a new one",
                            description="the inactivity policy: its versions, and a new one")
    policy_sub = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = policy_sub.add_parser("show", help="the policy versions, the one in force marked",
                              description="the policy versions, the one in force marked")
    p.set_defaults(handler=cmd_policy_show)
    set_help = ("add a policy version (every period, from a date, with who and why) and tell every open "
                "certificate, oldest deadline first, at a rate; --dry-run first shows what would fall due")
    p = policy_sub.add_parser("set", help=set_help, description=set_help)
    policy_set_arguments(p)
    p.set_defaults(handler=cmd_policy_set)
    p = command("set-policy", cmd_policy_set, "the same as `policy set`")
    policy_set_arguments(p)

    outage = sub.add_parser("outage", help="declared CCMS outages", description="declared CCMS outages")
    outage_sub = outage.add_subparsers(dest="action", required=True, metavar="ACTION")
    declare_help = ("declare an outage window: response deadlines overlapping it move by the overlap, and "
                    "certificates falling due during it are notified when it ends")
    p = outage_sub.add_parser("declare", help=declare_help, description=declare_help)
    p.add_argument("--from", dest="starts_at", type=_timestamp, required=True, metavar="T",
                   help="when it began, ISO 8601 with timezone")
    p.add_argument("--to", dest="ends_at", type=_timestamp, required=True, metavar="T",
                   help="when it ended (or will end), ISO 8601 with timezone")
    p.add_argument("--reason", required=True, help="why (the audit log keeps it)")
    p.add_argument("--actor", required=True, help="who is declaring it (the audit log keeps it)")
    p.add_argument("--rate", type=_positive_float, default=DEFAULT_RATE,
                   help=f"certificates told per second (default {DEFAULT_RATE:g})")
    p.set_defaults(handler=cmd_outage_declare)
    p = outage_sub.add_parser("list", help="the declared outages", description="the declared outages")
    p.set_defaults(handler=cmd_outage_list)

    p = command("forecast", cmd_forecast, "how many open certificates fall due at once and in each coming "
                                          "week under the policy in force (from the registry and the ledger)")
    p.add_argument("--weeks", type=_positive_int, default=12, help="weeks to look ahead (default 12)")
    p.add_argument("--examples", type=int, default=3, help="certificates shown per line (default 3)")

    p = command("audit", cmd_audit, "who did what and when: the latest rows of the audit log")
    p.add_argument("--case", dest="case_reference", type=_case_reference, default=None,
                   help="only this certificate's rows")
    p.add_argument("--operators", action="store_true",
                   help="only rows with no certificate: policy versions, outages, roll-outs, imports of users")
    p.add_argument("--limit", type=_positive_int, default=50, help="how many of the latest rows (default 50)")

    rollout = sub.add_parser("rollout", help="roll-outs of policy versions and outages to open certificates",
                             description="roll-outs of policy versions and outages to open certificates")
    rollout_sub = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = rollout_sub.add_parser("list", help="every roll-out: who started it, when, and how far it got",
                               description="every roll-out: who started it, when, and how far it got")
    p.set_defaults(handler=cmd_rollout_list)
    p = rollout_sub.add_parser("resume", help="carry on an interrupted roll-out (no certificate is told twice)",
                               description="carry on an interrupted roll-out (no certificate is told twice)")
    p.add_argument("rollout_id", type=int, nargs="?", default=None, metavar="ID",
                   help="the roll-out (default: every unfinished one)")
    p.add_argument("--rate", type=_positive_float, default=None,
                   help="certificates told per second (default: the rate it was started with)")
    p.add_argument("--actor", default=os.environ.get("USER") or "operator",
                   help="who is resuming it (the audit log keeps it)")
    p.set_defaults(handler=cmd_rollout_resume)

    p = command("queue", cmd_queue, "the certificates waiting for the LAA, the longest waiting first, with "
                                    "each one's open task and the Web UI link to the same list")
    p.add_argument("--kind", choices=[k.value for k in TaskKind], help="one queue (default: every kind)")
    p.add_argument("--firm", help="provider firm id")
    p.add_argument("--limit", type=int, default=500)

    p = command("check", cmd_check, "compare each running certificate's status with the database (open "
                                    "notification, open task, deadline, recoupments); print each "
                                    "disagreement, exit 1 if there is any")
    p.add_argument("case_references", nargs="*", type=_case_reference, metavar="REF",
                   help="only these certificates (default: every running one)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds to wait before reporting a disagreement that a message in flight "
                        "may still resolve (default 5)")

    return parser


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    async with connected(settings) as runtime:
        return await args.handler(runtime, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_format, "info" if args.command == "demo" else "warning")
    try:
        if getattr(args, "offline", None):
            return int(args.offline(args))
        return asyncio.run(_run(args, settings))
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except ConfigurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (RPCError, RuntimeError, OSError, asyncpg.PostgresError) as err:
        # A server that cannot be reached or refuses: say so plainly, no traceback.
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM during a roll-out: it recorded how far it got
        return 143


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see worker.py: skip the SDK's fragile interpreter teardown

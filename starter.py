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
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
from temporalio.service import RPCError

from icr import importer, rules
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
from icr.engine import Runtime, connected
from icr.logs import configure_logging
from icr.models import (
    ActivityEvent,
    ActivityKind,
    CertificateStatus,
    CloseCertificateRequest,
    IcrStage,
    LaaDecisionRequest,
    ReassignContactRequest,
    RespondRequest,
    Response,
    TaskKind,
)
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


def _certificates(rt: Runtime) -> CertificateClient:
    return CertificateClient(rt.client, rt.settings.task_queue)


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
            report = await importer.import_certificates(rt.store, _certificates(rt), path, actor=actor,
                                                        now=_now())
        else:
            report = await importer.import_exercise_responses(rt.store, _certificates(rt), path, actor=actor,
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
        await _certificates(rt).record_activity(args.case_reference, event)
    except CertificateClosed as err:
        raise CliError(f"{err}; the event was not recorded") from None
    print(f"recorded {event.kind} {event.event_id} for {args.case_reference}")
    return 0


async def cmd_respond(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = _certificates(rt)
    await _status(certificates, args.case_reference)  # a clear error for an unknown certificate
    request = RespondRequest(user_login_id=args.user, response=args.response, message=args.message)
    try:
        result = await certificates.respond(args.case_reference, request)
    except MessageRefused as err:
        raise CliError(f"response refused: {err}") from None
    _print_json(result.model_dump(mode="json"))
    return 0


async def cmd_decide(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = _certificates(rt)
    request = LaaDecisionRequest(caseworker=args.caseworker, decision=args.decision, reason=args.reason,
                                 task_id=args.task_id)
    status = await _status(certificates, args.case_reference)  # a clear error for an unknown certificate
    if status.stage == IcrStage.CLOSED:
        raise CliError(f"decision refused: certificate {args.case_reference} is closed [certificate_closed]")
    try:
        result = await certificates.decide(args.case_reference, request)
    except MessageRefused as err:
        raise CliError(f"decision refused: {err}") from None
    _print_json(result.model_dump(mode="json"))
    return 0


async def cmd_reassign(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = _certificates(rt)
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
    certificates = _certificates(rt)
    status = await _status(certificates, args.case_reference)
    if status.stage == IcrStage.CLOSED:
        raise CliError(f"certificate {args.case_reference} is already closed")
    await certificates.close(args.case_reference,
                             CloseCertificateRequest(reason=args.reason, occurred_at=args.occurred_at or _now()))
    print(f"close sent for {args.case_reference}")
    return 0


async def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    status = await _status(_certificates(rt), args.case_reference)
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
    listed = sorted([c async for c in _certificates(rt).list_certificates(args.stage, args.firm, limit=args.limit)],
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
    listed = {c.case_reference: c async for c in _certificates(rt).list_queue(args.kind, args.firm,
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


async def cmd_set_policy(rt: Runtime, args: argparse.Namespace) -> int:
    if args.inactivity_days < 1:
        raise CliError("--inactivity-days must be at least 1", EXIT_USAGE)
    policy = await rt.store.add_policy_version(
        args.inactivity_days, args.effective_from or _now(), args.actor, args.note, _now())
    certificates = _certificates(rt)
    signalled = await certificates.signal_policy_changed(await certificates.running_by_deadline())
    print(f"policy version {policy.version}: {policy.inactivity_days} days from "
          f"{policy.effective_from.isoformat()}; {signalled} running certificate(s) told to recompute")
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
        ("users", "login_id, provider_firm_id, roles (;-separated), pre_silas (true/false)"),
        ("certificates", "case_reference, provider_firm_id, office_code, provider_contact_login, "
                         "granted_on, last_activity_at (optional), poa_paid, poa_recouped"),
        ("exercise-responses", "case_reference, response, reported_on"),
    ]:
        p = imp_sub.add_parser(kind, help=f"import {kind}", description=f"import {kind}; columns: {columns}")
        p.add_argument("file", type=Path, metavar="FILE")
        p.add_argument("--actor", default=os.environ.get("USER") or "operator",
                       help="who is importing (recorded in the audit log)")
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

    p = command("queue", cmd_queue, "the certificates waiting for the LAA, the longest waiting first, with "
                                    "each one's open task and the Web UI link to the same list")
    p.add_argument("--kind", choices=[k.value for k in TaskKind], help="one queue (default: every kind)")
    p.add_argument("--firm", help="provider firm id")
    p.add_argument("--limit", type=int, default=500)

    p = command("set-policy", cmd_set_policy, "add an inactivity policy version; running "
                                              "certificates recompute their deadlines")
    p.add_argument("--inactivity-days", type=int, required=True)
    p.add_argument("--effective-from", type=_timestamp, default=None, help="default now")
    p.add_argument("--note", default="")
    p.add_argument("--actor", default=os.environ.get("USER") or "operator")
    return parser


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    async with connected(settings) as runtime:
        return await args.handler(runtime, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_format, "info" if args.command == "demo" else "warning")
    try:
        return asyncio.run(_run(args, settings))
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except (RPCError, RuntimeError, OSError, asyncpg.PostgresError) as err:
        # A server that cannot be reached or refuses: say so plainly, no traceback.
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see worker.py: skip the SDK's fragile interpreter teardown

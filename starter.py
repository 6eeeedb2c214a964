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
from typing import Any

import asyncpg
from temporalio.service import RPCError

from icr import consistency, importer, rules
from icr.client import (
    CertificateClient,
    CertificateClosed,
    CertificateNotFound,
    MessageRefused,
    NoWorker,
    list_query,
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
    try:
        return await certificates.status(case_reference, rpc_timeout=QUERY_TIMEOUT)
    except CertificateNotFound as err:
        raise CliError(str(err)) from None
    except NoWorker as err:
        raise CliError(str(err), EXIT_UNAVAILABLE) from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


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
        raise CliError(refused.message) from None
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
    request = LaaDecisionRequest(caseworker=args.caseworker, decision=args.decision, reason=args.reason)
    status = await _status(certificates, args.case_reference)
    if status.open_task is None:
        raise CliError(f"certificate {args.case_reference} has no open LAA task to decide "
                       f"(stage {status.stage.value})")
    await certificates.decide(args.case_reference, request)
    print(f"decision {args.decision} sent for task {status.open_task.task_id} of {args.case_reference}")
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


async def cmd_list(rt: Runtime, args: argparse.Namespace) -> int:
    print(f"# {list_query(args.stage, args.firm)}")
    count = 0
    async for c in _certificates(rt).list_certificates(args.stage, args.firm, limit=args.limit):
        print(f"{c.case_reference:<14} {c.stage or '?':<17} firm {c.provider_firm_id or '-':<8} "
              f"deadline {c.inactivity_deadline or '-'}  due {c.response_due_date or '-'}")
        count += 1
    print(f"{count} certificate(s)")
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


async def cmd_check(rt: Runtime, args: argparse.Namespace) -> int:
    certificates = _certificates(rt)
    refs: list[str] = args.case_references or [
        c.case_reference async for c in certificates.list_certificates(running=True)]
    found = await consistency.check(certificates, rt.store, refs, settle=args.settle)
    for disagreement in found:
        print(disagreement)
    print(f"{len(refs)} certificate(s) checked; {len(found)} disagreement(s)")
    return EXIT_REFUSED if found else 0


async def cmd_demo(rt: Runtime, args: argparse.Namespace) -> int:
    from icr.demo import run_demo

    return await run_demo(rt, keep_running=not args.exit_after_seed)


# --- parsing -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--response", required=True, help=f"one of: {', '.join(r.value for r in Response)}")
    p.add_argument("--message", default=None, help="optional, at most 2,000 characters")

    p = command("decide", cmd_decide, "an LAA caseworker's decision on the open task")
    p.add_argument("case_reference", type=_case_reference)
    p.add_argument("--caseworker", required=True)
    p.add_argument("--decision", required=True, choices=["close", "keep_open"])
    p.add_argument("--reason", default="")

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

    p = command("check", cmd_check, "compare each running certificate's status with the database (open "
                                    "notification, open task, deadline, recoupments); print each "
                                    "disagreement, exit 1 if there is any")
    p.add_argument("case_references", nargs="*", type=_case_reference, metavar="REF",
                   help="only these certificates (default: every running one)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds to wait before reporting a disagreement that a message in flight "
                        "may still resolve (default 5)")

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

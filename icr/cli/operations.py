"""Running the engine: setup, demo, audit, mail list, make-key, check."""

from __future__ import annotations

import argparse
import json

from icr.adapters.db.outbox import Outbox
from icr.adapters.mail.mailer import outbox_lines
from icr.adapters.mail.sink import sink_folder, stored_messages
from icr.adapters.temporal.codec import PayloadKeyError, PayloadKeys
from icr.cli.common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    case_reference_arg,
    command,
    database_only,
    day_arg,
    now_utc,
    positive_int_arg,
)
from icr.runtime.engine import Runtime
from icr.runtime.mail import mailer_refusal
from icr.runtime.namespace import register_digest_schedule, register_search_attributes
from icr.services import consistency, operations
from workflows.digest import DIGEST_WORKFLOW_ID
from workflows.search_attributes import SEARCH_ATTRIBUTES, cli_type


async def cmd_setup(rt: Runtime, args: argparse.Namespace) -> int:
    namespace = rt.settings.temporal_namespace
    added = await register_search_attributes(rt.client, namespace)
    for name, key in SEARCH_ATTRIBUTES.items():
        print(f"search attribute {name} ({cli_type(key)}): {'registered' if name in added else 'already registered'}")
    created = await register_digest_schedule(rt.client, rt.settings.task_queue)
    print(f"schedule {DIGEST_WORKFLOW_ID} (task queue {rt.settings.task_queue}): "
          f"{'created' if created else 'already there'}")
    print(f"namespace {namespace} is ready: workers and commands now need no admin rights on it")
    return 0


async def cmd_demo(rt: Runtime, args: argparse.Namespace) -> int:
    from icr.cli.demo import run_demo

    return await run_demo(rt, keep_running=not args.exit_after_seed)


async def cmd_audit(rt: Runtime, args: argparse.Namespace) -> int:
    rows = await rt.store.recent_audit(args.limit, args.case_reference, operators_only=args.operators)
    for row in rows:
        print(f"{operations.uk(row.at)}  {row.actor:<16} {row.action:<24} "
              f"{row.case_reference or '-':<13} {json.dumps(row.detail, default=str)}")
    print(f"{len(rows)} audit row(s), oldest first")
    return 0


async def cmd_mail_list(rt: Runtime, args: argparse.Namespace) -> int:
    rows = await Outbox(rt.store.pool).rows(day=args.date, problems_only=args.failed, limit=args.limit)
    print("\n".join(outbox_lines(rows)) if rows else "no daily digests" + (" to show" if args.failed else ""))
    refusal = mailer_refusal(rt.settings)
    if refusal:
        print(f"# with these settings {refusal}")
    elif not rt.settings.smtp_host:
        folder = sink_folder(rt.settings.data_dir)
        print(f"# no ICR_SMTP_HOST: mail went to the local SMTP sink; {len(stored_messages(folder))} "
              f"message(s) in {folder}")
    return 0


def cmd_make_key(args: argparse.Namespace) -> int:
    key_id = args.id or f"k{now_utc():%Y%m%d}"
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


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands, each with its arguments."""

    setup_help = ("register the contract's search attributes and the daily digest's schedule in the namespace "
                  "(once, with admin rights; re-running it is harmless); workers and other commands only check")
    p = command(sub, "setup", cmd_setup, setup_help)
    p.set_defaults(uses_database=False, registers_namespace=True)

    p = command(sub, "demo", cmd_demo, "run the engine on the embedded servers with demo certificates "
                                       "in every stage, and keep a worker running until Ctrl-C")
    p.add_argument("--exit-after-seed", action="store_true", help="stop once the demo data is in")

    p = database_only(command(sub, "audit", cmd_audit, "who did what and when: the latest rows of the audit log"))
    p.add_argument("--case", dest="case_reference", type=case_reference_arg, default=None,
                   help="only this certificate's rows")
    p.add_argument("--operators", action="store_true",
                   help="only rows with no certificate: policy versions, outages, roll-outs, imports of users")
    p.add_argument("--limit", type=positive_int_arg, default=50, help="how many of the latest rows (default 50)")

    mail = sub.add_parser("mail", help="the daily digest e-mails", description="the daily digest e-mails")
    mail_sub = mail.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = mail_sub.add_parser("list", help="the outbox: who, which day, sent or why not",
                            description="the daily digest outbox: who, which day, sent (with the SMTP "
                                        "server's answer) or why not")
    p.add_argument("--failed", action="store_true",
                   help="only those not sent: failed for good, without an address, waiting for a retry, or "
                        "held while the mailer is off")
    p.add_argument("--date", type=day_arg, default=None, help="one digest day, YYYY-MM-DD")
    p.add_argument("--limit", type=int, default=500)
    database_only(p).set_defaults(handler=cmd_mail_list)
    p = sub.add_parser("make-key", help="print a new payload encryption key for ICR_PAYLOAD_KEYS",
                       description="print a new AES-256 payload key as `ID:BASE64`; put it first in "
                                   "ICR_PAYLOAD_KEYS to encrypt with it, and keep the old ones listed after "
                                   "it so that older histories still decrypt")
    p.add_argument("--id", default=None, help="the key's id (default: k + today's date)")
    p.set_defaults(offline=cmd_make_key)

    p = command(sub, "check", cmd_check, "compare each running certificate's status with the database (open "
                                         "notification, open task, deadline, recoupments); print each "
                                         "disagreement, exit 1 if there is any")
    p.add_argument("case_references", nargs="*", type=case_reference_arg, metavar="REF",
                   help="only these certificates (default: every running one)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds to wait before reporting a disagreement that a message in flight "
                        "may still resolve (default 5)")

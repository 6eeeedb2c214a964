"""Loading the registry: import users, certificates, exercise responses and caseworkers from CSV;
generate-registry writes synthetic files of any size."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from icr.adapters.temporal.client import (
    NoWorker,
)
from icr.cli.common import (
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    CliError,
    add_actor_argument,
    existing_file_arg,
    non_negative_int_arg,
    now_utc,
    positive_float_arg,
    positive_int_arg,
    timestamp_arg,
)
from icr.cli.progress import ProgressBar
from icr.runtime.engine import Runtime
from icr.services import importer


async def cmd_import(rt: Runtime, args: argparse.Namespace) -> int:
    path: Path = args.file
    actor: str = args.actor
    try:
        if args.kind == "users":
            report = await importer.import_users(rt.store, path, actor=actor, now=now_utc())
        elif args.kind == "certificates":
            bar = ProgressBar(label="certificates") if args.progress else None
            try:
                report = await importer.import_certificates(rt.store, rt.certificates, path, actor=actor,
                                                            now=now_utc(), concurrency=args.concurrency,
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
            report = await importer.import_caseworkers(rt.store, path, actor=actor, now=now_utc())
        else:
            report = await importer.import_exercise_responses(rt.store, rt.certificates, path, actor=actor,
                                                              now=now_utc())
    except importer.ImportFileError as err:
        raise CliError(str(err)) from None
    for error in report.refused:
        print(f"{path}: {error}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else EXIT_REFUSED


def cmd_generate_registry(args: argparse.Namespace) -> int:
    from icr.services.synthetic import generate_registry

    made = generate_registry(args.out, args.certificates, seed=args.seed, due_at=args.due_at,
                             due_within=args.due_within, prefix=args.prefix)
    print(f"{made.users}: {made.user_count} users of {made.firms} firms")
    print(f"{made.certificates}: {made.certificate_count} certificates")
    print(f"next: starter.py import users {made.users} && starter.py import certificates {made.certificates}")
    return 0


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands, each with its arguments."""

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
        p.add_argument("file", type=existing_file_arg, metavar="FILE")
        add_actor_argument(p, "importing")
        if kind == "certificates":
            p.add_argument("--concurrency", type=positive_int_arg, default=importer.CONCURRENCY,
                           help=f"rows written and workflows started at once (default {importer.CONCURRENCY})")
            p.add_argument("--max-backlog", type=non_negative_int_arg, default=importer.MAX_BACKLOG,
                           help="hold new starts while more workflow tasks than this wait for a worker, so "
                                "that live certificates are not queued behind the onboarding (default "
                                f"{importer.MAX_BACKLOG}; 0: never hold)")
            p.add_argument("--no-progress", dest="progress", action="store_false",
                           help="no progress bar on stderr")
        # Users and caseworkers live only in PostgreSQL; certificates and exercise responses start workflows.
        p.set_defaults(handler=cmd_import, kind=kind, uses_temporal=kind in ("certificates", "exercise-responses"))

    p = sub.add_parser("generate-registry", help="write synthetic users.csv and certificates.csv of any size",
                       description="write synthetic users.csv and certificates.csv of any size (for load "
                                   "tests and rehearsals; touches no server)")
    p.add_argument("--certificates", type=positive_int_arg, required=True, help="how many certificates")
    p.add_argument("--out", type=Path, required=True, help="directory to write them into")
    p.add_argument("--seed", type=int, default=1, help="the same seed writes the same files (default 1)")
    p.add_argument("--prefix", type=int, choices=range(10), default=0,
                   help="fifth digit of the case references, to keep generated sets apart (default 0)")
    p.add_argument("--due-at", type=timestamp_arg, default=None,
                   help="make every certificate fall due from this ISO time (a burst)")
    p.add_argument("--due-within", type=positive_float_arg, default=60.0,
                   help="seconds after --due-at over which they fall due (default 60)")
    p.set_defaults(offline=cmd_generate_registry)

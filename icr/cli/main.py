"""The operator's command line for the Inactive Case Review engine.

Uses TEMPORAL_ADDRESS / DATABASE_URL; with neither set (and ICR_ENVIRONMENT not production),
the embedded servers under the data directory (shared with a running `./run demo` or worker).
Each command says on stderr which servers it uses, and connects only to those it needs.
Every subcommand has --help, prints a clear error and exits non-zero on bad input.

The commands are grouped by what they act on, each group in its own module with its arguments
beside its handler: certificates, imports, policy (and outages, roll-outs), operations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg
from temporalio.service import RPCError, RPCStatusCode

from icr.cli import certificates, imports, operations, policy
from icr.cli.common import EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, CliError, Parser, actor_of
from icr.runtime.engine import UNREACHABLE_DATABASE, Runtime, ServerUnreachable, connected
from icr.runtime.logs import configure_logging
from icr.runtime.servers import announce_on_stderr, database_address
from icr.runtime.settings import ConfigurationError, Settings

GROUPS = (operations, certificates, imports, policy)

# Temporal's answers that mean it could not be reached (or did not answer in time), not "no".
_UNREACHABLE_RPC = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="starter.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.configure_parser(sub)
    return parser


def settings_or_error() -> Settings:
    """The settings from the environment (a bad one is a ConfigurationError naming its
    variable: exit 2), and the TLS files they name, which must exist."""
    settings = Settings.from_env()
    for variable, path in [("TEMPORAL_TLS_CA_CERT", settings.temporal_tls_ca_cert),
                           ("TEMPORAL_TLS_CLIENT_CERT", settings.temporal_tls_client_cert),
                           ("TEMPORAL_TLS_CLIENT_KEY", settings.temporal_tls_client_key)]:
        if path is not None and not path.is_file():
            raise CliError(f"bad setting: {variable}={str(path)!r}: no such file", EXIT_USAGE)
    return settings


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Each command connects only to the servers it uses (see common.database_only, setup).
    async with connected(settings, temporal=getattr(args, "uses_temporal", True),
                         database=getattr(args, "uses_database", True),
                         check_namespace=not getattr(args, "registers_namespace", False),
                         announce=announce_on_stderr(settings.temporal_namespace)) as runtime:
        try:
            return int(await args.handler(runtime, args))
        except RPCError as err:
            raise _rpc_error(runtime, err) from None
        except UNREACHABLE_DATABASE as err:
            raise CliError(str(ServerUnreachable("PostgreSQL", database_address(runtime.services.database_url or ""),
                                                 err)), EXIT_UNAVAILABLE) from None


def _rpc_error(runtime: Runtime, err: RPCError) -> CliError:
    address = runtime.services.temporal_address or "-"
    if err.status in _UNREACHABLE_RPC:
        return CliError(str(ServerUnreachable("the Temporal server", address, err)), EXIT_UNAVAILABLE)
    return CliError(f"the Temporal server at {address} refused: {err.status.name if err.status else '?'}: {err}",
                    EXIT_REFUSED)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_or_error()
        configure_logging(settings.log_format, "info" if args.command == "demo" else "warning")
        if getattr(args, "needs_actor", False):  # before anything connects: nothing is written without one
            args.actor = actor_of(args.actor)
        if getattr(args, "offline", None):
            return int(args.offline(args))
        return asyncio.run(_run(args, settings))
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except ConfigurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ServerUnreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidCatalogNameError) as err:
        # The server answered: the URL's user, password or database is wrong.
        print(f"error: bad setting: DATABASE_URL: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except asyncpg.PostgresError as err:
        print(f"error: the database refused: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except RPCError as err:  # while connecting, before a command ran
        print(f"error: the Temporal server refused: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE if err.status in _UNREACHABLE_RPC else EXIT_REFUSED
    except (RuntimeError, OSError) as err:
        # An embedded server that did not start (a port taken, its binary missing): no traceback.
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM during a roll-out: it recorded how far it got
        return 143


def run() -> None:
    """The console command (`icr`, and `python starter.py`): flush, then leave without running the
    interpreter's exit, which can abort after the Temporal SDK's threads (PyGILState_Release)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see worker.py: skip the SDK's fragile interpreter teardown

"""The operator's command line for the Inactive Case Review engine.

Uses TEMPORAL_ADDRESS / DATABASE_URL when set; otherwise the embedded servers under the
data directory (shared with a running `./run demo` or worker). Every subcommand has --help,
prints a clear error and exits non-zero on bad input.

The commands are grouped by what they act on, each group in its own module with its arguments
beside its handler: certificates, imports, policy (and outages, roll-outs), operations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg
from temporalio.service import RPCError

from icr.cli import certificates, imports, operations, policy
from icr.cli.common import EXIT_UNAVAILABLE, EXIT_USAGE, CliError, Parser
from icr.runtime.engine import connected
from icr.runtime.keyring import ConfigurationError
from icr.runtime.logs import configure_logging
from icr.runtime.settings import Settings

GROUPS = (operations, certificates, imports, policy)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="starter.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.configure_parser(sub)
    return parser


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    async with connected(settings) as runtime:
        return int(await args.handler(runtime, args))


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


def run() -> None:
    """The console command (`icr`, and `python starter.py`): flush, then leave without running the
    interpreter's exit, which can abort after the Temporal SDK's threads (PyGILState_Release)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see worker.py: skip the SDK's fragile interpreter teardown

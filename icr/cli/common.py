"""What every command group shares: exit codes, the error it prints, argument types, and the
small readers and printers more than one group uses."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from icr.adapters.temporal.client import (
    CertificateClient,
    CertificateNotFound,
    NoWorker,
    web_ui_link,
)
from icr.domain import rules
from icr.domain.models import (
    CertificateStatus,
    Response,
)
from icr.runtime.engine import Runtime

# The exit codes docs/operations.md documents: 1 the engine refused (or `check` found a
# disagreement), 2 bad input or a bad setting (nothing was written), 3 a server could not be
# reached (named by its address) or no worker polls the task queue.
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
ACTOR_VARIABLE = "ICR_ACTOR"
QUERY_TIMEOUT = timedelta(seconds=10)  # a query needs a running worker


class CliError(Exception):
    """Bad input or a refusal: printed as `error: ...`, exit non-zero."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code



def now_utc() -> datetime:
    return datetime.now(UTC)


def case_reference_arg(value: str) -> str:
    try:
        return rules.check_case_reference(value)
    except rules.Refused as refused:
        raise argparse.ArgumentTypeError(refused.message) from None


def firm_arg(value: str) -> str:
    # The registry's own check of a provider firm id (digits only): anything else matches nothing.
    if not re.fullmatch(r"[0-9]+", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a provider firm id (digits only, e.g. 26517)")
    return value


def existing_file_arg(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such file" if not path.exists() else f"{value}: not a file")
    return path


def add_actor_argument(p: argparse.ArgumentParser, what: str) -> None:
    """--actor on a command that writes: who does it, for the audit log. Without it the command
    takes ICR_ACTOR, and without either it refuses before it connects (see `actor_of`)."""
    p.add_argument("--actor", default=None, metavar="NAME",
                   help=f"who is {what}, as the audit log records it (default: ${ACTOR_VARIABLE}; "
                        "one of them is required)")
    p.set_defaults(needs_actor=True)


def actor_of(given: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The actor of a write: --actor, else ICR_ACTOR. Refused (exit 2) when neither names one,
    rather than audited under a made-up name."""
    actor = (given if given is not None else environ.get(ACTOR_VARIABLE, "")).strip()
    if not actor:
        raise CliError(f"who is doing this? pass --actor NAME or set {ACTOR_VARIABLE} (the audit log records "
                       "who made each change); nothing was written", EXIT_USAGE)
    return actor


def response_arg(value: str) -> str:
    values = [r.value for r in Response]
    if value not in values:
        raise argparse.ArgumentTypeError(f"{value!r} is not a response; use one of: {', '.join(values)}")
    return value


def message_arg(value: str) -> str:
    if len(value) > rules.MESSAGE_MAX_CHARS:
        raise argparse.ArgumentTypeError(f"message is {len(value)} characters; at most "
                                         f"{rules.MESSAGE_MAX_CHARS} are allowed")
    return value


def timestamp_arg(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time, e.g. 2026-05-17T09:30:00+01:00") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone; add one, e.g. +00:00")
    return parsed


def whole_number_arg(value: str, least: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < least:
        raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
    return number


def positive_int_arg(value: str) -> int:
    return whole_number_arg(value, 1)


def non_negative_int_arg(value: str) -> int:
    return whole_number_arg(value, 0)


def positive_float_arg(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0")
    return number


async def status_or_error(certificates: CertificateClient, case_reference: str) -> CertificateStatus:
    # Only a worker answers a query or an update: say so at once rather than time out.
    if not await certificates.worker_polling():
        raise CliError(str(NoWorker(certificates.task_queue)), EXIT_UNAVAILABLE)
    try:
        return await certificates.status(case_reference, rpc_timeout=QUERY_TIMEOUT)
    except CertificateNotFound as err:
        raise CliError(str(err)) from None
    except NoWorker as err:
        raise CliError(str(err), EXIT_UNAVAILABLE) from None


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def uk_or_dash(at: datetime | None) -> str:
    return rules.uk_time(at) if at is not None else "-"


def waited(since: datetime, now: datetime) -> str:
    """How long something has waited, to the minute: `3d 04h`, `2h 05m`, `7m`."""
    minutes = max(int((now - since).total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def ui_link(rt: Runtime, query: str) -> str | None:
    ui = rt.services.ui_url or rt.settings.temporal_ui_url
    return web_ui_link(ui, rt.settings.temporal_namespace, query) if ui else None


def usage_checked(check: Callable[[], None]) -> None:
    """A rules check of operator input: its refusal is a usage error, exit 2."""
    try:
        check()
    except rules.Refused as refused:
        raise CliError(refused.message, EXIT_USAGE) from None


def day_arg(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from None


class Parser(argparse.ArgumentParser):
    """Bad arguments, whichever the command: `error: ...` on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


Handler = Callable[[Runtime, argparse.Namespace], Awaitable[int]]


def command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler,
            help: str) -> argparse.ArgumentParser:
    """A subcommand that runs `handler` with the engine's runtime (its servers connected)."""
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler)
    return p


def database_only(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Mark a command that reads or writes PostgreSQL only: it never connects to Temporal, so it
    works while Temporal is down and with credentials that have no rights there."""
    p.set_defaults(uses_temporal=False)
    return p

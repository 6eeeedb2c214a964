"""Loading the registry from CSV files (`starter.py import ...`). See contract.md.

A file is UTF-8 CSV with a header row naming the contract's columns in any order (extra
columns are ignored; a missing required column refuses the whole file: ImportFileError).
Each row is checked completely before anything of it is written; a bad row is reported
(line, column, reason: one RowError per problem) and skipped, the good rows still import.
A key seen twice in one file refuses the later row. Writing goes through the Store's
upserts, which compare, write and audit in one transaction, so importing the same file
again changes nothing.

Certificates: each good row also makes sure its CertificateWorkflow runs (started with
REJECT_DUPLICATE, so a completed certificate is never reopened) and, when its workflow was
already running, signals `registration_updated`, changed or not: a run that committed a
change and died (or whose signal failed) before the signal reached the review leaves the
row unchanged for the next run, which must still tell the review. Reading the registry
again is harmless. A certificate closed in the registry is left exactly as it is: not
rewritten, not started.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg

from icr.adapters.db.store import Store, Upserted
from icr.adapters.mail.mailer import check_address
from icr.adapters.temporal.client import CertificateClient, NoWorker
from icr.domain.models import Caseworker, ExerciseResponse, Registration, Response, Role, User
from icr.domain.rules import FUTURE_TOLERANCE, UK, Refused, check_case_reference

USERS = "users"
CERTIFICATES = "certificates"
EXERCISE_RESPONSES = "exercise-responses"
CASEWORKERS = "caseworkers"

USER_COLUMNS = ("login_id", "provider_firm_id", "roles", "pre_silas")
USER_OPTIONAL = ("email",)
CERTIFICATE_COLUMNS = ("case_reference", "provider_firm_id", "office_code", "provider_contact_login",
                       "granted_on", "poa_paid", "poa_recouped")
CERTIFICATE_OPTIONAL = ("last_activity_at",)
EXERCISE_COLUMNS = ("case_reference", "response", "reported_on")
CASEWORKER_COLUMNS = ("caseworker_id", "active")

# Rows written (and workflows started) at once; the store's pool bounds the database side.
# Measured on the embedded default (benchmarks/): 32 keeps the dev server busy without
# queueing; more only adds latency.
CONCURRENCY = 32
# Workflow tasks allowed to wait for a worker before an import holds its next starts: about
# 15 s of work for one worker on two cores (BacklogGate).
MAX_BACKLOG = 500

FIRM_ID = re.compile(r"[0-9]{1,20}")
OFFICE_CODE = re.compile(r"[A-Za-z0-9]{6}")
LOGIN_ID = re.compile(r"[^\s]{1,100}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
AMOUNT = re.compile(r"[0-9]{1,12}\.[0-9]{2}")
ROW = "(row)"


class ImportFileError(Exception):
    """The whole file is refused (unreadable, not UTF-8, no header, a missing required column)."""


@dataclass
class RowError:
    line: int  # physical line in the file where the row starts; the header is line 1
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass
class ImportReport:
    kind: str  # "users" | "certificates" | "exercise-responses" | "caseworkers"
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: list[RowError] = field(default_factory=list)  # every problem; a row may have several
    workflows_started: int = 0
    workflows_signalled: int = 0
    # Certificates closed in the registry: counted as unchanged, neither rewritten nor started.
    closed: int = 0
    # Seconds new starts were held back while the workers worked through a backlog.
    held_seconds: float = 0.0

    @property
    def refused_rows(self) -> int:
        return len({e.line for e in self.refused})

    @property
    def ok(self) -> bool:
        return not self.refused

    def summary(self) -> str:
        text = (f"{self.kind}: {self.imported} imported, {self.updated} updated, "
                f"{self.unchanged} unchanged, {self.refused_rows} refused")
        if self.kind == CERTIFICATES:
            text += f"; {_plural(self.workflows_started, 'workflow')} started"
            if self.workflows_signalled:
                text += f", {self.workflows_signalled} signalled"
            if self.closed:
                text += f"; {_plural(self.closed, 'closed certificate')} left as they are"
            if self.held_seconds >= 1:
                text += f"; starts held back {self.held_seconds:.0f} s while the workers caught up"
        elif self.kind == EXERCISE_RESPONSES and self.workflows_signalled:
            text += f"; {_plural(self.workflows_signalled, 'workflow')} signalled"
        return text

    def count(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)


@dataclass
class ImportProgress:
    """How far an import has got, for a progress bar (icr.cli.progress.ProgressBar)."""

    done: int
    total: int
    per_second: float
    seconds_left: float | None
    finished: bool = False


ProgressListener = Callable[[ImportProgress], None]


# --- reading the file ------------------------------------------------------------------


@dataclass
class _Row:
    line: int
    values: dict[str, str]


def _read(path: Path, required: Iterable[str], optional: Iterable[str] = ()) -> tuple[list[_Row], list[RowError]]:
    """The file's data rows (known columns only, values stripped), and rows refused for
    their shape. Raises ImportFileError when the file as a whole cannot be used."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ImportFileError(f"{path}: cannot read the file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ImportFileError(f"{path}: not UTF-8 (line {line}, byte {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        if header is None:
            raise ImportFileError(f"{path}: the file is empty; expected a header row with "
                                  f"{', '.join(required)}")
        header_line = reader.line_num
        names = [h.strip().lower() for h in header]
        known = set(required) | set(optional)
        twice = sorted({n for n in names if n in known and names.count(n) > 1})
        if twice:
            raise ImportFileError(f"{path}: column {', '.join(twice)} appears more than once in the header")
        missing = [c for c in required if c not in names]
        if missing:
            raise ImportFileError(
                f"{path}: missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(the header has: {', '.join(n for n in names if n) or 'nothing'})")
        index = {n: i for i, n in enumerate(names) if n in known}
        rows: list[_Row] = []
        errors: list[RowError] = []
        last = reader.line_num
        for fields in reader:
            line, last = last + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) > len(names):
                errors.append(RowError(line, ROW, f"the row has {len(fields)} fields but the header "
                                                  f"(line {header_line}) has {len(names)}"))
                continue
            rows.append(_Row(line, {n: fields[i].strip() if i < len(fields) else "" for n, i in index.items()}))
    except csv.Error as e:
        raise ImportFileError(f"{path}: not readable as CSV at line {reader.line_num}: {e}") from None
    return rows, errors


# --- checking a row --------------------------------------------------------------------


class _Bad(Exception):
    pass


T = TypeVar("T")


class _Check:
    """Collects every problem of one row."""

    def __init__(self, row: _Row, errors: list[RowError]) -> None:
        self.row = row
        self.errors = errors
        self.bad = False

    def __call__(self, column: str, parse: Callable[[str], T], *, required: bool = True) -> T | None:
        value = self.row.values.get(column, "")
        if value == "":
            if required:
                self.fail(column, "is empty")
            return None
        try:
            return parse(value)
        except _Bad as e:
            self.fail(column, str(e))
            return None

    def fail(self, column: str, reason: str) -> None:
        self.bad = True
        self.errors.append(RowError(self.row.line, column, reason))

    def once(self, column: str, seen: dict[str, int]) -> None:
        """Refuse a key already used by an earlier row of the file."""
        key = self.row.values.get(column, "")
        if not key:
            return
        if key in seen:
            self.fail(column, f"duplicate {column} {key!r}: already on line {seen[key]}; "
                              "this later row is refused")
        else:
            seen[key] = self.row.line


def _case_reference(value: str) -> str:
    try:
        return check_case_reference(value)
    except Refused as refused:
        raise _Bad(refused.message) from None


def _firm_id(value: str) -> str:
    if not FIRM_ID.fullmatch(value):
        raise _Bad(f"provider firm id {value!r} is not valid: it must be digits, e.g. 26517")
    return value


def _login(value: str) -> str:
    if not LOGIN_ID.fullmatch(value):
        raise _Bad(f"login id {value[:100]!r} is not valid: at most 100 characters, no spaces")
    return value


def _caseworker_id(value: str) -> str:
    if not LOGIN_ID.fullmatch(value) or not value.isprintable():
        raise _Bad(f"caseworker id {value[:100]!r} is not valid: at most 100 characters, no spaces")
    return value


def _office_code(value: str) -> str:
    if not OFFICE_CODE.fullmatch(value):
        raise _Bad(f"office code {value!r} is not valid: 6 letters or digits, e.g. 2L847Q")
    return value.upper()


def _roles(value: str) -> list[str]:
    roles = [r.strip() for r in value.split(";") if r.strip()]
    accepted = [r.value for r in Role]
    unknown = [r for r in roles if r not in accepted]
    if unknown:
        raise _Bad(f"unknown role{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                   f"roles are {', '.join(accepted)}, separated by ';'")
    if not roles:
        raise _Bad(f"no role given: at least one of {', '.join(accepted)}")
    return sorted(set(roles))


def _email(value: str) -> str:
    try:
        return check_address(value)
    except ValueError as e:
        raise _Bad(str(e)) from None


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise _Bad(f"{value!r} is not true or false")
    return value.lower() == "true"


def _response(value: str) -> Response:
    try:
        return Response(value)
    except ValueError:
        raise _Bad(f"unknown response {value!r}: one of {', '.join(r.value for r in Response)}") from None


def _past_date(now: datetime) -> Callable[[str], date]:
    today = now.astimezone(UK).date()

    def parse(value: str) -> date:
        try:
            if not DATE.fullmatch(value):
                raise ValueError
            day = date.fromisoformat(value)
        except ValueError:
            raise _Bad(f"{value!r} is not a date YYYY-MM-DD, e.g. 2024-01-31") from None
        if day > today:
            raise _Bad(f"{value} is in the future (today is {today.isoformat()})")
        return day
    return parse


def _past_time(now: datetime) -> Callable[[str], datetime]:
    def parse(value: str) -> datetime:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad(f"{value!r} is not an ISO 8601 time with a timezone, "
                       "e.g. 2025-01-31T09:30:00+00:00") from None
        if at.tzinfo is None or at.utcoffset() is None:
            raise _Bad(f"{value!r} has no timezone: give one, e.g. 2025-01-31T09:30:00+00:00 "
                       "or 2025-01-31T09:30:00Z")
        if at > now + FUTURE_TOLERANCE:
            raise _Bad(f"{value} is in the future (now is {now.isoformat()})")
        return at
    return parse


def _amount(value: str) -> Decimal:
    if value.startswith("-") and AMOUNT.fullmatch(value[1:]):
        raise _Bad(f"{value} is negative: an amount is 0.00 or more")
    if not AMOUNT.fullmatch(value):
        raise _Bad(f"{value!r} is not an amount in pounds with exactly two decimals, e.g. 1500.00")
    return Decimal(value)


# --- the one import driver: read, check, write, report --------------------------------


@dataclass
class _Kind(Generic[T]):
    """What one kind of import supplies to the driver."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    key: str  # the column that identifies a row; a key seen twice refuses the later row
    check_row: Callable[[_Check], T | None]  # None when the row is bad (problems recorded)
    write: Callable[[T, ImportReport], Awaitable[Upserted]]
    # Checks that need the whole file (the user directory, read once): may refuse rows.
    check_file: Callable[[list[tuple[_Check, T]]], Awaitable[None]] | None = None


async def _import(kind: _Kind[T], path: Path, *, concurrency: int = CONCURRENCY,
                  on_progress: ProgressListener | None = None) -> ImportReport:
    report = ImportReport(kind.name)
    rows, report.refused = _read(path, kind.required, kind.optional)
    seen: dict[str, int] = {}
    checked: list[tuple[_Check, T]] = []
    for row in rows:
        check = _Check(row, report.refused)
        item = kind.check_row(check)
        check.once(kind.key, seen)
        if item is not None:
            checked.append((check, item))
    if kind.check_file is not None and checked:
        await kind.check_file(checked)
    good = [(check.row.line, item) for check, item in checked if not check.bad]

    async def write(entry: tuple[int, T]) -> None:
        line, item = entry
        try:
            result = await kind.write(item, report)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as e:
            # A row the database refuses after all is reported like any bad row; its write
            # was one transaction, so nothing of it is kept.
            report.refused.append(RowError(line, kind.key, f"the registry refused the row: {e}"))
            return
        report.count(result.status)

    await _bounded(good, write, concurrency, on_progress)
    report.refused.sort(key=lambda e: e.line)
    return report


async def _bounded(items: list[T], fn: Callable[[T], Awaitable[Any]], concurrency: int = CONCURRENCY,
                   on_progress: ProgressListener | None = None) -> None:
    """`fn` on every item, `concurrency` at a time: a fixed set of runners taking the next
    item, so memory stays flat however long the file is."""
    todo = iter(items)
    done = 0
    started = time.monotonic()
    failures: list[BaseException] = []

    def report(finished: bool = False) -> None:
        if on_progress is None:
            return
        elapsed = max(time.monotonic() - started, 1e-9)
        rate = done / elapsed
        left = (len(items) - done) / rate if rate > 0 else None
        on_progress(ImportProgress(done, len(items), rate, left, finished))

    async def runner() -> None:
        nonlocal done
        for item in todo:  # one shared iterator: each item is taken by exactly one runner
            try:
                await fn(item)
            except NoWorker as e:  # nothing works through the starts: the rest waits for a re-run
                failures.append(e)
                break
            except Exception as e:  # every row is tried; an unexpected failure is raised after all
                failures.append(e)
            done += 1
            report()

    await asyncio.gather(*(runner() for _ in range(max(1, min(concurrency, len(items))))))
    report(finished=True)
    if failures:
        raise failures[0]


# --- the three imports -----------------------------------------------------------------


@dataclass
class _UserRow:
    user: User
    # A file without the email column leaves addresses as they are; an empty value: none.
    keep_email: bool


def _user_row(check: _Check) -> _UserRow | None:
    login = check("login_id", _login)
    firm = check("provider_firm_id", _firm_id)
    roles = check("roles", _roles)
    pre_silas = check("pre_silas", _bool)
    email = check("email", _email, required=False)
    if login is None or firm is None or roles is None or pre_silas is None:
        return None
    return _UserRow(User(login_id=login, provider_firm_id=firm, roles=roles, pre_silas=pre_silas, email=email),
                    keep_email="email" not in check.row.values)


async def import_users(store: Store, path: Path, *, actor: str, now: datetime) -> ImportReport:
    async def write(row: _UserRow, report: ImportReport) -> Upserted:
        return await store.upsert_user(row.user, actor, now, keep_email=row.keep_email)

    return await _import(_Kind(USERS, USER_COLUMNS, USER_OPTIONAL, "login_id", _user_row, write), path)


@dataclass
class _Certificate:
    case_reference: str
    registration: Registration
    last_activity_at: datetime | None
    poa_paid: Decimal
    poa_recouped: Decimal


def _certificate_row(now: datetime) -> Callable[[_Check], _Certificate | None]:
    def check_row(check: _Check) -> _Certificate | None:
        ref = check("case_reference", _case_reference)
        firm = check("provider_firm_id", _firm_id)
        office = check("office_code", _office_code)
        contact = check("provider_contact_login", _login)
        granted_on = check("granted_on", _past_date(now))
        last_activity_at = check("last_activity_at", _past_time(now), required=False)
        paid = check("poa_paid", _amount)
        recouped = check("poa_recouped", _amount)
        if paid is not None and recouped is not None and recouped > paid:
            check.fail("poa_recouped", f"{recouped} recouped is more than the {paid} paid on account")
        if ref is None or firm is None or office is None or contact is None or granted_on is None \
                or paid is None or recouped is None:
            return None
        return _Certificate(ref, Registration(provider_firm_id=firm, office_code=office,
                                              provider_contact_login=contact, granted_on=granted_on),
                            last_activity_at, paid, recouped)
    return check_row


def _directory_check(store: Store) -> Callable[[list[tuple[_Check, _Certificate]]], Awaitable[None]]:
    """Each certificate's firm and provider contact must be in the user directory."""
    async def check_file(rows: list[tuple[_Check, _Certificate]]) -> None:
        firms = sorted({c.registration.provider_firm_id for _, c in rows})
        logins = sorted({c.registration.provider_contact_login for _, c in rows})
        known_firms = await store.firms_with_users(firms)
        users = {u.login_id: u for u in await store.load_users(logins)}
        for check, c in rows:
            firm, contact = c.registration.provider_firm_id, c.registration.provider_contact_login
            if firm not in known_firms:
                check.fail("provider_firm_id", f"unknown provider firm {firm}: no user of that firm is in "
                                               "the user directory (import its users first)")
            user = users.get(contact)
            if user is None:
                check.fail("provider_contact_login", f"provider contact {contact!r} is not in the user directory")
            elif user.provider_firm_id != firm:
                check.fail("provider_contact_login", f"provider contact {contact!r} is a user of firm "
                                                     f"{user.provider_firm_id}, not of firm {firm}")
    return check_file


class BacklogGate:
    """Holds new starts while more than `limit` workflow tasks wait for a worker.

    A start is cheap for the server and its first workflow task is not: unpaced, an import
    of 200,000 runs hours ahead of the workers, and every live certificate's task (a
    notification falling due, an event, a caseworker's decision) queues behind the whole
    onboarding. Held at `limit`, a live task waits behind at most `limit` others."""

    def __init__(self, backlog: Callable[[], Awaitable[int | None]], limit: int, *, task_queue: str,
                 worker_polling: Callable[[], Awaitable[bool]], every: float = 1.0,
                 patience: float = 60.0) -> None:
        self.backlog, self.limit, self.every, self.patience = backlog, limit, every, patience
        self.task_queue, self.worker_polling = task_queue, worker_polling
        self.held_seconds = 0.0
        self._checked = -float("inf")
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Returns once the backlog is at or below the limit. Raises NoWorker when it has been
        held for `patience` seconds and no worker polls: a backlog nobody works through."""
        if self.limit <= 0:
            return
        async with self._lock:  # one runner asks the server; the others wait for its answer
            held_since = None
            while time.monotonic() - self._checked >= self.every:
                waiting = await self.backlog()
                self._checked = time.monotonic()
                if waiting is None or waiting <= self.limit:
                    return
                held_since = held_since or self._checked
                if self._checked - held_since >= self.patience and not await self.worker_polling():
                    raise NoWorker(self.task_queue)
                await asyncio.sleep(self.every)
                self.held_seconds += time.monotonic() - self._checked


async def import_certificates(store: Store, certificates: CertificateClient, path: Path, *, actor: str,
                              now: datetime, concurrency: int = CONCURRENCY, max_backlog: int = MAX_BACKLOG,
                              on_progress: ProgressListener | None = None) -> ImportReport:
    """Resumable: a re-run after an interruption finds the rows already written unchanged and
    their workflows already running (one start refused by the server and one signal each),
    starts the workflows the interruption missed, tells every running one to read its row
    again, and duplicates nothing. Paced: new starts wait while
    more than `max_backlog` workflow tasks wait for a worker (0: unpaced)."""
    gate = BacklogGate(certificates.backlog, max_backlog, task_queue=certificates.task_queue,
                       worker_polling=certificates.worker_polling)

    async def write(c: _Certificate, report: ImportReport) -> Upserted:
        result = await store.upsert_certificate(c.case_reference, c.registration, c.last_activity_at,
                                                c.poa_paid, c.poa_recouped, actor, now)
        if result.status == "closed":  # counted as unchanged: neither rewritten nor started
            report.closed += 1
            return Upserted("unchanged")
        await gate.wait()
        if await certificates.start(c.case_reference, c.registration.provider_firm_id):
            report.workflows_started += 1  # it reads the registry itself on start
        elif await certificates.registration_updated(c.case_reference):  # even unchanged: see the module's doc
            report.workflows_signalled += 1
        return result

    kind = _Kind(CERTIFICATES, CERTIFICATE_COLUMNS, CERTIFICATE_OPTIONAL, "case_reference",
                 _certificate_row(now), write, check_file=_directory_check(store))
    report = await _import(kind, path, concurrency=concurrency, on_progress=on_progress)
    report.held_seconds = gate.held_seconds
    return report


async def import_exercise_responses(store: Store, certificates: CertificateClient | None, path: Path, *,
                                    actor: str, now: datetime) -> ImportReport:
    """No workflow is started here: a certificate's workflow reads its exercise response
    when it starts, and a running one is told to read it again, even when the row is
    unchanged (as for certificates: an earlier run may have died before telling it)."""
    def check_row(check: _Check) -> ExerciseResponse | None:
        ref = check("case_reference", _case_reference)
        response = check("response", _response)
        reported_on = check("reported_on", _past_date(now))
        if ref is None or response is None or reported_on is None:
            return None
        return ExerciseResponse(case_reference=ref, response=response, reported_on=reported_on)

    async def write(exercise: ExerciseResponse, report: ImportReport) -> Upserted:
        result = await store.upsert_exercise_response(exercise, actor, now)
        if certificates is not None and await certificates.registration_updated(exercise.case_reference):
            report.workflows_signalled += 1
        return result

    return await _import(_Kind(EXERCISE_RESPONSES, EXERCISE_COLUMNS, (), "case_reference", check_row, write), path)


def _caseworker_row(check: _Check) -> Caseworker | None:
    caseworker_id = check("caseworker_id", _caseworker_id)
    active = check("active", _bool)
    if caseworker_id is None or active is None:
        return None
    return Caseworker(caseworker_id=caseworker_id, active=active)


async def import_caseworkers(store: Store, path: Path, *, actor: str, now: datetime) -> ImportReport:
    """The LAA caseworker directory: a decision is taken only under an active caseworker's id.
    A caseworker who leaves is kept, marked `active` false, so their past decisions still name
    someone the directory knows."""
    async def write(caseworker: Caseworker, report: ImportReport) -> Upserted:
        return await store.upsert_caseworker(caseworker, actor, now)

    return await _import(_Kind(CASEWORKERS, CASEWORKER_COLUMNS, (), "caseworker_id", _caseworker_row, write),
                         path)

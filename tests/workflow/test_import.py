"""The CSV imports (`starter.py import ...`): row checks with line numbers, idempotence,
audit, and the certificate workflows an import starts (or must not start), on the real
servers of conftest.

Workflows are described with the raw DescribeWorkflowExecution call: `WorkflowHandle.describe()`
fails on the time-skipping test server, which keeps an unset Datetime search attribute as a
null payload that the SDK then tries to parse as a time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from icr.adapters.db.store import Store
from icr.adapters.temporal import client as client_module
from icr.adapters.temporal.client import TRANSIENT_RETRIES, CertificateClient
from icr.domain.models import (
    Caseworker,
    CertificateStatus,
    CloseCertificateRequest,
    ExerciseResponse,
    Registration,
    Response,
)
from icr.domain.rules import UK, workflow_id_for
from icr.services.importer import (
    ImportFileError,
    ImportReport,
    import_certificates,
    import_exercise_responses,
    import_users,
)
from tests.conftest import FIRM, OTHER_FIRM, Engine, add_user
from tests.faults import Faults
from tests.workflow_helpers import eventually

DAY = timedelta(days=1)
ACTOR = "ops-alice"
T = TypeVar("T")

CERT_HEADER = ("case_reference,provider_firm_id,office_code,provider_contact_login,granted_on,"
               "last_activity_at,poa_paid,poa_recouped")


def new_ref() -> str:
    """The time-skipping server is shared by the whole session: each test has its own certificates."""
    return f"3000{uuid.uuid4().int % 10**8:08d}"


async def certificate_ref(env: WorkflowEnvironment) -> AsyncIterator[str]:
    """A fresh case reference; its workflow, if any, is terminated afterwards so that no
    task of it is left in flight on the shared server (which would stall time skipping)."""
    ref = new_ref()
    yield ref
    try:
        await env.client.get_workflow_handle(workflow_id_for(ref)).terminate("test finished")
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:  # never started, or already closed
            raise


@pytest.fixture
async def ref_a(time_env: WorkflowEnvironment) -> AsyncIterator[str]:
    async for ref in certificate_ref(time_env):
        yield ref


@pytest.fixture
async def ref_b(time_env: WorkflowEnvironment) -> AsyncIterator[str]:
    async for ref in certificate_ref(time_env):
        yield ref


def csv_file(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def where(report: ImportReport) -> list[tuple[int, str]]:
    return [(e.line, e.column) for e in report.refused]


def reason(report: ImportReport, line: int, column: str) -> str:
    found = [e.reason for e in report.refused if (e.line, e.column) == (line, column)]
    assert found, f"no error at line {line}, column {column}: {[str(e) for e in report.refused]}"
    return found[0]


def handle(engine: Engine, ref: str) -> WorkflowHandle:
    return engine.client.get_workflow_handle(workflow_id_for(ref))


async def status(engine: Engine, ref: str) -> CertificateStatus:
    return await engine.certificates.status(ref)


async def loaded(engine: Engine, ref: str) -> CertificateStatus:
    """The status once the workflow has read the registry."""
    return await eventually(lambda: status(engine, ref), lambda s: s.inactivity_deadline is not None)


async def execution(engine: Engine, ref: str) -> tuple[str, int]:
    """(run id, status) of the certificate's workflow; raises RPCError NOT_FOUND when none."""
    response = await engine.client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace=engine.client.namespace,
                                         execution=WorkflowExecution(workflow_id=workflow_id_for(ref))))
    info = response.workflow_execution_info
    return info.execution.run_id, info.status


async def no_workflow(engine: Engine, ref: str) -> bool:
    try:
        await execution(engine, ref)
    except RPCError as e:
        return e.status == RPCStatusCode.NOT_FOUND
    return False


async def count(store: Store, sql: str, *args: object) -> int:
    return await store.pool.fetchval(sql, *args)


async def certificates(engine: Engine, path: Path, now: datetime, actor: str = ACTOR) -> ImportReport:
    return await import_certificates(engine.store, engine.certificates, path, actor=actor, now=now)


def cert_row(ref: str, last_activity_at: datetime | str | None, *, contact: str = "CASEWORKER1",
             firm: str = FIRM, granted_on: str = "2020-01-06", paid: str = "1500.00",
             recouped: str = "500.00") -> str:
    at = last_activity_at.isoformat() if isinstance(last_activity_at, datetime) else (last_activity_at or "")
    return f"{ref},{firm},2L847Q,{contact},{granted_on},{at},{paid},{recouped}"


async def directory(store: Store) -> None:
    await add_user(store, "CASEWORKER1", ["case_management"])
    await add_user(store, "CASEWORKER2", ["case_management", "cross_office"])
    await add_user(store, "OTHER1", ["case_management"], firm=OTHER_FIRM)


# --- users -----------------------------------------------------------------------------


async def test_users_good_rows_import_and_each_bad_row_is_reported(store: Store, tmp_path: Path) -> None:
    now = datetime.now(UK)
    path = csv_file(tmp_path, "users.csv", [
        "pre_silas,roles,login_id,note,provider_firm_id",              # 1: another order, extra column
        "false,case_management,CASEWORKER1,first,26517",               # 2 good
        "TRUE,case_management;cross_office,OLDUSER,pre-SiLAS,26517",   # 3 good
        "false,office_manager,MANAGER1,,26A17",                        # 4 malformed firm
        "false,case_management;judge,BAD2,,26517",                     # 5 unknown role
        "false,;,BAD3,,26517",                                         # 6 no role at all
        "yes,case_management,BAD4,,26517",                             # 7 not true/false
        "false,bill_preparation,CASEWORKER1,again,26517",              # 8 duplicate login
        "false,case_management,,,26517",                               # 9 no login id
        "",                                                            # 10 blank: skipped
        "false,case_management,OTHER1,,40001",                         # 11 good
        "false,case_management,BAD5,,",                                # 12 no firm
    ])
    report = await import_users(store, path, actor=ACTOR, now=now)

    assert (report.imported, report.updated, report.unchanged, report.refused_rows) == (3, 0, 0, 7)
    assert not report.ok
    assert where(report) == [(4, "provider_firm_id"), (5, "roles"), (6, "roles"), (7, "pre_silas"),
                             (8, "login_id"), (9, "login_id"), (12, "provider_firm_id")]
    assert "26A17" in reason(report, 4, "provider_firm_id")
    assert "'judge'" in reason(report, 5, "roles")
    assert "no role" in reason(report, 6, "roles")
    assert "true or false" in reason(report, 7, "pre_silas")
    assert "already on line 2" in reason(report, 8, "login_id")
    assert reason(report, 12, "provider_firm_id") == "is empty"
    assert str(report.refused[0]).startswith("line 4, column provider_firm_id: ")
    assert report.summary() == "users: 3 imported, 0 updated, 0 unchanged, 7 refused"

    rows = await store.pool.fetch("SELECT * FROM users ORDER BY login_id")
    assert [(r["login_id"], r["provider_firm_id"], list(r["roles"]), r["pre_silas"]) for r in rows] == [
        ("CASEWORKER1", "26517", ["case_management"], False),
        ("OLDUSER", "26517", ["case_management", "cross_office"], True),
        ("OTHER1", "40001", ["case_management"], False),
    ]
    assert await count(store, "SELECT count(*) FROM audit_log") == 3

    again = await import_users(store, path, actor=ACTOR, now=now + timedelta(minutes=1))
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 3)
    assert await count(store, "SELECT count(*) FROM audit_log") == 3


@pytest.mark.parametrize("kind, header", [
    ("users", "login_id,provider_firm_id,pre_silas"),
    ("certificates", "case_reference,provider_firm_id,office_code,provider_contact_login,granted_on,poa_paid"),
    ("exercise-responses", "case_reference,reported_on"),
])
async def test_a_missing_required_column_refuses_the_whole_file(
        engine: Engine, tmp_path: Path, kind: str, header: str, ref_a: str,
) -> None:
    now = await engine.now()
    await directory(engine.store)
    before = await count(engine.store, "SELECT count(*) FROM audit_log")
    rows = {"users": "NEW1,26517,false",
            "certificates": f"{ref_a},26517,2L847Q,CASEWORKER1,2020-01-06,1500.00",
            "exercise-responses": f"{ref_a},2024-01-15"}
    path = csv_file(tmp_path, "bad.csv", [header, rows[kind]])
    missing = {"users": "roles", "certificates": "poa_recouped", "exercise-responses": "response"}[kind]
    with pytest.raises(ImportFileError, match=f"missing required column {missing} ") as refused:
        if kind == "users":
            await import_users(engine.store, path, actor=ACTOR, now=now)
        elif kind == "certificates":
            await certificates(engine, path, now)
        else:
            await import_exercise_responses(engine.store, engine.certificates, path, actor=ACTOR, now=now)
    assert str(path) in str(refused.value)
    assert await count(engine.store, "SELECT count(*) FROM audit_log") == before
    assert await count(engine.store, "SELECT count(*) FROM users WHERE login_id = 'NEW1'") == 0
    assert await count(engine.store, "SELECT count(*) FROM certificates") == 0
    assert await count(engine.store, "SELECT count(*) FROM exercise_responses") == 0
    assert await no_workflow(engine, ref_a)


async def test_unreadable_files_and_misshapen_rows(store: Store, tmp_path: Path) -> None:
    now = datetime.now(UK)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("login_id,provider_firm_id,roles,pre_silas\nJOS\xc9,26517,case_management,false\n"
                       .encode("latin-1"))
    with pytest.raises(ImportFileError, match="not UTF-8 \\(line 2"):
        await import_users(store, latin1, actor=ACTOR, now=now)
    empty = csv_file(tmp_path, "empty.csv", [""])
    with pytest.raises(ImportFileError, match="empty"):
        await import_users(store, empty, actor=ACTOR, now=now)
    with pytest.raises(ImportFileError, match="cannot read"):
        await import_users(store, tmp_path / "nowhere.csv", actor=ACTOR, now=now)

    bom = tmp_path / "bom.csv"
    bom.write_text("\ufefflogin_id,provider_firm_id,roles,pre_silas\n"
                   "CASEWORKER1,26517,case_management,false\n"
                   "CASEWORKER2,26517,case_management,false,surplus\n"
                   '"QUOTED\nLOGIN",26517,case_management,false\n'
                   "CASEWORKER3,26517,case_management,false\n", encoding="utf-8")
    report = await import_users(store, bom, actor=ACTOR, now=now)
    assert report.imported == 2
    # A quoted field across two physical lines: the row starts on line 4, the next on line 6.
    assert where(report) == [(3, "(row)"), (4, "login_id")]
    assert "5 fields" in reason(report, 3, "(row)")
    assert await count(store, "SELECT count(*) FROM users") == 2
    assert await count(store, "SELECT count(*) FROM users WHERE login_id = 'CASEWORKER3'") == 1


# --- certificates ----------------------------------------------------------------------


async def test_certificates_good_rows_import_and_each_bad_row_is_reported(
        engine: Engine, tmp_path: Path, ref_a: str, ref_b: str,
) -> None:
    now = await engine.now()
    await directory(engine.store)
    recent = now - 100 * DAY
    tomorrow = (now.astimezone(UK) + 2 * DAY).date().isoformat()
    base = new_ref()[:10]
    refs = {line: f"{base}{line:02d}" for line in range(3, 17)}
    path = csv_file(tmp_path, "certificates.csv", [
        # 1: the contract's columns in another order, and an extra one
        "provider_contact_login,comment,poa_recouped,granted_on,case_reference,office_code,poa_paid,"
        "provider_firm_id,last_activity_at",
        f"CASEWORKER1,good,500.00,2020-01-06,{ref_a},2L847Q,1500.00,26517,{recent.isoformat()}",        # 2
        "CASEWORKER1,,0.00,2020-01-06,30000141614,2L847Q,0.00,26517,",                                 # 3
        "CASEWORKER1,,0.00,2020-01-06,400001416143,2L847Q,0.00,26517,",                                # 4
        f"CASEWORKER1,,0.00,2020-01-06,{refs[5]},2L847Q,0.00,26x17,",                                  # 5
        f"CASEWORKER1,,0.00,2020-01-06,{refs[6]},2L847Q,0.00,99999,",                                  # 6
        f"CASEWORKER1,,0.00,2020-13-01,{refs[7]},2L847Q,0.00,26517,",                                  # 7
        f"CASEWORKER1,,0.00,{tomorrow},{refs[8]},2L847Q,0.00,26517,",                                  # 8
        f"CASEWORKER1,,0.00,2020-01-06,{refs[9]},2L847Q,0.00,26517,2025-01-01T10:00:00",               # 9
        f"CASEWORKER1,,0.00,2020-01-06,{refs[10]},2L847Q,0.00,26517,{(now + DAY).isoformat()}",        # 10
        f"CASEWORKER1,,0.00,2020-01-06,{refs[11]},2L847Q,-1.00,26517,",                                # 11
        f"CASEWORKER1,,0.00,2020-01-06,{refs[12]},2L847Q,1500,26517,",                                 # 12
        f"CASEWORKER1,,200.00,2020-01-06,{refs[13]},2L847Q,100.00,26517,",                             # 13
        f"OTHER1,,0.00,2020-01-06,{refs[14]},2L847Q,0.00,26517,",                                      # 14
        f"NOBODY,,0.00,2020-01-06,{refs[15]},2L847Q,0.00,26517,",                                      # 15
        f"CASEWORKER2,dup,0.00,2021-02-02,{ref_a},2L847Q,0.00,26517,",                                 # 16
        f"CASEWORKER2,no activity yet,0.00,2020-03-09,{ref_b},2l847q,250.00,26517,",                   # 17
        f"CASEWORKER1,,0.00,2020-01-06,{refs[16]},2L847,0.00,26517,",                                  # 18
    ])
    report = await certificates(engine, path, now)

    assert (report.imported, report.updated, report.unchanged, report.refused_rows) == (2, 0, 0, 15)
    assert report.workflows_started == 2
    assert report.summary() == "certificates: 2 imported, 0 updated, 0 unchanged, 15 refused; 2 workflows started"
    assert where(report) == [
        (3, "case_reference"), (4, "case_reference"), (5, "provider_firm_id"), (6, "provider_firm_id"),
        (6, "provider_contact_login"), (7, "granted_on"), (8, "granted_on"), (9, "last_activity_at"),
        (10, "last_activity_at"), (11, "poa_paid"), (12, "poa_paid"), (13, "poa_recouped"),
        (14, "provider_contact_login"), (15, "provider_contact_login"), (16, "case_reference"),
        (18, "office_code")]
    assert "12 digits starting 3000" in reason(report, 3, "case_reference")
    assert "400001416143" in reason(report, 4, "case_reference")
    assert "must be digits" in reason(report, 5, "provider_firm_id")
    assert "unknown provider firm 99999" in reason(report, 6, "provider_firm_id")
    assert "YYYY-MM-DD" in reason(report, 7, "granted_on")
    assert "in the future" in reason(report, 8, "granted_on")
    assert "no timezone" in reason(report, 9, "last_activity_at")
    assert "in the future" in reason(report, 10, "last_activity_at")
    assert "negative" in reason(report, 11, "poa_paid")
    assert "two decimals" in reason(report, 12, "poa_paid")
    assert "more than" in reason(report, 13, "poa_recouped")
    assert "firm 40001, not of firm 26517" in reason(report, 14, "provider_contact_login")
    assert "not in the user directory" in reason(report, 15, "provider_contact_login")
    assert "already on line 2" in reason(report, 16, "case_reference")
    assert str(report.refused[-1]).startswith("line 18, column office_code: ")

    rows = {r["case_reference"]: r for r in await engine.store.pool.fetch("SELECT * FROM certificates")}
    assert sorted(rows) == sorted([ref_a, ref_b])
    a, b = rows[ref_a], rows[ref_b]
    assert (a["provider_contact_login"], a["granted_on"].isoformat(), a["last_activity_at"], str(a["poa_paid"]),
            str(a["poa_recouped"])) == ("CASEWORKER1", "2020-01-06", recent, "1500.00", "500.00")
    assert (b["provider_contact_login"], b["office_code"], b["last_activity_at"], str(b["poa_paid"])) == (
        "CASEWORKER2", "2L847Q", None, "250.00")
    audited = await engine.store.pool.fetch("SELECT * FROM audit_log WHERE case_reference IS NOT NULL")
    assert sorted((r["case_reference"], r["actor"], r["action"]) for r in audited) == sorted([
        (ref_a, ACTOR, "certificate_imported"), (ref_b, ACTOR, "certificate_imported")])
    for ref in refs.values():
        assert await no_workflow(engine, ref)
    a_status = await loaded(engine, ref_a)
    assert a_status.registered and a_status.stage == "Active"
    # No activity recorded: the clock ran from the 2020 grant date, so it fell due at once.
    b_status = await eventually(lambda: status(engine, ref_b), lambda s: s.stage == "AwaitingResponse")
    assert b_status.last_activity_at is None and b_status.provider_contact_login == "CASEWORKER2"


async def test_the_same_files_twice_change_nothing_and_start_nothing_twice(
        engine: Engine, tmp_path: Path, ref_a: str, ref_b: str,
) -> None:
    now = await engine.now()
    users = csv_file(tmp_path, "users.csv", [
        "login_id,provider_firm_id,roles,pre_silas",
        "CASEWORKER1,26517,case_management,false",
        "MANAGER1,26517,office_manager;bill_supervisor,false",
    ])
    # No last_activity_at column at all: it is optional.
    certs = csv_file(tmp_path, "certificates.csv", [
        "case_reference,provider_firm_id,office_code,provider_contact_login,granted_on,poa_paid,poa_recouped",
        f"{ref_a},26517,2L847Q,CASEWORKER1,2020-01-06,1500.00,0.00",
        f"{ref_b},26517,2L847Q,CASEWORKER1,2021-06-30,0.00,0.00",
    ])
    first_users = await import_users(engine.store, users, actor=ACTOR, now=now)
    first = await certificates(engine, certs, now)
    assert (first_users.imported, first.imported, first.workflows_started) == (2, 2, 2)
    for ref in (ref_a, ref_b):
        # Neither has a last activity: both fall due at once, and raise their notification
        # (audited) before the audit log is counted.
        await eventually(lambda r=ref: status(engine, r), lambda s: s.stage == "AwaitingResponse")
    runs = {ref: await execution(engine, ref) for ref in (ref_a, ref_b)}
    audits = await count(engine.store, "SELECT count(*) FROM audit_log")

    later = now + timedelta(minutes=5)
    again_users = await import_users(engine.store, users, actor="ops-bob", now=later)
    again = await certificates(engine, certs, later, actor="ops-bob")
    assert (again_users.imported, again_users.updated, again_users.unchanged, again_users.refused) == (0, 0, 2, [])
    assert (again.imported, again.updated, again.unchanged, again.refused) == (0, 0, 2, [])
    # Each running review is told again to read its row: an earlier run may have died between
    # committing a change and telling the review.
    assert (again.workflows_started, again.workflows_signalled) == (0, 2)
    assert again.ok
    assert again.summary() == ("certificates: 0 imported, 0 updated, 2 unchanged, 0 refused; "
                               "0 workflows started, 2 signalled")
    assert await count(engine.store, "SELECT count(*) FROM audit_log") == audits
    for ref in (ref_a, ref_b):
        run_id, state = await execution(engine, ref)
        assert (run_id, state) == runs[ref]
        assert state == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING


async def test_an_updated_row_updates_audits_and_tells_the_running_workflow(
        engine: Engine, tmp_path: Path, ref_a: str,
) -> None:
    now = await engine.now()
    await directory(engine.store)
    last = now - 30 * DAY
    first = await certificates(engine, csv_file(tmp_path, "v1.csv", [CERT_HEADER, cert_row(ref_a, last)]), now)
    assert (first.imported, first.workflows_started) == (1, 1)
    assert (await loaded(engine, ref_a)).provider_contact_login == "CASEWORKER1"
    run = await execution(engine, ref_a)

    later = now + timedelta(hours=2)
    v2 = csv_file(tmp_path, "v2.csv", [CERT_HEADER, cert_row(ref_a, last, contact="CASEWORKER2",
                                                              paid="2000.00", recouped="750.00")])
    report = await certificates(engine, v2, later, actor="ops-bob")
    assert (report.imported, report.updated, report.unchanged, report.refused) == (0, 1, 0, [])
    assert (report.workflows_started, report.workflows_signalled) == (0, 1)
    row = await engine.store.certificate_row(ref_a)
    assert (row.provider_contact_login, str(row.poa_paid), str(row.poa_recouped)) == (
        "CASEWORKER2", "2000.00", "750.00")
    updates = [r for r in await engine.store.audit_of(ref_a) if r.action == "certificate_updated"]
    assert len(updates) == 1
    assert (updates[0].actor, updates[0].at) == ("ops-bob", later)
    assert updates[0].detail["provider_contact_login"]["to"] == "CASEWORKER2"
    assert updates[0].detail["poa_paid"]["to"] == "2000.00"
    # The signal makes the same run read the registry again.
    await eventually(lambda: status(engine, ref_a), lambda s: s.provider_contact_login == "CASEWORKER2")
    assert await execution(engine, ref_a) == run

    again = await certificates(engine, v2, later + DAY, actor="ops-bob")
    assert (again.unchanged, again.workflows_signalled) == (1, 1)
    assert len([r for r in await engine.store.audit_of(ref_a) if r.action == "certificate_updated"]) == 1


@pytest.mark.parametrize("lost", ["signal_failed", "died_after_commit"])
async def test_a_re_run_reaches_the_review_an_interrupted_import_did_not_tell(
        engine: Engine, tmp_path: Path, ref_a: str, lost: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = await engine.now()
    await directory(engine.store)
    last = now - 30 * DAY
    await certificates(engine, csv_file(tmp_path, "v1.csv", [CERT_HEADER, cert_row(ref_a, last)]), now)
    assert (await loaded(engine, ref_a)).provider_contact_login == "CASEWORKER1"
    v2 = csv_file(tmp_path, "v2.csv", [CERT_HEADER, cert_row(ref_a, last, contact="CASEWORKER2")])
    later = now + timedelta(hours=2)
    if lost == "signal_failed":
        # The row is committed, then every attempt to signal the review meets a busy server.
        monkeypatch.setattr(client_module, "TRANSIENT_PAUSE", 0.0)
        faults = Faults()
        faults.fail("signal", RPCStatusCode.UNAVAILABLE, times=TRANSIENT_RETRIES + 1)
        with pytest.raises(RPCError):
            await import_certificates(engine.store, CertificateClient(faults.client(engine.client),
                                                                      engine.task_queue),
                                      v2, actor=ACTOR, now=later)
    else:
        # The process died between the row's commit and its signal.
        [row] = v2.read_text().splitlines()[1:]
        ref, firm, office, contact, granted_on, _, paid, recouped = row.split(",")
        await engine.store.upsert_certificate(
            ref, Registration(provider_firm_id=firm, office_code=office, provider_contact_login=contact,
                              granted_on=date.fromisoformat(granted_on)),
            last, Decimal(paid), Decimal(recouped), ACTOR, later)
    assert (await engine.store.certificate_row(ref_a)).provider_contact_login == "CASEWORKER2"
    assert (await status(engine, ref_a)).provider_contact_login == "CASEWORKER1"  # not told

    # The operator re-runs the import, as the failed one advised: the row is unchanged now,
    # and the review is still told.
    again = await certificates(engine, v2, later + timedelta(minutes=5))
    assert (again.unchanged, again.workflows_started, again.workflows_signalled, again.refused) == (1, 0, 1, [])
    await eventually(lambda: status(engine, ref_a), lambda s: s.provider_contact_login == "CASEWORKER2")


async def test_a_re_run_reaches_the_review_an_interrupted_exercise_import_did_not_tell(
        engine: Engine, tmp_path: Path, ref_a: str,
) -> None:
    now = await engine.now()
    await directory(engine.store)
    # Due at once: a notification is open, which the exercise response answers when read.
    await certificates(engine, csv_file(tmp_path, "c.csv", [CERT_HEADER, cert_row(ref_a, now - 608 * DAY)]), now)
    await eventually(lambda: status(engine, ref_a), lambda s: s.stage == "AwaitingResponse")
    exercise = ExerciseResponse(case_reference=ref_a, response=Response.COMPLETE_TO_BE_BILLED,
                                reported_on=date(2024, 1, 15))
    # The process died between the row's commit and its signal.
    assert (await engine.store.upsert_exercise_response(exercise, ACTOR, now)).status == "imported"
    assert (await status(engine, ref_a)).open_notification is not None  # not told
    path = csv_file(tmp_path, "exercise.csv", ["case_reference,response,reported_on",
                                               f"{ref_a},complete_to_be_billed,2024-01-15"])
    again = await import_exercise_responses(engine.store, engine.certificates, path, actor=ACTOR, now=now)
    assert (again.unchanged, again.workflows_signalled) == (1, 1)
    s = await eventually(lambda: status(engine, ref_a), lambda s: s.open_notification is None)
    assert s.on_exercise_list and s.stage == "LaaReview"


async def test_an_imported_certificate_falls_due_from_its_last_activity(
        engine: Engine, tmp_path: Path, ref_a: str,
) -> None:
    now = await engine.now()
    await directory(engine.store)
    last = now - 607 * DAY
    report = await certificates(engine, csv_file(tmp_path, "c.csv", [CERT_HEADER, cert_row(ref_a, last)]), now)
    assert report.workflows_started == 1
    s = await loaded(engine, ref_a)
    assert s.stage == "Active"
    assert s.last_activity_at == last
    assert s.inactivity_deadline == last + 608 * DAY
    assert await engine.store.notifications_of(ref_a) == []

    await engine.env.sleep(timedelta(days=1, minutes=1))
    s = await eventually(lambda: status(engine, ref_a), lambda s: s.stage == "AwaitingResponse")
    assert s.open_notification is not None and s.open_notification.assigned_to == "CASEWORKER1"
    notifications = await engine.store.notifications_of(ref_a)
    assert [(n.assigned_to, n.is_open) for n in notifications] == [("CASEWORKER1", True)]


async def test_a_closed_certificate_is_not_restarted_or_rewritten(
        engine: Engine, tmp_path: Path, ref_a: str,
) -> None:
    now = await engine.now()
    await directory(engine.store)
    path = csv_file(tmp_path, "c.csv", [CERT_HEADER, cert_row(ref_a, now - 10 * DAY)])
    assert (await certificates(engine, path, now)).workflows_started == 1
    await loaded(engine, ref_a)
    h = engine.client.get_workflow_handle(workflow_id_for(ref_a), result_type=CertificateStatus)
    await engine.certificates.close(ref_a, CloseCertificateRequest(reason="discharged", occurred_at=now))
    result = await h.result()
    assert result.stage == "Closed"
    run_id, state = await execution(engine, ref_a)
    assert state == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED
    assert (await engine.store.certificate_row(ref_a)).closed_at is not None
    audits = await count(engine.store, "SELECT count(*) FROM audit_log")

    # The same file, and a file with new payment figures: neither reopens nor rewrites it.
    again = await certificates(engine, path, now + DAY)
    changed = await certificates(engine, csv_file(tmp_path, "c2.csv", [
        CERT_HEADER, cert_row(ref_a, now - 10 * DAY, paid="9000.00")]), now + DAY)
    for report in (again, changed):
        assert (report.imported, report.updated, report.unchanged, report.closed) == (0, 0, 1, 1)
        assert (report.workflows_started, report.workflows_signalled) == (0, 0)
        assert report.ok and report.summary().endswith("; 1 closed certificate left as they are")
    assert str((await engine.store.certificate_row(ref_a)).poa_paid) == "1500.00"
    assert await count(engine.store, "SELECT count(*) FROM audit_log") == audits
    assert await execution(engine, ref_a) == (run_id, state)

    # Even if the registry had lost the closure, the server refuses to reuse a completed
    # workflow's id (REJECT_DUPLICATE): the row is written, no workflow is started.
    await engine.store.pool.execute("UPDATE certificates SET closed_at = NULL WHERE case_reference = $1", ref_a)
    lost = await certificates(engine, path, now + 2 * DAY)
    assert (lost.unchanged, lost.closed, lost.workflows_started, lost.workflows_signalled) == (1, 0, 0, 0)
    assert await execution(engine, ref_a) == (run_id, state)


async def test_a_certificate_closed_in_the_registry_gets_no_workflow(
        engine: Engine, tmp_path: Path, ref_a: str, ref_b: str,
) -> None:
    now = await engine.now()
    await directory(engine.store)
    path = csv_file(tmp_path, "c.csv", [CERT_HEADER, cert_row(ref_a, None), cert_row(ref_b, None)])
    # The registry row exists, already closed, before any workflow does.
    await engine.store.pool.execute(
        """INSERT INTO certificates (case_reference, provider_firm_id, office_code, provider_contact_login,
               granted_on, closed_at, closed_reason)
           VALUES ($1, '26517', '2L847Q', 'CASEWORKER1', '2020-01-06', $2, 'discharged')""", ref_a, now - DAY)
    report = await certificates(engine, path, now)
    assert (report.imported, report.unchanged, report.closed, report.workflows_started) == (1, 1, 1, 1)
    assert await no_workflow(engine, ref_a)
    assert not await no_workflow(engine, ref_b)


# --- exercise responses ----------------------------------------------------------------


async def test_exercise_responses(engine: Engine, tmp_path: Path, ref_a: str, ref_b: str) -> None:
    now = await engine.now()
    await directory(engine.store)
    await certificates(engine, csv_file(tmp_path, "c.csv", [CERT_HEADER, cert_row(ref_a, now - DAY)]), now)
    await loaded(engine, ref_a)
    run = await execution(engine, ref_a)
    future = (now.astimezone(UK) + 2 * DAY).date().isoformat()
    path = csv_file(tmp_path, "exercise.csv", [
        "reported_on,response,case_reference",                  # 1
        f"2024-01-15,case_ongoing,{ref_a}",                       # 2 good, workflow running
        "2024-01-15,case_ongoing,30000141614",                  # 3 malformed reference
        "2024-01-15,case_finished,300000000004",                # 4 unknown response
        f"{future},case_ongoing,300000000005",                  # 5 in the future
        "15/01/2024,case_ongoing,300000000006",                 # 6 not a date
        f"2024-01-15,complete_no_bill_due,{ref_a}",               # 7 duplicate
        f"2024-01-16,complete_to_be_billed,{ref_b}",              # 8 good, no workflow (yet)
        "2024-01-15,,300000000009",                             # 9 no response
    ])
    report = await import_exercise_responses(engine.store, engine.certificates, path, actor=ACTOR, now=now)
    assert (report.imported, report.updated, report.unchanged, report.refused_rows) == (2, 0, 0, 6)
    assert report.workflows_signalled == 1
    assert where(report) == [(3, "case_reference"), (4, "response"), (5, "reported_on"), (6, "reported_on"),
                             (7, "case_reference"), (9, "response")]
    assert "'case_finished'" in reason(report, 4, "response")
    assert "in the future" in reason(report, 5, "reported_on")
    assert "already on line 2" in reason(report, 7, "case_reference")
    rows = await engine.store.pool.fetch("SELECT * FROM exercise_responses")
    assert sorted((r["case_reference"], r["response"], r["reported_on"].isoformat()) for r in rows) == sorted([
        (ref_a, "case_ongoing", "2024-01-15"), (ref_b, "complete_to_be_billed", "2024-01-16")])
    assert await no_workflow(engine, ref_b)  # the exercise import starts nothing

    again = await import_exercise_responses(engine.store, engine.certificates, path, actor=ACTOR, now=now + DAY)
    # The running review is told again (an earlier run may have died before telling it).
    assert (again.imported, again.updated, again.unchanged, again.workflows_signalled) == (0, 0, 2, 1)

    changed = csv_file(tmp_path, "exercise2.csv", ["case_reference,response,reported_on",
                                                  f"{ref_a},complete_costs_negotiated,2024-01-20"])
    updated = await import_exercise_responses(engine.store, None, changed, actor="ops-bob", now=now + DAY)
    assert (updated.updated, updated.workflows_signalled) == (1, 0)
    assert [r.actor for r in await engine.store.audit_of(ref_a)
            if r.action == "exercise_response_imported"] == [ACTOR, "ops-bob"]
    assert await execution(engine, ref_a) == run


async def test_caseworkers_import_reports_bad_rows_and_is_idempotent(store: Store, tmp_path: Path) -> None:
    from icr.services.importer import import_caseworkers

    now = datetime.now(UTC)
    path = tmp_path / "caseworkers.csv"
    path.write_text("caseworker_id,active\nLAA-CW-01,true\nLAA CW 02,true\nLAA-CW-03,maybe\nLAA-CW-01,false\n")
    report = await import_caseworkers(store, path, actor=ACTOR, now=now)
    assert report.imported == 1
    assert [(e.line, e.column) for e in report.refused] == [(3, "caseworker_id"), (4, "active"), (5, "caseworker_id")]
    assert await store.load_caseworker("LAA-CW-01") == Caseworker(caseworker_id="LAA-CW-01", active=True)
    again = await import_caseworkers(store, path, actor=ACTOR, now=now)
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 1)

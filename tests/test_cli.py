"""The operator's command line (`starter.py`) through real subprocesses, against the Temporal
dev server with `worker.py` running as a process: every subcommand has --help; bad input
gets a clear message on stderr and a non-zero exit, and changes nothing; the happy path
moves a certificate from AwaitingResponse to Active, and `list` finds certificates by
stage and firm."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from tests.devserver import (
    CERTIFICATE_HEADER,
    FIRM,
    OTHER_FIRM,
    USER_HEADER,
    EngineEnv,
    Run,
    WorkerProcess,
    dev_server,  # noqa: F401  (fixture)
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    new_case_reference,
    query_status,
    wait_listed,
    wait_stage,
    worker,  # noqa: F401  (fixture)
    workflow_id,
    write_csv,
)

ACCEPTED_KINDS = ["application", "amendment", "case_outcome", "bill", "prior_authority",
                  "counsel_allocation", "provider_transfer", "case_plan", "icr_ongoing_response"]
ACCEPTED_RESPONSES = ["case_ongoing", "complete_to_be_billed", "complete_costs_negotiated",
                      "complete_court_assessment", "complete_no_bill_due"]


@pytest.fixture(scope="module")
def engine_task_queue() -> str:
    """A task queue of this module's own: the CLI must honour ICR_TASK_QUEUE."""
    return f"icr-cli-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client(dev_server: WorkflowEnvironment) -> Client:  # noqa: F811
    """For checking the engine's state between CLI runs (default JSON converter)."""
    return dev_server.client


@dataclass
class Registry:
    due: str  # AwaitingResponse: every refusal is tried on it
    happy: str  # AwaitingResponse: answered by the happy path
    active: str  # Active, no notification
    import_runs: list[Run]


def days_ago(days: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).replace(microsecond=0).isoformat()


@pytest.fixture(scope="module")
async def registry(engine_env: EngineEnv, worker: WorkerProcess, client: Client,  # noqa: F811
                   tmp_path_factory: pytest.TempPathFactory) -> Registry:
    folder = tmp_path_factory.mktemp("csv")
    users = write_csv(folder / "users.csv", USER_HEADER, [
        ["CONTACT1", FIRM, "case_management", "false"],
        ["MANAGER", FIRM, "office_manager", "false"],
        ["RIVAL", OTHER_FIRM, "case_management;cross_office", "false"],
    ])
    reg = Registry(new_case_reference(), new_case_reference(), new_case_reference(), [])
    certificates = write_csv(folder / "certificates.csv", CERTIFICATE_HEADER, [
        [reg.due, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(700), "1200.00", "200.00"],
        [reg.happy, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(700), "0.00", "0.00"],
        [reg.active, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(10), "0.00", "0.00"],
    ])
    reg.import_runs.append(await engine_env.starter("import", "users", str(users)))
    reg.import_runs.append(await engine_env.starter("import", "certificates", str(certificates)))
    for run in reg.import_runs:
        assert run.code == 0, str(run)
    await wait_stage(client, reg.due, "AwaitingResponse")
    await wait_stage(client, reg.happy, "AwaitingResponse")
    await wait_stage(client, reg.active, "Active")
    return reg


# --- help ------------------------------------------------------------------------------------

SUBCOMMANDS = [
    [], ["demo"], ["import"], ["import", "users"], ["import", "certificates"],
    ["import", "exercise-responses"], ["record-activity"], ["respond"], ["decide"], ["reassign"],
    ["close"], ["status"], ["list"], ["set-policy"], ["check"],
]


async def test_every_subcommand_has_help(engine_env: EngineEnv) -> None:  # noqa: F811
    runs = await asyncio.gather(*(engine_env.starter(*words, "--help") for words in SUBCOMMANDS))
    failed = [run for run in runs if run.code != 0 or "usage: starter.py" not in run.stdout]
    assert not failed, "\n\n".join(map(str, failed))
    by_command = {" ".join(words): run.stdout for words, run in zip(SUBCOMMANDS, runs)}
    for command in ["import", "record-activity", "respond", "decide", "status", "list", "set-policy"]:
        assert command in by_command[""], f"top-level --help does not mention {command}"
    assert "provider_contact_login" in by_command["import certificates"]
    assert "--occurred-at" in by_command["record-activity"]
    assert all(value in by_command["respond"] for value in ACCEPTED_RESPONSES)


# --- refusals -----------------------------------------------------------------------------------


async def test_malformed_case_reference_is_refused(engine_env: EngineEnv) -> None:  # noqa: F811
    run = await engine_env.starter("status", "12345")
    assert run.code == 2, str(run)
    assert "12345" in run.stderr and "12 digits starting 3000" in run.stderr, str(run)
    assert run.stdout == "", str(run)


def _future() -> str:
    return (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()


# (certificate, argv after the command's case reference, words the message must contain)
REFUSALS: dict[str, tuple[str, list[str], str, list[str]]] = {
    "unknown_activity_kind": ("due", ["record-activity"], "--kind case_enquiry --event-id e1",
                              ["case_enquiry", "accepted kinds", *ACCEPTED_KINDS]),
    "future_event": ("due", ["record-activity"], "--kind bill --event-id e2 --occurred-at {future}",
                     ["in the future"]),
    "unknown_response": ("due", ["respond"], "--user CONTACT1 --response maybe",
                         ["'maybe' is not a response", ", ".join(ACCEPTED_RESPONSES)]),
    "user_of_another_firm": ("due", ["respond"], "--user RIVAL --response case_ongoing",
                             ["RIVAL", "not a user of the certificate's provider firm"]),
    "office_manager": ("due", ["respond"], "--user MANAGER --response case_ongoing",
                       ["MANAGER", "Office Manager"]),
    "message_too_long": ("due", ["respond"], "--user CONTACT1 --response case_ongoing --message {long}",
                         ["2001 characters", "at most 2000"]),
    "no_open_notification": ("active", ["respond"], "--user CONTACT1 --response case_ongoing",
                             ["no open notification"]),
    "no_open_task": ("due", ["decide"], "--caseworker CW1 --decision close --reason done",
                     ["no open LAA task"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_bad_input_is_refused_clearly_and_changes_nothing(
        case: str, engine_env: EngineEnv, registry: Registry, client: Client) -> None:  # noqa: F811
    which, command, rest, words = REFUSALS[case]
    ref = getattr(registry, which)
    values = {"future": _future(), "long": "x" * 2001}
    args = [*command, ref, *[word.format(**values) for word in rest.split()]]
    before = await query_status(client, ref)
    run = await engine_env.starter(*args)
    assert run.code != 0, str(run)
    assert run.stderr.startswith("error: "), str(run)
    for word in words:
        assert word in run.stderr, f"{word!r} not in the message\n{run}"
    assert "Traceback" not in run.stderr, str(run)
    assert await query_status(client, ref) == before


async def test_status_of_an_unknown_certificate(engine_env: EngineEnv, worker: WorkerProcess,  # noqa: F811
                                                client: Client) -> None:
    ref = new_case_reference()
    run = await engine_env.starter("status", ref)
    assert run.code == 1, str(run)
    assert run.stderr.startswith("error: ") and ref in run.stderr and "no review workflow" in run.stderr, str(run)
    assert "Traceback" not in run.stderr, str(run)
    with pytest.raises(RPCError) as caught:  # and asking did not start one
        await client.get_workflow_handle(workflow_id(ref)).describe()
    assert caught.value.status == RPCStatusCode.NOT_FOUND


async def test_import_with_a_bad_row(engine_env: EngineEnv, registry: Registry, client: Client,  # noqa: F811
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    good, bad = new_case_reference(), new_case_reference()
    path = write_csv(tmp_path_factory.mktemp("csv") / "bad.csv", CERTIFICATE_HEADER, [
        [good, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(5), "0.00", "0.00"],
        [bad, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(5), "100.00", "250.00"],
    ])
    run = await engine_env.starter("import", "certificates", str(path))
    assert run.code != 0, str(run)
    assert "line 3" in run.stderr and "poa_recouped" in run.stderr, str(run)
    assert "line 2" not in run.stderr, str(run)
    assert "Traceback" not in run.stderr, str(run)
    assert "1 imported" in run.stdout and "1 refused" in run.stdout, str(run)
    # The good row is registered and its review runs; nothing of the bad row exists.
    await wait_stage(client, good, "Active")
    with pytest.raises(RPCError) as caught:
        await client.get_workflow_handle(workflow_id(bad)).describe()
    assert caught.value.status == RPCStatusCode.NOT_FOUND


# --- the happy path ---------------------------------------------------------------------------


def _json(run: Run) -> Any:
    try:
        return json.loads(run.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON on stdout\n{run}") from None


async def test_respond_case_ongoing(engine_env: EngineEnv, registry: Registry,  # noqa: F811
                                              client: Client) -> None:
    users_run, certificates_run = registry.import_runs
    assert "3 imported" in users_run.stdout, str(users_run)
    assert "3 imported" in certificates_run.stdout and "3 workflows started" in certificates_run.stdout, \
        str(certificates_run)
    ref = registry.happy

    run = await engine_env.starter("status", ref)
    assert run.code == 0, str(run)
    status = _json(run)
    assert status["case_reference"] == ref and status["stage"] == "AwaitingResponse"
    assert status["open_notification"]["assigned_to"] == "CONTACT1"

    run = await engine_env.starter("respond", ref, "--user", "CONTACT1", "--response", "case_ongoing",
                                   "--message", "still going")
    assert run.code == 0, str(run)
    result = _json(run)
    assert result["stage"] == "Active" and result["response"] == "case_ongoing"
    assert result["notification_id"] == status["open_notification"]["notification_id"]

    run = await engine_env.starter("status", ref)
    assert run.code == 0, str(run)
    after = _json(run)
    assert after["stage"] == "Active" and after["open_notification"] is None
    assert datetime.fromisoformat(after["inactivity_deadline"]) > datetime.now(timezone.utc) + timedelta(days=300)

    # The Web UI's filter (and so `list`) sees it as Active now.
    await wait_listed(client, f"IcrStage = 'Active' AND ProviderFirmId = '{FIRM}'", workflow_id(ref))


async def test_list_by_stage_and_firm(engine_env: EngineEnv, registry: Registry,  # noqa: F811
                                      client: Client) -> None:
    ref = registry.active
    await wait_listed(client, f"IcrStage = 'Active' AND ProviderFirmId = '{FIRM}'", workflow_id(ref))
    await wait_listed(client, f"IcrStage = 'AwaitingResponse' AND ProviderFirmId = '{FIRM}'",
                      workflow_id(registry.due))
    run = await engine_env.starter("list", "--stage", "Active", "--firm", FIRM)
    assert run.code == 0, str(run)
    lines = {line.split()[0]: line for line in run.stdout.splitlines() if line and not line.startswith("#")}
    assert ref in lines, str(run)
    assert "Active" in lines[ref] and FIRM in lines[ref], str(run)
    assert registry.due not in lines, str(run)  # awaiting its response, not Active


async def test_check_prints_each_disagreement_between_a_workflow_and_the_database(
        engine_env: EngineEnv, registry: Registry) -> None:  # noqa: F811
    run = await engine_env.starter("check")
    assert run.code == 0 and "0 disagreement(s)" in run.stdout, str(run)
    checked = re.search(r"(\d+) certificate\(s\) checked", run.stdout)
    assert checked is not None and int(checked.group(1)) >= 3, str(run)  # every running certificate, these three at least

    conn = await asyncpg.connect(engine_env.database_url)
    try:
        # What a lost attempt used to leave behind: other dates, and a task nobody knows of.
        await conn.execute("UPDATE notifications SET due_date = due_date + interval '1 day' "
                           "WHERE case_reference = $1 AND is_open", registry.due)
        await conn.execute("INSERT INTO laa_tasks (task_id, case_reference, kind, detail, raised_at) "
                           "VALUES ($1, $2, 'review', 'orphan', now())", f"TASK-{registry.active}-999",
                           registry.active)
        run = await engine_env.starter("check", registry.due, registry.active, "--settle", "0.5")
        assert run.code == 1, str(run)
        assert f"{registry.due}: notification ICR-{registry.due}-001 due_date" in run.stdout, str(run)
        assert f"{registry.active}: open task: the workflow has none" in run.stdout, str(run)
        assert f"{registry.active}: tasks: the workflow raised 0, the database has 1" in run.stdout, str(run)
        assert "2 certificate(s) checked; 3 disagreement(s)" in run.stdout, str(run)
    finally:
        await conn.execute("UPDATE notifications SET due_date = due_date - interval '1 day' "
                           "WHERE case_reference = $1 AND is_open", registry.due)
        await conn.execute("DELETE FROM laa_tasks WHERE task_id = $1", f"TASK-{registry.active}-999")
        await conn.close()
    run = await engine_env.starter("check", registry.due, registry.active)
    assert run.code == 0, str(run)

"""The operator's command line (`starter.py`) through real subprocesses, against the Temporal
dev server with `worker.py` running as a process: every subcommand has --help; bad input
gets a clear message on stderr and a non-zero exit (2 for bad arguments, 1 for a refusal),
and changes nothing; the happy path moves a certificate from AwaitingResponse to Active,
`list` finds certificates by stage and firm, `queue` prints an LAA queue and its Web UI
link, `decide` answers with the outcome or the refusal, and `status` with no worker says so
at once."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    review: str  # LaaReview: answered "to be billed", its review task open
    import_runs: list[Run]


def days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).replace(microsecond=0).isoformat()


@pytest.fixture(scope="module")
async def registry(engine_env: EngineEnv, worker: WorkerProcess, client: Client,  # noqa: F811
                   tmp_path_factory: pytest.TempPathFactory) -> Registry:
    folder = tmp_path_factory.mktemp("csv")
    users = write_csv(folder / "users.csv", USER_HEADER, [
        ["CONTACT1", FIRM, "case_management", "false"],
        ["MANAGER", FIRM, "office_manager", "false"],
        ["RIVAL", OTHER_FIRM, "case_management;cross_office", "false"],
    ])
    reg = Registry(new_case_reference(), new_case_reference(), new_case_reference(), new_case_reference(), [])
    certificates = write_csv(folder / "certificates.csv", CERTIFICATE_HEADER, [
        [reg.due, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(700), "1200.00", "200.00"],
        [reg.happy, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(700), "0.00", "0.00"],
        [reg.active, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(10), "0.00", "0.00"],
        [reg.review, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago(700), "0.00", "0.00"],
    ])
    caseworkers = write_csv(folder / "caseworkers.csv", ["caseworker_id", "active"],
                            [["CW1", "true"], ["LAA-CW-1", "true"]])
    reg.import_runs.append(await engine_env.starter("import", "users", str(users)))
    reg.import_runs.append(await engine_env.starter("import", "caseworkers", str(caseworkers)))
    reg.import_runs.append(await engine_env.starter("import", "certificates", str(certificates)))
    for run in reg.import_runs:
        assert run.code == 0, str(run)
    await wait_stage(client, reg.due, "AwaitingResponse")
    await wait_stage(client, reg.happy, "AwaitingResponse")
    await wait_stage(client, reg.active, "Active")
    await wait_stage(client, reg.review, "AwaitingResponse")
    run = await engine_env.starter("respond", reg.review, "--user", "CONTACT1", "--response", "complete_to_be_billed")
    assert run.code == 0, str(run)
    await wait_stage(client, reg.review, "LaaReview")
    return reg


# --- help ------------------------------------------------------------------------------------

SUBCOMMANDS = [
    [], ["demo"], ["import"], ["import", "users"], ["import", "certificates"],
    ["import", "exercise-responses"], ["record-activity"], ["respond"], ["decide"], ["reassign"],
    ["close"], ["status"], ["list"], ["queue"], ["set-policy"], ["policy"], ["policy", "show"], ["policy", "set"],
    ["outage"], ["outage", "declare"], ["outage", "list"], ["forecast"], ["rollout"], ["rollout", "list"],
    ["rollout", "resume"], ["audit"], ["check"],
]


async def test_every_subcommand_has_help(engine_env: EngineEnv) -> None:  # noqa: F811
    runs = await asyncio.gather(*(engine_env.starter(*words, "--help") for words in SUBCOMMANDS))
    failed = [run for run in runs if run.code != 0 or "usage: starter.py" not in run.stdout]
    assert not failed, "\n\n".join(map(str, failed))
    by_command = {" ".join(words): run.stdout for words, run in zip(SUBCOMMANDS, runs, strict=True)}
    for command in ["import", "record-activity", "respond", "decide", "status", "list", "queue", "set-policy", "policy",
                    "outage", "forecast", "rollout"]:
        assert command in by_command[""], f"top-level --help does not mention {command}"
    assert "provider_contact_login" in by_command["import certificates"]
    assert "--occurred-at" in by_command["record-activity"]
    assert all(value in by_command["respond"] for value in ACCEPTED_RESPONSES)
    for option in ["--inactivity-days", "--response-days", "--return-days", "--max-cycles", "--effective-from",
                   "--reason", "--actor", "--dry-run", "--rate"]:
        assert option in by_command["policy set"] and option in by_command["set-policy"], option
    assert all(option in by_command["outage declare"] for option in ["--from", "--to", "--reason", "--actor"])
    assert "--weeks" in by_command["forecast"]


# --- refusals -----------------------------------------------------------------------------------


async def test_malformed_case_reference_is_refused(engine_env: EngineEnv) -> None:  # noqa: F811
    run = await engine_env.starter("status", "12345")
    assert run.code == 2, str(run)
    assert run.error.startswith("error: "), str(run)
    assert "12345" in run.stderr and "12 digits starting 3000" in run.stderr, str(run)
    assert run.stdout == "", str(run)


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


# (certificate, argv after the command's case reference, words the message must contain, exit
# code: 2 for bad arguments, refused before anything is sent; 1 for the engine's refusal)
REFUSALS: dict[str, tuple[str, list[str], str, list[str], int]] = {
    "unknown_activity_kind": ("due", ["record-activity"], "--kind case_enquiry --event-id e1",
                              ["case_enquiry", "accepted kinds", *ACCEPTED_KINDS], 2),
    "future_event": ("due", ["record-activity"], "--kind bill --event-id e2 --occurred-at {future}",
                     ["in the future"], 2),
    "unknown_response": ("due", ["respond"], "--user CONTACT1 --response maybe",
                         ["'maybe' is not a response", ", ".join(ACCEPTED_RESPONSES)], 2),
    "user_of_another_firm": ("due", ["respond"], "--user RIVAL --response case_ongoing",
                             ["RIVAL", "not a user of the certificate's provider firm"], 1),
    "office_manager": ("due", ["respond"], "--user MANAGER --response case_ongoing",
                       ["MANAGER", "Office Manager"], 1),
    "message_too_long": ("due", ["respond"], "--user CONTACT1 --response case_ongoing --message {long}",
                         ["2001 characters", "at most 2000"], 2),
    "no_open_notification": ("active", ["respond"], "--user CONTACT1 --response case_ongoing",
                             ["no open notification"], 1),
    "unknown_decision": ("review", ["decide"], "--caseworker CW1 --decision maybe",
                         ["'maybe'", "close", "keep_open"], 2),
    "no_open_task": ("due", ["decide"], "--caseworker CW1 --decision close --reason done",
                     ["decision refused", "no open LAA task", "[no_open_task]"], 1),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_bad_input_is_refused_clearly_and_changes_nothing(
        case: str, engine_env: EngineEnv, registry: Registry, client: Client) -> None:  # noqa: F811
    which, command, rest, words, code = REFUSALS[case]
    ref = getattr(registry, which)
    values = {"future": _future(), "long": "x" * 2001}
    args = [*command, ref, *[word.format(**values) for word in rest.split()]]
    before = await query_status(client, ref)
    run = await engine_env.starter(*args)
    assert run.code == code, str(run)
    assert run.error.startswith("error: "), str(run)
    for word in words:
        assert word in run.stderr, f"{word!r} not in the message\n{run}"
    assert "Traceback" not in run.stderr, str(run)
    assert await query_status(client, ref) == before


async def test_a_policy_change_dated_too_far_back_is_refused_and_changes_nothing(
        engine_env: EngineEnv, registry: Registry, client: Client) -> None:  # noqa: F811
    before = await query_status(client, registry.active)
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    run = await engine_env.starter("policy", "set", "--inactivity-days", "365", "--effective-from", three_days_ago,
                                   "--reason", "back to 12 months", "--actor", "cli-test")
    assert run.code == 2, str(run)
    assert run.error.startswith("error: ") and "more than a day in the past" in run.stderr, str(run)
    assert "Traceback" not in run.stderr, str(run)
    shown = await engine_env.starter("policy", "show")
    assert shown.code == 0 and "365 days" in shown.stdout and "cli-test" not in shown.stdout, str(shown)
    assert await query_status(client, registry.active) == before


async def test_status_of_an_unknown_certificate(engine_env: EngineEnv, worker: WorkerProcess,  # noqa: F811
                                                client: Client) -> None:
    ref = new_case_reference()
    run = await engine_env.starter("status", ref)
    assert run.code == 1, str(run)
    assert run.error.startswith("error: ") and ref in run.stderr and "no review workflow" in run.stderr, str(run)
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
    users_run, _, certificates_run = registry.import_runs
    assert "3 imported" in users_run.stdout, str(users_run)
    assert "4 imported" in certificates_run.stdout and "4 workflows started" in certificates_run.stdout, \
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
    assert datetime.fromisoformat(after["inactivity_deadline"]) > datetime.now(UTC) + timedelta(days=300)

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


async def test_a_duplicate_event_says_it_was_already_recorded(engine_env: EngineEnv, registry: Registry,  # noqa: F811
                                                              client: Client) -> None:
    ref = registry.active
    occurred = days_ago(1)
    first = await engine_env.starter("record-activity", ref, "--kind", "amendment", "--event-id", "AMD-dup",
                                     "--occurred-at", occurred)
    assert first.code == 0 and f"recorded amendment AMD-dup for {ref}" in first.stdout, str(first)

    async def recorded() -> dict[str, Any] | None:
        status = await query_status(client, ref)
        return status if status["last_activity_at"] and status["last_activity_at"].startswith(occurred[:10]) else None
    await eventually_json(recorded)
    before = await query_status(client, ref)
    again = await engine_env.starter("record-activity", ref, "--kind", "amendment", "--event-id", "AMD-dup")
    assert again.code == 0, str(again)
    assert f"event AMD-dup was already recorded for {ref} (amendment at" in again.stdout, str(again)
    assert "counts once, nothing changed" in again.stdout, str(again)
    assert await query_status(client, ref) == before


async def eventually_json(probe: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while (found := await probe()) is None:
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.25)
    return found


async def test_status_with_no_worker_says_so_at_once(engine_env: EngineEnv, registry: Registry) -> None:  # noqa: F811
    # The same servers, but a task queue no worker polls.
    idle = EngineEnv(engine_env.temporal_address, engine_env.database_url, f"icr-idle-{uuid.uuid4().hex[:8]}",
                     engine_env.data_dir)
    started = time.monotonic()
    run = await idle.starter("status", registry.due)
    elapsed = time.monotonic() - started
    assert run.code == 3, str(run)
    assert run.error.startswith("error: no worker is polling task queue 'icr-idle-"), str(run)
    assert "start a worker on that task queue" in run.stderr and "Traceback" not in run.stderr, str(run)
    assert "./run" not in run.stderr, str(run)  # not how production starts one
    assert elapsed < 8, f"took {elapsed:.1f} s: a query would have waited for a worker\n{run}"


def _rows(run: Run) -> list[list[str]]:
    """The table's rows (after its header line), split on whitespace."""
    lines = [line for line in run.stdout.splitlines() if line and not line.startswith("#")]
    return [line.split() for line in lines[1:-1]]


async def test_queue_lists_the_review_with_its_task_and_the_web_ui_link(
        engine_env: EngineEnv, registry: Registry, client: Client) -> None:  # noqa: F811
    await wait_listed(client, f"OpenTaskKind = 'review' AND ProviderFirmId = '{FIRM}'", workflow_id(registry.review))
    run = await engine_env.starter("queue", "--kind", "review", "--firm", FIRM,
                                   env={"TEMPORAL_UI_URL": "https://temporal-ui.example"})
    assert run.code == 0, str(run)
    assert f"# filter: OpenTaskKind = 'review' AND ProviderFirmId = '{FIRM}'" in run.stdout, str(run)
    assert ("# Web UI: https://temporal-ui.example/namespaces/default/workflows?query=OpenTaskKind%20%3D%20%27review"
            "%27%20AND%20ProviderFirmId%20%3D%20%2726517%27") in run.stdout, str(run)
    status = await query_status(client, registry.review)
    rows = {row[1]: row for row in _rows(run)}
    assert registry.review in rows, str(run)
    row = rows[registry.review]
    assert row[2:5] == [FIRM, status["open_task"]["task_id"], "review"], str(run)
    assert "Case Complete to be Billed" in " ".join(row[5:]), str(run)
    assert registry.due not in rows, str(run)  # awaiting its response: in no queue

    # Every queue at once, and none of another firm's.
    run = await engine_env.starter("queue")
    assert "# filter: OpenTaskKind IN ('review', 'no_response', 'escalation', 'follow_up', " \
           "'registration_missing')" in run.stdout, str(run)
    assert registry.review in run.stdout, str(run)
    assert "# Web UI" not in run.stdout  # no Web UI known for this server
    run = await engine_env.starter("queue", "--firm", OTHER_FIRM)
    assert registry.review not in run.stdout and "0 of 0 open task(s) waiting for the LAA" in run.stdout, str(run)
    run = await engine_env.starter("queue", "--kind", "overdue")
    assert run.code == 2 and "invalid choice: 'overdue'" in run.stderr, str(run)


async def test_decide_answers_with_the_outcome_and_empties_the_queue(
        engine_env: EngineEnv, registry: Registry, client: Client) -> None:  # noqa: F811
    ref = registry.review
    task_id = (await query_status(client, ref))["open_task"]["task_id"]
    run = await engine_env.starter("decide", ref, "--caseworker", "LAA-CW-1", "--decision", "keep_open",
                                   "--reason", "bill expected", "--task-id", task_id)
    assert run.code == 0, str(run)
    assert _json(run) == {"task_id": task_id, "decision": "keep_open", "stage": "Active"}
    await wait_listed(client, f"IcrStage = 'Active' AND ProviderFirmId = '{FIRM}'", workflow_id(ref))
    run = await engine_env.starter("queue", "--kind", "review")
    assert ref not in run.stdout, str(run)
    again = await engine_env.starter("decide", ref, "--caseworker", "LAA-CW-1", "--decision", "close")
    assert again.code == 1 and "decision refused" in again.stderr and "no open LAA task" in again.stderr, str(again)


async def test_list_is_sorted_by_stage_with_readable_times(engine_env: EngineEnv, registry: Registry,  # noqa: F811
                                                           client: Client) -> None:
    await wait_listed(client, f"IcrStage = 'AwaitingResponse' AND ProviderFirmId = '{FIRM}'",
                      workflow_id(registry.due))
    run = await engine_env.starter("list", "--firm", FIRM)
    assert run.code == 0, str(run)
    header = [line for line in run.stdout.splitlines() if not line.startswith("#")][0]
    assert header.split()[:4] == ["certificate", "stage", "firm", "open"], str(run)
    order = ["Active", "AwaitingResponse", "Overdue", "LaaReview", "Escalated", "Closed"]
    stages = [row[1] for row in _rows(run)]
    assert stages == sorted(stages, key=order.index), str(run)
    due = {row[0]: row for row in _rows(run)}[registry.due]
    # Times to the minute, UK time: no seconds, no offsets.
    assert any(len(cell) == 10 and cell[4] == "-" for cell in due), str(run)
    assert "+00:00" not in run.stdout and "T" not in " ".join(due), str(run)
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


# --- the actor, an unreachable database, and the whole queue -----------------------------------


async def test_writes_are_audited_as_icr_actor_unless_actor_names_another(
        engine_env: EngineEnv, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> None:  # noqa: F811
    folder = tmp_path_factory.mktemp("actor")
    first = write_csv(folder / "first.csv", USER_HEADER, [["ACTOR-U1", FIRM, "case_management", "false"]])
    second = write_csv(folder / "second.csv", USER_HEADER, [["ACTOR-U2", FIRM, "case_management", "false"]])
    run = await engine_env.starter("import", "users", str(first), env={"ICR_ACTOR": "ops.carol"})
    assert run.code == 0, str(run)
    run = await engine_env.starter("import", "users", str(second), "--actor", "ops.dave",
                                   env={"ICR_ACTOR": "ops.carol"})
    assert run.code == 0, str(run)
    third = write_csv(folder / "third.csv", USER_HEADER, [["ACTOR-U3", FIRM, "case_management", "false"]])
    refused = await engine_env.starter("import", "users", str(third), env={"ICR_ACTOR": "", "USER": "root"})
    assert refused.code == 2 and "pass --actor NAME or set ICR_ACTOR" in refused.stderr, str(refused)
    conn = await asyncpg.connect(engine_env.database_url)
    try:
        rows = await conn.fetch("SELECT actor, detail->>'login_id' AS login FROM audit_log "
                                "WHERE action = 'user_imported' AND detail->>'login_id' LIKE 'ACTOR-U%' ORDER BY id")
    finally:
        await conn.close()
    assert [(r["login"], r["actor"]) for r in rows] == [("ACTOR-U1", "ops.carol"), ("ACTOR-U2", "ops.dave")]


async def test_an_unreachable_database_exits_3_naming_its_address_not_its_password(
        engine_env: EngineEnv) -> None:  # noqa: F811
    run = await engine_env.starter("queue", env={"DATABASE_URL": "postgresql://icr:s3cret-pw@db.invalid:5432/icr"})
    assert run.code == 3, str(run)
    assert run.error.startswith("error: cannot reach PostgreSQL at db.invalid:5432/icr: "), str(run)
    assert "s3cret-pw" not in run.stderr and "Traceback" not in run.stderr, str(run)


async def test_a_database_url_naming_no_database_is_a_bad_setting(engine_env: EngineEnv,  # noqa: F811
                                                                  postgres: Any) -> None:
    run = await engine_env.starter("queue", env={"DATABASE_URL": postgres.url("no_such_database")})
    assert run.code == 2, str(run)
    assert run.error.startswith("error: bad setting: DATABASE_URL: InvalidCatalogNameError: "), str(run)


async def test_queue_is_complete_and_oldest_first_beyond_500_tasks(
        engine_env: EngineEnv, postgres: Any) -> None:  # noqa: F811
    """From the engine's task table, not the first 500 of a visibility list: a database of its
    own, holding 600 open tasks raised in no particular order (and some decided ones)."""
    name = f"e2e_queue_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres.admin_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    env = EngineEnv(engine_env.temporal_address, postgres.url(name), engine_env.task_queue, engine_env.data_dir)
    migrated = await env.starter("rollout", "list")  # the command line migrates the database it is given
    assert migrated.code == 0, str(migrated)
    open_count, decided_count = 600, 7
    refs = [f"3000{77_000_000 + i:08d}" for i in range(open_count + decided_count)]
    t0 = datetime.now(UTC) - timedelta(days=30)
    raised = {ref: t0 + timedelta(minutes=(i * 263) % len(refs)) for i, ref in enumerate(refs)}
    conn = await asyncpg.connect(env.database_url)
    try:
        await conn.executemany(
            "INSERT INTO certificates (case_reference, provider_firm_id, office_code, provider_contact_login, "
            "granted_on) VALUES ($1, $2, '2L847Q', 'CONTACT1', '2020-01-06')",
            [(ref, OTHER_FIRM if i % 4 == 0 else FIRM) for i, ref in enumerate(refs)])
        await conn.executemany(
            "INSERT INTO laa_tasks (task_id, case_reference, kind, detail, raised_at, is_open) "
            "VALUES ($1, $2, 'review', 'review for closure', $3, $4)",
            [(f"TASK-{ref}-001", ref, raised[ref], i < open_count) for i, ref in enumerate(refs)])
    finally:
        await conn.close()
    oldest_first = sorted(refs[:open_count], key=raised.__getitem__)

    def listed(run: Run) -> list[str]:
        """Each row's certificate (the waiting column holds a space: `29d 23h`)."""
        found = (re.search(r" (3000\d{8}) ", line) for line in run.stdout.splitlines())
        return [m.group(1) for m in found if m]

    run = await env.starter("queue")
    assert run.code == 0, str(run)
    assert listed(run) == oldest_first, str(run)[:3000]
    assert run.stdout.splitlines()[-1] == "600 of 600 open task(s) waiting for the LAA, the longest waiting first"

    run = await env.starter("queue", "--limit", "5", "--firm", OTHER_FIRM)
    of_firm = [ref for ref in oldest_first if refs.index(ref) % 4 == 0]
    assert listed(run) == of_firm[:5], str(run)
    assert f"5 of {len(of_firm)} open task(s)" in run.stdout, str(run)
    assert (await env.starter("queue", "--limit", "0")).code == 2

"""The alerts and the operators' dashboard watch metrics that exist: a real worker (and the dev
server, for the task queue's backlog) is driven through what the rules look for (a
notification raised, a refused event, a workflow task that fails, a step
failing while the database is away, a daily digest mailed), then scraped, and every metric
named by a PromQL expression in deploy/prometheus/ and deploy/grafana/ must be among what they
export. Counters and histograms appear in a scrape only once something was recorded, which is
why the scenario makes each happen."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import promql_parser
import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from icr.adapters.mail.sink import local_sink
from tests.devserver import (
    CERTIFICATE_HEADER,
    FIRM,
    SEARCH_ATTRIBUTES,
    EngineEnv,
    WorkerProcess,
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    new_case_reference,
    temporal_binary,
    wait_stage,
    workflow_id,
    write_csv,
)
from tests.e2e.test_worker_health import forwarder, free_port

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


@pytest.fixture(scope="module")
def engine_task_queue() -> str:
    return "icr-monitoring"


@pytest.fixture(scope="module")
def server_metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
async def dev_server(server_metrics_port: int) -> AsyncIterator[WorkflowEnvironment]:
    """The dev server serving its own Prometheus metrics (the task queues' backlog)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES, ui=False,
        dev_server_extra_args=["--metrics-port", str(server_metrics_port)])
    try:
        yield env
    finally:
        await env.shutdown()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def metric_names(exposition: str) -> set[str]:
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in exposition.splitlines()
            if line and not line.startswith("#")}


@dataclass
class Scraped:
    worker: set[str]
    server: set[str]
    worker_text: str


@pytest.fixture(scope="module")
async def scraped(engine_env: EngineEnv, dev_server: WorkflowEnvironment, server_metrics_port: int,  # noqa: F811
                  tmp_path_factory: pytest.TempPathFactory) -> Scraped:
    folder = tmp_path_factory.mktemp("monitoring")
    client: Client = dev_server.client
    metrics_port, db_port = free_port(), free_port()
    db = urlsplit(engine_env.database_url)
    db_socket = str(next(Path(parse_qs(db.query)["host"][0]).glob(".s.PGSQL.*")))
    # With real servers the mailer needs its SMTP server and addresses (it refuses to start
    # without them): the local sink stands in for the SMTP server.
    smtp = contextlib.AsyncExitStack()
    smtp_host, smtp_port = await smtp.enter_async_context(local_sink(folder / "mail"))
    worker = WorkerProcess(engine_env, folder / "worker.log", env={
        "ICR_METRICS_PORT": str(metrics_port),
        "DATABASE_URL": f"postgresql://{db.username}@127.0.0.1:{db_port}{db.path}",
        "ICR_SMTP_HOST": smtp_host, "ICR_SMTP_PORT": str(smtp_port), "ICR_SMTP_STARTTLS": "false",
        "ICR_MAIL_FROM": "icr@laa.example", "ICR_PORTAL_URL": "https://portal.laa.example/"})

    async def until_exported(what: str, *names: str) -> None:
        """Until the worker's scrape has every one of `names` (counters appear once recorded)."""
        deadline = asyncio.get_running_loop().time() + 60
        while lacking := set(names) - (exported := metric_names(await asyncio.to_thread(scrape, metrics_port))):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what}: the worker does not export {sorted(lacking)} "
                                     f"(it exports {sorted(exported)})")
            await asyncio.sleep(0.5)

    try:
        async with forwarder(db_port, db_socket):
            await worker.start()
            # A certificate that falls due at once: a notification raised, its digest mailed.
            due = new_case_reference()
            users = write_csv(folder / "users.csv", ["login_id", "provider_firm_id", "roles", "pre_silas", "email"],
                              [["CONTACT1", FIRM, "case_management", "false", "contact1@firm.example"]])
            days_ago = (datetime.now(UTC) - timedelta(days=700)).isoformat()
            certificates = write_csv(folder / "certificates.csv", CERTIFICATE_HEADER,
                                     [[due, FIRM, "2L847Q", "CONTACT1", "2020-01-06", days_ago, "0.00", "0.00"]])
            for kind, path in (("users", users), ("certificates", certificates)):
                run = await engine_env.starter("import", kind, str(path))
                assert run.code == 0, str(run)
            await wait_stage(client, due, "AwaitingResponse", timeout=60)
            # A workflow task that fails (a type no worker registers).
            stray = await client.start_workflow("NoSuchWorkflow", id=f"stray-{uuid.uuid4().hex[:8]}",
                                                task_queue=engine_env.task_queue)
            digest = await client.start_workflow("DailyDigestWorkflow", id=f"digest-{uuid.uuid4().hex[:8]}",
                                                 task_queue=engine_env.task_queue)
            await asyncio.wait_for(digest.result(), 60)
            # A response that goes to the LAA (a task raised), then an event recorded and one refused.
            handle = client.get_workflow_handle(workflow_id(due))
            await handle.execute_update("respond", {"user_login_id": "CONTACT1", "response": "complete_to_be_billed"})
            for event_id, kind in (("bill-1", "bill"), ("refused-1", "case_enquiry")):
                await handle.signal("record_activity", {
                    "event_id": event_id, "kind": kind, "occurred_at": datetime.now(UTC).isoformat()})
            await until_exported("the steps, the failure, the refusal and the digest", "icr_notifications_raised",
                                 "icr_events_recorded", "icr_tasks_raised", "icr_refusals", "icr_digests_sent",
                                 "temporal_workflow_task_execution_failed")
            await stray.terminate("test over")
        # The database away: a step fails (and is retried once it is back).
        await client.get_workflow_handle(workflow_id(due)).signal("record_activity", {
            "event_id": "during-outage", "kind": "bill", "occurred_at": datetime.now(UTC).isoformat()})
        await until_exported("a step failing while the database is away", "temporal_activity_execution_failed")
        # The server's matching service reports the task queues' backlog about once a minute.
        deadline = asyncio.get_running_loop().time() + 120
        while not {"approximate_backlog_count", "approximate_backlog_age_seconds"} <= metric_names(
                server_text := await asyncio.to_thread(scrape, server_metrics_port)):
            assert asyncio.get_running_loop().time() < deadline, "the server reports no backlog"
            await asyncio.sleep(2)
        async with forwarder(db_port, db_socket):
            worker_text = await asyncio.to_thread(scrape, metrics_port)
            (folder / "worker.metrics").write_text(worker_text)
            (folder / "server.metrics").write_text(server_text)
            assert await worker.stop(40) == 0, worker.log()[-3000:]
    finally:
        await worker.stop(40)
        await smtp.aclose()
    return Scraped(metric_names(worker_text), metric_names(server_text), worker_text)


# --- what the rules and dashboards name ----------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p.get("targets")]


def promql_expressions() -> list[tuple[str, str]]:
    """(where, expression) for every alert and every Prometheus panel query."""
    found = [(f"alert {rule['alert']}", str(rule["expr"])) for rule in alert_rules()]
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in panels(dashboard(path.name)):
            for target in panel["targets"]:
                if "expr" in target:
                    found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def names_in(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (its vector and matrix selectors)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            return
        if isinstance(node, promql_parser.MatrixSelector):
            walk(node.vector_selector)
            return
        for attribute in ("expr", "lhs", "rhs", "param"):
            child = getattr(node, attribute, None)
            if child is not None and not isinstance(child, (str, int, float)):
                walk(child)
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(expression))
    return names


def missing(expression: str, scraped: Scraped) -> set[str]:
    return {name for name in names_in(expression) if name not in scraped.worker | scraped.server}


def test_every_promql_expression_names_metrics_the_running_engine_exports(scraped: Scraped) -> None:
    expressions = promql_expressions()
    assert len(expressions) >= 12
    problems = {where: sorted(missing(expr, scraped)) for where, expr in expressions if missing(expr, scraped)}
    assert not problems, f"metrics exported by neither the worker nor the server: {problems}"
    named = set().union(*(names_in(expr) for _, expr in expressions))
    assert {"icr_notifications_raised", "icr_digests_failed", "temporal_workflow_task_execution_failed",
            "temporal_activity_execution_failed"} <= named


def test_a_misspelt_metric_is_caught(scraped: Scraped) -> None:
    assert missing("sum(rate(temporal_workflow_task_execution_failures[5m]))", scraped) == {
        "temporal_workflow_task_execution_failures"}
    assert missing("sum(rate(temporal_workflow_task_execution_failed[5m]))", scraped) == set()


def test_the_sdks_latencies_are_in_milliseconds_as_the_thresholds_assume(scraped: Scraped) -> None:
    bounds = {float(line.split('le="', 1)[1].split('"', 1)[0]) for line in scraped.worker_text.splitlines()
              if line.startswith("temporal_workflow_task_schedule_to_start_latency_bucket{") and 'le="+Inf"' not in line}
    # Milliseconds, with bounds at the thresholds: 30 s (IcrWorkflowTaskScheduleToStartSlow)
    # and 15 minutes (IcrNotificationsLate counts the tasks above the 900,000 ms bucket).
    assert {100, 30000, 900000} <= bounds, sorted(bounds)
    late = next(rule for rule in alert_rules() if rule["alert"] == "IcrNotificationsLate")
    assert 'le="900000"' in late["expr"] and "approximate_backlog_age_seconds" in late["expr"]
    slow = next(rule for rule in alert_rules() if rule["alert"] == "IcrWorkflowTaskScheduleToStartSlow")
    assert "> 30000" in slow["expr"]


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["action"], rule["alert"]
        promql_parser.parse(str(rule["expr"]))  # raises on a syntax error
    # What breaks the 15-minute promise or a review, each watched.
    covered = " ".join(names)
    for what in ("WorkflowTaskFailures", "ActivityFailures", "ScheduleToStart", "Backlog",
                 "NotificationsLate", "Digests"):
        assert what in covered, what

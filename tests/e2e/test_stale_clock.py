"""A query racing a certificate's deadline, on a worker with the sticky cache: the
certificate still decides by its workflow task's own time (workflows/clock.py).

The race, as `tools/chaos.py --cached-workflows 500` met it: a `status` query is dispatched
straight to the task queue while the certificate waits on its deadline timer and no worker
polls; the timer fires meanwhile. A worker with a cache then picks the query up first, with a
history that already holds the fired timer. Left alone, the SDK runs the workflow on it with
the previous task's time, caches that run, and answers the real task with what it decided
(a new timer where the notification was due), which no replay reproduces.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer

from tests.devserver import (
    CERTIFICATE_HEADER,
    FIRM,
    USER_HEADER,
    EngineEnv,
    WorkerProcess,
    dev_server,  # noqa: F401  (fixture)
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    workflow_id,
    write_csv,
)
from workflows.certificate import CertificateWorkflow
from workflows.clock import STALE_CLOCK

# Each certificate is one chance of the race (about one in two); twelve make a run that
# never meets it unlikely (about 1 in 4,000), and the test says so if it happens.
CERTIFICATES = 12
DUE_IN = timedelta(seconds=40)  # room to onboard them all first, also on a loaded machine
INACTIVITY = timedelta(days=608)  # the policy in force
QUERY_LEAD = timedelta(seconds=6)  # the queries wait from this long before the deadlines


@pytest.fixture(scope="module")
def engine_task_queue() -> str:
    return "icr-stale-clock"


async def query(client: Client, ref: str) -> dict[str, Any]:
    return await client.get_workflow_handle(workflow_id(ref)).query("status", result_type=dict)


async def status(client: Client, ref: str) -> dict[str, Any]:
    """The query, asked again when it met a stale run (as the engine's client does)."""
    while True:
        try:
            return await query(client, ref)
        except WorkflowQueryFailedError as err:
            if STALE_CLOCK not in str(err):
                raise
        await asyncio.sleep(0.1)


# The worker that onboards the certificates, then leaves before their deadlines: killed, or
# stopped cleanly (its sticky queue given up). Either way the queries then go to the task queue
# itself. The second found the guard's gap with local steps (tests/unit/test_clock.py).
FIRST_WORKERS = {"killed": ({"ICR_MAX_CACHED_WORKFLOWS": "1"}, True), "stopped cleanly": ({}, False)}


@pytest.mark.parametrize("first_worker", FIRST_WORKERS)
async def test_a_query_racing_the_deadline_leaves_a_history_that_replays(engine_env: EngineEnv,  # noqa: F811
                                                                          tmp_path: Path, first_worker: str) -> None:
    first_env, killed = FIRST_WORKERS[first_worker]
    client = await Client.connect(engine_env.temporal_address, data_converter=pydantic_data_converter)
    due = datetime.now(UTC) + DUE_IN
    refs = [f"3000{7 if killed else 8}{i:07d}" for i in range(CERTIFICATES)]
    users = write_csv(tmp_path / "users.csv", USER_HEADER, [["CLOCK-CONTACT", FIRM, "case_management", "false"]])
    certificates = write_csv(tmp_path / "certificates.csv", CERTIFICATE_HEADER, [
        [ref, FIRM, "2L847Q", "CLOCK-CONTACT", "2020-01-06", (due - INACTIVITY).isoformat(), "0.00", "0.00"]
        for ref in refs])
    assert (await engine_env.starter("import", "users", str(users))).code == 0

    # Onboarded by a worker that then leaves, so that the queries go to the task queue itself:
    # nobody polls while the deadlines pass.
    first = WorkerProcess(engine_env, tmp_path / "first.log", first_env)
    await first.start()
    run = await engine_env.starter("import", "certificates", str(certificates))
    assert run.code == 0, str(run)
    onboarded_by = time.monotonic() + 20
    for ref in refs:
        while (await status(client, ref))["inactivity_deadline"] is None:
            assert time.monotonic() < onboarded_by, f"{ref} was not onboarded"
            await asyncio.sleep(0.1)
    assert first.process is not None
    if killed:
        first.process.kill()
        await first.process.wait()
    else:
        assert await first.stop(30) == 0
    assert datetime.now(UTC) < due - timedelta(seconds=3), "onboarding took too long for the race"

    # The queries go out shortly before the deadlines: the server gives up on a query that no
    # worker has taken within about 30 s ("no poller seen"), so they must not wait longer.
    await asyncio.sleep(max(0.0, (due - QUERY_LEAD - datetime.now(UTC)).total_seconds()))
    queries = [asyncio.create_task(query(client, ref)) for ref in refs]
    await asyncio.sleep((due - datetime.now(UTC)).total_seconds() + 3)  # the timers fire; nobody polls
    second = WorkerProcess(engine_env, tmp_path / "second.log",
                           {"ICR_MAX_CACHED_WORKFLOWS": "500", "ICR_WORKFLOW_TASK_POLLERS": "2"})
    await second.start()
    try:
        answers = await asyncio.gather(*queries, return_exceptions=True)
        stale = [a for a in answers if isinstance(a, WorkflowQueryFailedError) and STALE_CLOCK in str(a)]
        # The others were answered, or cut short while they waited for a worker.
        assert all(isinstance(a, (dict, RPCError)) for a in answers if a not in stale), answers
        # Every certificate is notified once, by its real time.
        deadline = time.monotonic() + 60
        for ref in refs:
            while (await status(client, ref))["notifications_raised"] != 1:
                assert time.monotonic() < deadline, f"{ref} was not notified"
                await asyncio.sleep(0.2)
    finally:
        assert await second.stop(30) == 0
    conn = await asyncpg.connect(engine_env.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM notifications WHERE case_reference = ANY($1)",
                                   refs) == CERTIFICATES
    finally:
        await conn.close()

    replayer = Replayer(workflows=[CertificateWorkflow], data_converter=pydantic_data_converter)
    for ref in refs:
        history = await client.get_workflow_handle(workflow_id(ref)).fetch_history()
        # A stale run met in a workflow task rather than a query fails that task (retried
        # from the history); nothing else may.
        failed = [e.workflow_task_failed_event_attributes.failure.message for e in history.events
                  if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        assert all(STALE_CLOCK in message for message in failed), f"{ref}: {failed}"
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{ref}: {result.replay_failure}"
    # The race was met (a query refused as stale), or this run proved nothing.
    assert stale, f"no query met the race in {CERTIFICATES} tries; answers: {answers}"

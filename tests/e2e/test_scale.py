"""Scale guarantees (issue 16): an interrupted import re-run makes each certificate exactly
once; two workers sharing a burst do each side effect once; continue-as-new under a forced
low history limit loses no signal and no update; the generator writes files the importer takes."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient, NoWorker
from icr.domain.models import ActivityEvent, ReassignContactRequest
from icr.services.importer import BacklogGate
from icr.services.synthetic import case_reference, generate_registry
from tests.conftest import Engine, add_certificate, add_user, running_engine
from tests.devserver import (
    ROOT,
    EngineEnv,
    WorkerProcess,
    dev_server,  # noqa: F401  (fixture)
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    listed_ids,
)
from tests.short_history import ShortHistoryCertificateWorkflow
from tests.workflow_helpers import DAY, run_id, status
from workflows.certificate import CertificateWorkflow

IMPORTED = 300
BURST = 60


@pytest.fixture(scope="module")
def engine_task_queue() -> str:
    return "icr-scale"


def metrics_url(log: str) -> str:
    found = re.search(r'"metrics": "(http://[^"]+)"', log) or re.search(r"metrics=(http://\S+)", log)
    assert found, f"the worker logged no metrics URL:\n{log[-3000:]}"
    return found.group(1)


def counter(url: str, name: str) -> float:
    """A counter's value on a Prometheus endpoint (0 when not yet incremented)."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    assert "temporal_" in text, "the SDK's own metrics are missing"
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + "{") or line.startswith(name + " ")]
    return sum(values)


async def fetchval(database_url: str, sql: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_an_import_killed_halfway_and_run_again_makes_each_certificate_exactly_once(
        engine_env: EngineEnv, tmp_path: Path) -> None:  # noqa: F811
    made = generate_registry(tmp_path, IMPORTED, seed=7, prefix=6)
    assert (await engine_env.starter("import", "users", str(made.users))).code == 0
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", "import", "certificates", str(made.certificates), "--concurrency", "4",
        cwd=ROOT, env=engine_env.environ(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    written = 0
    for _ in range(600):
        written = await fetchval(engine_env.database_url,
                                 "SELECT count(*) FROM certificates WHERE case_reference LIKE '30006%'")
        if written >= IMPORTED // 2:
            break
        await asyncio.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # as hard as an interruption gets: no clean-up runs
    await process.wait()
    assert IMPORTED // 2 <= written < IMPORTED, "the import was not interrupted halfway"

    again = await engine_env.starter("import", "certificates", str(made.certificates), timeout=180)
    assert again.code == 0, str(again)
    assert "0 refused" in again.stdout

    assert await fetchval(engine_env.database_url,
                          "SELECT count(*) FROM certificates WHERE case_reference LIKE '30006%'") == IMPORTED
    assert await fetchval(engine_env.database_url, "SELECT count(*) FROM audit_log WHERE action = "
                          "'certificate_imported' AND case_reference LIKE '30006%'") == IMPORTED
    # One workflow run per certificate, none started twice (closed runs are counted too).
    client = await Client.connect(engine_env.temporal_address)
    ids: list[str] = []
    for _ in range(100):
        ids = await listed_ids(client, "WorkflowType = 'CertificateWorkflow' AND WorkflowId >= 'certificate-30006' "
                                       "AND WorkflowId < 'certificate-30007'")
        if len(ids) >= IMPORTED:
            break
        await asyncio.sleep(0.2)
    assert len(ids) == IMPORTED and len(set(ids)) == IMPORTED


async def test_two_workers_share_a_burst_and_do_each_side_effect_once(engine_env: EngineEnv,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    due = datetime.now(UTC) + timedelta(seconds=20)
    made = generate_registry(tmp_path, BURST, seed=8, prefix=7, due_at=due, due_within=2)
    first = WorkerProcess(engine_env, tmp_path / "first.log")
    second = WorkerProcess(engine_env, tmp_path / "second.log")
    await asyncio.gather(first.start(), second.start())
    try:
        assert (await engine_env.starter("import", "users", str(made.users))).code == 0
        run = await engine_env.starter("import", "certificates", str(made.certificates))
        assert run.code == 0, str(run)
        sql = "SELECT count(*) FROM notifications WHERE case_reference LIKE '30007%'"
        for _ in range(600):
            if await fetchval(engine_env.database_url, sql) >= BURST:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # anything done twice would show by now
        # Each worker serves Prometheus metrics on the port it logged; between them they
        # counted each notification once.
        raised = [await asyncio.to_thread(counter, metrics_url(w.log()), "icr_notifications_raised")
                  for w in (first, second)]
    finally:
        codes = await asyncio.gather(first.stop(30), second.stop(30))
    assert codes == [0, 0]
    assert await fetchval(engine_env.database_url, sql) == BURST
    assert await fetchval(engine_env.database_url, "SELECT count(DISTINCT case_reference) FROM notifications "
                                                   "WHERE case_reference LIKE '30007%'") == BURST
    assert await fetchval(engine_env.database_url, "SELECT count(*) FROM audit_log WHERE action = "
                                                   "'notification_raised' AND case_reference LIKE '30007%'") == BURST
    assert sum(raised) == BURST, raised


async def test_continue_as_new_under_a_low_history_limit_loses_no_signal_and_no_update(
        time_env: WorkflowEnvironment, store: Store) -> None:
    # A worker whose certificate workflow continues as new every 40 history events: outside
    # callers cannot lower the limit (it is a class attribute, not an input).
    async with running_engine(time_env, store, certificate_workflow=ShortHistoryCertificateWorkflow) as engine:
        await continues_as_new_losing_nothing(engine)


async def continues_as_new_losing_nothing(engine: Engine) -> None:
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_user(engine.store, "XOFFICE", ["case_management", "cross_office"])
    contacts = ["CONTACT-A", "CONTACT-B"]
    for login in contacts:
        await add_user(engine.store, login, ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 10 * DAY)
    # Forced low: the run continues as new every few messages while more keep arriving.
    handle = await engine.start(engine.ref)
    await engine.env.sleep(1)
    first_run = await run_id(engine, handle)
    rounds = 25

    async def one_round(i: int) -> str:
        signalled = handle.signal(CertificateWorkflow.record_activity, ActivityEvent(
            event_id=f"e{i}", kind="amendment", occurred_at=now + timedelta(seconds=i)))
        updated = handle.execute_update(CertificateWorkflow.reassign_contact, ReassignContactRequest(
            user_login_id="XOFFICE", new_contact_login_id=contacts[i % 2]))
        _, result = await asyncio.gather(signalled, updated)
        return result.provider_contact_login

    for i in range(rounds):
        assert await one_round(i) == contacts[i % 2]
    latest = now + timedelta(seconds=rounds - 1)
    for _ in range(100):  # the last signal may still be on its way into the newest run
        s = await status(handle)
        if s.last_activity_at == latest:
            break
        await asyncio.sleep(0.1)
    assert s.last_activity_at == latest and s.inactivity_deadline == latest + 608 * DAY
    ledger = await engine.store.ledger_of(engine.ref)
    assert sorted(r.event_id for r in ledger) == sorted(f"e{i}" for i in range(rounds))
    final = contacts[(rounds - 1) % 2]
    assert s.provider_contact_login == final
    assert (await engine.store.certificate_row(engine.ref)).provider_contact_login == final
    assert await run_id(engine, handle) != first_run, "the run never continued as new"


# --- an import paced by the workers' backlog -----------------------------------------------


class FakeQueue:
    """A task queue whose backlog is the next of `backlogs` at each look, with a worker or without."""

    def __init__(self, backlogs: list[int | None], polling: bool = True) -> None:
        self.backlogs, self.polling, self.looks = backlogs, polling, 0

    async def backlog(self) -> int | None:
        self.looks += 1
        return self.backlogs[min(self.looks, len(self.backlogs)) - 1]

    async def worker_polling(self) -> bool:
        return self.polling


def gate(queue: FakeQueue, limit: int, patience: float = 60.0) -> BacklogGate:
    return BacklogGate(queue.backlog, limit, task_queue="q", worker_polling=queue.worker_polling, every=0.01,
                       patience=patience)


async def test_starts_are_held_while_the_backlog_is_over_the_limit_and_go_once_it_is_not() -> None:
    queue = FakeQueue([900, 700, 501, 500, 900])
    held = gate(queue, 500)
    await held.wait()
    assert queue.looks == 4 and held.held_seconds > 0  # 900, 700, 501 held; 500 is at the limit
    await held.wait()  # within the interval: no second look
    assert queue.looks == 4


async def test_a_server_that_cannot_say_and_a_limit_of_zero_never_hold() -> None:
    unknown = FakeQueue([None])
    await gate(unknown, 10).wait()
    assert unknown.looks == 1
    off = FakeQueue([10_000])
    await gate(off, 0).wait()
    assert off.looks == 0


async def test_a_backlog_with_a_worker_is_waited_out_and_one_without_is_refused_clearly() -> None:
    slow = FakeQueue([900] * 30 + [0], polling=True)
    await gate(slow, 500, patience=0.05).wait()
    assert slow.looks == 31
    nobody = gate(FakeQueue([900], polling=False), 500, patience=0.05)
    with pytest.raises(NoWorker, match="'q'.*start a worker on that task queue"):
        await nobody.wait()


async def test_the_server_reports_the_backlog_the_import_is_paced_by(engine_env: EngineEnv) -> None:  # noqa: F811
    """On the real server: starts into a queue no worker polls build a backlog that the gate
    sees, holds for, and refuses once it knows no worker will work through it."""
    client = await Client.connect(engine_env.temporal_address, data_converter=pydantic_data_converter)
    idle = CertificateClient(client, "icr-scale-no-worker")
    refs = [case_reference(n, 8) for n in range(12)]
    for ref in refs:
        assert await idle.start(ref)
    try:
        backlog: int | None = 0
        for _ in range(100):  # the server's estimate follows the starts within moments
            backlog = await idle.backlog()
            if backlog is not None and backlog >= len(refs):
                break
            await asyncio.sleep(0.1)
        assert backlog == len(refs)
        held = BacklogGate(idle.backlog, 5, task_queue=idle.task_queue, worker_polling=idle.worker_polling,
                           every=0.1, patience=0.3)
        with pytest.raises(NoWorker, match="icr-scale-no-worker"):
            await held.wait()
        assert held.held_seconds > 0
        await BacklogGate(idle.backlog, len(refs), task_queue=idle.task_queue,
                          worker_polling=idle.worker_polling).wait()  # at the limit: goes at once
    finally:
        for ref in refs:
            await idle.handle(ref).terminate("test over")

"""A real worker process's probes and shutdown, as an orchestrator sees them: started while
PostgreSQL and Temporal are unreachable it stays alive and not ready, and becomes ready when
they come; on SIGTERM it reports not ready at once, lets a running step finish (here one held
longer than the old fixed 10-second grace) and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from tests.devserver import (
    EngineEnv,
    WorkerProcess,
    dev_server,  # noqa: F401  (fixture)
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    eventually,
    new_case_reference,
    workflow_id,
)


@pytest.fixture(scope="module")
def engine_task_queue() -> str:
    return "icr-health"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def probe(port: int, path: str) -> tuple[int, dict[str, object]]:
    """GET the worker's probe: (status, body); (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


async def aprobe(port: int, path: str) -> tuple[int, dict[str, object]]:
    return await asyncio.to_thread(probe, port, path)


@contextlib.asynccontextmanager
async def forwarder(listen_port: int, target: str) -> AsyncIterator[None]:
    """A TCP relay from 127.0.0.1:listen_port to target (host:port, or a Unix socket's path):
    the server behind it "comes back" when the relay starts listening."""

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if target.startswith("/"):
            return await asyncio.open_unix_connection(target)
        host, port = target.rsplit(":", 1)
        return await asyncio.open_connection(host, int(port))

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks: set[asyncio.Task[None]] = set()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await connect()
        for task in (asyncio.create_task(pipe(client_reader, server_writer)),
                     asyncio.create_task(pipe(server_reader, client_writer))):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(relay, "127.0.0.1", listen_port)
    try:
        yield
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_worker_started_while_the_servers_are_away_waits_not_ready_then_serves(
        engine_env: EngineEnv, tmp_path: Path) -> None:  # noqa: F811
    temporal_port, db_port, health_port = free_port(), free_port(), free_port()
    # The session's embedded PostgreSQL listens on a Unix socket only: the worker reaches it
    # over TCP through the relay.
    db = urlsplit(engine_env.database_url)
    socket_dir = Path(parse_qs(db.query)["host"][0])
    db_socket = str(next(socket_dir.glob(".s.PGSQL.*")))
    via_relay = f"postgresql://{db.username}@127.0.0.1:{db_port}{db.path}"
    worker = WorkerProcess(engine_env, tmp_path / "worker.log", env={
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}", "DATABASE_URL": via_relay,
        "ICR_HEALTH_PORT": str(health_port), "ICR_METRICS_PORT": "0"})
    try:
        await worker.start(until="servers_unreachable")
        status, _ = await eventually(lambda: aprobe_answered(health_port, "/livez"), "the liveness probe")
        assert status == 200
        status, body = await aprobe(health_port, "/readyz")
        assert status == 503 and body["ready"] is False and body["polling"] is False, body
        # Still waiting several attempts later, not exited (it used to exit at once).
        await eventually(lambda: _log_count(worker, "servers_unreachable", 3), "three attempts", timeout=30)
        assert worker.process is not None and worker.process.returncode is None, worker.log()[-3000:]

        async with forwarder(temporal_port, engine_env.temporal_address), \
                forwarder(db_port, db_socket):
            await eventually(lambda: _logged(worker, "worker_running"), "the worker to poll", timeout=40)
            status, body = await eventually(lambda: _ready(health_port), "ready", timeout=10)
            assert body == {"polling": True, "stopping": False, "database": "reachable",
                            "temporal": "reachable", "ready": True}
            assert await worker.stop(30) == 0, worker.log()[-3000:]
    finally:
        await worker.stop(30)


async def test_sigterm_lets_a_running_step_finish_past_the_old_grace_and_exits_0(
        engine_env: EngineEnv, dev_server: WorkflowEnvironment, tmp_path: Path) -> None:  # noqa: F811
    health_port = free_port()
    worker = WorkerProcess(engine_env, tmp_path / "worker.log", env={
        "ICR_HEALTH_PORT": str(health_port), "ICR_SHUTDOWN_GRACE_SECONDS": "25", "ICR_METRICS_PORT": "0"})
    await worker.start()
    assert (await aprobe(health_port, "/readyz"))[0] == 200
    held = 12.0  # longer than the 10 s the worker used to allow, inside the 25 s configured
    blocker = await asyncpg.connect(engine_env.database_url)
    try:
        lock = blocker.transaction()
        await lock.start()
        # The certificate's first step reads the registry: it waits on this lock.
        await blocker.execute("LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE")
        reference = new_case_reference()
        handle = await dev_server.client.start_workflow(
            "CertificateWorkflow", {"case_reference": reference}, id=workflow_id(reference),
            task_queue=engine_env.task_queue, start_signal="record_activity",
            start_signal_args=[{"event_id": "e1", "kind": "bill",
                                "occurred_at": datetime.now(UTC).isoformat()}])

        async def step_waiting() -> bool:
            return bool(await blocker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))
        await eventually(step_waiting, "the worker's step to wait on the lock", timeout=30)

        assert worker.process is not None
        signalled = time.monotonic()
        worker.process.send_signal(15)  # SIGTERM
        status, body = await eventually(lambda: _not_ready(health_port), "not ready after SIGTERM", timeout=5)
        assert body["stopping"] is True
        await asyncio.sleep(held)
        assert worker.process.returncode is None, "exited before its running step finished"
        await lock.rollback()
    finally:
        await blocker.close()
    code = await asyncio.wait_for(worker.process.wait(), 20)
    assert code == 0, worker.log()[-3000:]
    assert time.monotonic() - signalled >= held
    history = await handle.fetch_history()
    types = [event.event_type for event in history.events]
    # The registry read is a local activity: it completed within its workflow task, which
    # recorded its result.
    assert EventType.EVENT_TYPE_MARKER_RECORDED in types, \
        "the step running at SIGTERM did not complete: " + ", ".join(EventType.Name(t) for t in types)
    assert "worker_stopping" in worker.log() and "worker_stopped" in worker.log()


async def aprobe_answered(port: int, path: str) -> tuple[int, dict[str, object]] | None:
    answer = await aprobe(port, path)
    return answer if answer[0] else None


async def _ready(port: int) -> tuple[int, dict[str, object]] | None:
    answer = await aprobe(port, "/readyz")
    return answer if answer[0] == 200 else None


async def _not_ready(port: int) -> tuple[int, dict[str, object]] | None:
    answer = await aprobe(port, "/readyz")
    return answer if answer[0] == 503 else None


async def _logged(worker: WorkerProcess, event: str) -> bool:
    if worker.process is not None and worker.process.returncode is not None:
        raise AssertionError(f"worker.py exited {worker.process.returncode}:\n{worker.log()[-3000:]}")
    return event in worker.log()


async def _log_count(worker: WorkerProcess, event: str, count: int) -> bool:
    await _logged(worker, event)
    return worker.log().count(event) >= count

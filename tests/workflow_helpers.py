"""Helpers shared by the workflow-level tests (and the history recorder): certificates started
on the time-skipping server, the `status` query, search attributes read raw, polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import asyncpg
import pytest
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from benchmarks.protocol import count
from icr.adapters.db.store import Store
from icr.domain.models import CertificateStatus, RespondRequest, RespondResult
from tests.conftest import Engine, Postgres, add_certificate, add_user
from workflows.certificate import CertificateWorkflow

T = TypeVar("T")

DAY = timedelta(days=1)


async def status(handle: WorkflowHandle) -> CertificateStatus:
    return await handle.query(CertificateWorkflow.status)


async def search_attributes(engine: Engine, handle: WorkflowHandle) -> dict[str, object]:
    """Read raw: the time-skipping server's describe() cannot decode an unset Datetime."""
    raw = await engine.client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace="default", execution={"workflow_id": handle.id}))
    fields = raw.workflow_execution_info.search_attributes.indexed_fields
    return {name: json.loads(payload.data) if payload.data else None for name, payload in fields.items()}


async def run_id(engine: Engine, handle: WorkflowHandle) -> str:
    raw = await engine.client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace="default", execution={"workflow_id": handle.id}))
    return raw.workflow_execution_info.execution.run_id


async def started_certificate(engine: Engine, inactive: timedelta, ref: str | None = None, *,
                              poa_paid: str = "0.00", poa_recouped: str = "0.00") -> WorkflowHandle:
    """A registered certificate (contact CASEWORKER1) last active `inactive` ago, its
    workflow started and its first steps taken."""
    ref = ref or engine.ref
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, ref, last_activity_at=now - inactive,
                          poa_paid=poa_paid, poa_recouped=poa_recouped)
    handle = await engine.start(ref)
    await engine.env.sleep(1)
    return handle


async def due_certificate(engine: Engine, ref: str | None = None, *, poa_paid: str = "0.00",
                          poa_recouped: str = "0.00") -> WorkflowHandle:
    """A registered certificate whose last activity was 608 days ago: due at once."""
    return await started_certificate(engine, 608 * DAY, ref, poa_paid=poa_paid, poa_recouped=poa_recouped)


async def respond(handle: WorkflowHandle, response: str, user: str = "CASEWORKER1",
                  message: str | None = None) -> RespondResult:
    return await handle.execute_update(
        CertificateWorkflow.respond, RespondRequest(user_login_id=user, response=response, message=message))



async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], seconds: float = 15) -> T:
    """Poll (in real time; time-skipping is locked meanwhile) until `ok(probe())`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await probe()
        if ok(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"still {value!r}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def database_outage(postgres: Postgres, store: Store) -> AsyncIterator[None]:
    """The test's database refuses new connections, and its open ones are cut, until the block ends."""
    database = await store.pool.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()


async def task_failures(handle: WorkflowHandle) -> int:
    """How many of the run's workflow tasks failed (each a task the worker could not complete)."""
    return count((await handle.fetch_history()).events).workflow_tasks_failed


async def start_refused(handle: WorkflowHandle, code: str) -> ApplicationError:
    """The refusal a start the workflow cannot use ends with (its type `code`)."""
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), 30)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == code, cause
    return cause

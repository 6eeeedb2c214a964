"""Start-up that tolerates the world: a server that already has the search attributes, and
two workers starting at once on a fresh namespace (both register the attributes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from tests.devserver import (
    SEARCH_ATTRIBUTES,
    EngineEnv,
    WorkerProcess,
    dev_server,  # noqa: F401  (fixture)
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    target_of,
    temporal_binary,
)

FRESH_NAMESPACE = "icr-fresh"
CONTRACT_ATTRIBUTES = {key.name for key in SEARCH_ATTRIBUTES}


@pytest.fixture(scope="module")
def engine_task_queue() -> str:
    return "icr-startup"


async def registered(env: WorkflowEnvironment, namespace: str) -> set[str]:
    listed = await env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace))
    return set(listed.custom_attributes)


async def test_a_worker_starts_against_a_server_that_already_has_the_attributes(
        engine_env: EngineEnv, dev_server: WorkflowEnvironment, tmp_path: Path) -> None:  # noqa: F811
    assert CONTRACT_ATTRIBUTES <= await registered(dev_server, "default")  # registered by the fixture
    worker = WorkerProcess(engine_env, tmp_path / "worker.log")
    await worker.start()  # fails with the worker's log if it does not come up
    try:
        assert "search_attributes_registered" not in worker.log()  # nothing to add
    finally:
        assert await worker.stop(30) == 0, worker.log()[-3000:]


@pytest.fixture(scope="module")
async def bare_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server with a namespace nobody has registered any attribute on."""
    env = await WorkflowEnvironment.start_local(
        namespace=FRESH_NAMESPACE, dev_server_existing_path=temporal_binary(), ui=False)
    try:
        yield env
    finally:
        await env.shutdown()


async def test_two_workers_started_at_once_on_a_fresh_namespace_both_come_up(
        bare_server: WorkflowEnvironment, engine_database: str, tmp_path: Path) -> None:  # noqa: F811
    assert not CONTRACT_ATTRIBUTES & await registered(bare_server, FRESH_NAMESPACE)
    env = EngineEnv(target_of(bare_server), engine_database, "icr-startup-fresh", tmp_path / "data",
                    namespace=FRESH_NAMESPACE)
    workers = [WorkerProcess(env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        # Both race to register the same attributes (and to migrate the same database).
        await asyncio.gather(*(w.start() for w in workers))
        assert CONTRACT_ATTRIBUTES <= await registered(bare_server, FRESH_NAMESPACE)
    finally:
        codes = [await w.stop(30) for w in workers]
    assert codes == [0, 0], "\n".join(w.log()[-3000:] for w in workers)

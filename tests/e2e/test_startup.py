"""Start-up with least privilege: a worker on a server that already has the search attributes
starts and adds nothing; on a fresh namespace it refuses, naming the command that registers
them, until `starter.py setup` (admin rights, once) has; then workers start together."""

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
        assert "search_attributes_registered" not in worker.log()  # it only checks
        # It says which servers it uses (never the database's user or password).
        assert f"using Temporal at {engine_env.temporal_address}, namespace default; PostgreSQL at " in worker.log()
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


async def test_on_a_fresh_namespace_workers_wait_for_setup_and_then_start_together(
        bare_server: WorkflowEnvironment, engine_database: str, tmp_path: Path) -> None:  # noqa: F811
    assert not CONTRACT_ATTRIBUTES & await registered(bare_server, FRESH_NAMESPACE)
    env = EngineEnv(target_of(bare_server), engine_database, "icr-startup-fresh", tmp_path / "data",
                    namespace=FRESH_NAMESPACE)
    refused = WorkerProcess(env, tmp_path / "refused.log")
    with pytest.raises(AssertionError, match="exited 2"):
        await refused.start()
    for name in ("IcrStage", "OpenTaskKind"):  # each missing one, with the command that adds it
        assert "lacks search attribute(s)" in refused.log() and name in refused.log(), refused.log()
    assert (f"temporal operator search-attribute create --namespace {FRESH_NAMESPACE} --name OpenTaskKind "
            "--type Keyword") in refused.log(), refused.log()
    assert "starter.py setup" in refused.log() and "tcld namespace search-attributes add" in refused.log()
    assert not CONTRACT_ATTRIBUTES & await registered(bare_server, FRESH_NAMESPACE), "a worker added one"

    setup = await env.starter("setup")
    assert setup.code == 0, str(setup)
    for name in CONTRACT_ATTRIBUTES:
        assert f"search attribute {name} (" in setup.stdout and "): registered" in setup.stdout, str(setup)
    assert "schedule icr-daily-digest (task queue icr-startup-fresh): created" in setup.stdout, str(setup)
    assert CONTRACT_ATTRIBUTES <= await registered(bare_server, FRESH_NAMESPACE)
    # setup needs no database: it says so by naming only Temporal.
    assert f"using Temporal at {env.temporal_address}, namespace {FRESH_NAMESPACE}\n" in setup.stderr, str(setup)

    again = await env.starter("setup")  # harmless to re-run
    assert again.code == 0 and "): registered" not in again.stdout and "already there" in again.stdout, str(again)

    workers = [WorkerProcess(env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        await asyncio.gather(*(w.start() for w in workers))  # and migrate the same database at once
        assert not any("digest_schedule_missing" in w.log() for w in workers)
    finally:
        codes = [await w.stop(30) for w in workers]
    assert codes == [0, 0], "\n".join(w.log()[-3000:] for w in workers)

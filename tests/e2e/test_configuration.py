"""Servers only as configured, through real processes: a partial configuration, or the
production marker with neither server variable, is refused at start naming the missing
variable (and nothing embedded is started in the data directory); every command says on stderr
which servers it uses; the commands that need only PostgreSQL run while TEMPORAL_ADDRESS
points at a port where nothing listens."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.devserver import (
    ROOT,
    EngineEnv,
    engine_database,  # noqa: F401  (fixture)
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def engine(engine_database: str, tmp_path: Path) -> EngineEnv:  # noqa: F811
    """Real PostgreSQL, and a TEMPORAL_ADDRESS where nothing listens."""
    return EngineEnv(f"127.0.0.1:{closed_port()}", engine_database, "icr-config", tmp_path / "data")


async def run_process(script: str, *args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, script, *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{script} {' '.join(args)} still running after {timeout} s: it did not refuse") from None
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


def error_line(err: str) -> str:
    """The refusal (a worker may log a warning before it)."""
    return next((line for line in err.splitlines() if line.startswith("error: ")), err)


@pytest.mark.parametrize("command", [["audit"], ["mail", "list"], ["policy", "show"]])
async def test_postgres_only_commands_run_while_temporal_is_unreachable(engine: EngineEnv, command: list[str]) -> None:
    run = await engine.starter(*command, timeout=30)
    assert run.code == 0, str(run)
    database = urlsplit(engine.database_url).path.lstrip("/")
    [said] = [line for line in run.stderr.splitlines() if line.startswith("using ")]
    assert said.startswith("using PostgreSQL at ") and f"database {database}" in said, str(run)
    assert "Temporal" not in said and "postgres:" not in said, str(run)  # no Temporal; no user or password


async def test_mail_list_says_why_the_mailer_is_off(engine: EngineEnv) -> None:
    run = await engine.starter("mail", "list", timeout=30)
    assert run.code == 0, str(run)
    assert "mailer is off: ICR_SMTP_HOST, ICR_MAIL_FROM, ICR_PORTAL_URL not set" in run.stdout, str(run)


async def test_temporal_without_database_is_refused_naming_database_url(engine: EngineEnv) -> None:
    env = without(engine.environ(), "DATABASE_URL")
    for script, args in (("starter.py", ["audit"]), ("starter.py", ["status", "300012345678"]), ("worker.py", [])):
        code, out, err = await run_process(script, *args, env=env)
        assert code == 2, f"{script} {args}: exit {code}\n{out}\n{err}"
        assert error_line(err).startswith("error: TEMPORAL_ADDRESS is set but DATABASE_URL is not"), err
        assert "Traceback" not in err, err
    assert not (engine.data_dir / "postgres").exists(), "an embedded PostgreSQL was started"


async def test_database_without_temporal_is_refused_naming_temporal_address(engine: EngineEnv) -> None:
    env = without(engine.environ(), "TEMPORAL_ADDRESS")
    code, out, err = await run_process("worker.py", env=env)
    assert code == 2, f"exit {code}\n{out}\n{err}"
    assert error_line(err).startswith("error: DATABASE_URL is set but TEMPORAL_ADDRESS is not"), err
    assert not (engine.data_dir / "temporal.db").exists(), "an embedded Temporal server was started"


async def test_the_production_marker_with_neither_variable_is_refused(engine: EngineEnv) -> None:
    env = {**without(engine.environ(), "TEMPORAL_ADDRESS", "DATABASE_URL"), "ICR_ENVIRONMENT": "production"}
    # Each names what it needs: the worker both servers, `policy show` only PostgreSQL.
    for script, args, missing in (("worker.py", [], "TEMPORAL_ADDRESS and DATABASE_URL are"),
                                  ("starter.py", ["policy", "show"], "DATABASE_URL is")):
        code, out, err = await run_process(script, *args, env=env)
        assert code == 2, f"{script}: exit {code}\n{out}\n{err}"
        assert error_line(err).startswith(f"error: ICR_ENVIRONMENT=production and {missing} not set"), err
    assert not engine.data_dir.exists() or not any(engine.data_dir.iterdir()), "something embedded was started"


def test_the_image_carries_the_production_marker() -> None:
    assert "ICR_ENVIRONMENT=production" in (ROOT / "Dockerfile").read_text()

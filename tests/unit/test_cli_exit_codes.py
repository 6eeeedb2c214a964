"""The operator's command line exits with the codes docs/operations.md documents, before it
touches a server where it can: 2 for a bad setting (naming the variable) or bad input, 3 when
a server cannot be reached (naming its address), and no write without an actor.

The servers are set to addresses where nothing listens, so a command that wrongly went on to
connect ends with 3 (or a traceback), not with the code expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from icr.cli.common import actor_of
from icr.cli.main import main

NOWHERE = {"TEMPORAL_ADDRESS": "127.0.0.1:1", "DATABASE_URL": "postgresql://icr:s3cret-pw@127.0.0.1:1/icr"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """The caller's settings left out; the servers where nothing listens."""
    import os

    for name in list(os.environ):
        if name.startswith(("ICR_", "TEMPORAL_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in NOWHERE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ICR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ICR_METRICS_PORT", "0")
    monkeypatch.setenv("ICR_PAYLOAD_ENCRYPTION", "false")
    return monkeypatch


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def test_a_bad_setting_exits_2_naming_the_variable(env: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("ICR_DB_POOL_SIZE", "abc")
    code, err = run(capsys, "status", "300000000001")
    assert code == 2, err
    assert err.startswith("error: bad setting: ICR_DB_POOL_SIZE='abc'") and "integer" in err, err
    assert "Traceback" not in err


def test_a_bad_port_or_a_missing_tls_file_exits_2_naming_the_variable(env: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("ICR_SMTP_PORT", "twenty-five")
    env.setenv("TEMPORAL_TLS_CA_CERT", "/nonexistent/ca.pem")
    code, err = run(capsys, "status", "300000000001")
    assert code == 2 and "ICR_SMTP_PORT='twenty-five'" in err, err
    env.delenv("ICR_SMTP_PORT")
    code, err = run(capsys, "status", "300000000001")
    assert code == 2 and "TEMPORAL_TLS_CA_CERT='/nonexistent/ca.pem': no such file" in err, err


@pytest.mark.parametrize("firm", ["abc", "26517' OR 'x'='x", ""])
def test_a_bad_firm_exits_2(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], firm: str) -> None:
    for command in ("queue", "list"):
        code, err = run(capsys, command, "--firm", firm)
        assert code == 2, err
        assert "is not a provider firm id (digits only" in err, err


def test_a_missing_file_exits_2_before_connecting(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    code, err = run(capsys, "import", "users", str(tmp_path / "missing.csv"), "--actor", "ops.carol")
    assert code == 2, err
    assert f"{tmp_path / 'missing.csv'}: no such file" in err, err
    code, err = run(capsys, "import", "certificates", str(tmp_path), "--actor", "ops.carol")
    assert code == 2 and f"{tmp_path}: not a file" in err, err


def test_an_unreachable_temporal_server_exits_3_naming_its_address(env: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "status", "300000000001")
    assert code == 3, err
    said, error = err.split("\n", 1)  # first which servers it uses, then why it stops
    assert said == "using Temporal at 127.0.0.1:1, namespace default; PostgreSQL at 127.0.0.1:1, database icr", err
    assert error.startswith("error: cannot reach the Temporal server at 127.0.0.1:1: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["import", "users", "{file}"],
    ["import", "certificates", "{file}"],
    ["import", "exercise-responses", "{file}"],
    ["import", "caseworkers", "{file}"],
    ["policy", "set", "--inactivity-days", "365", "--reason", "why"],
    ["set-policy", "--inactivity-days", "365", "--reason", "why"],
    ["outage", "declare", "--from", "2026-11-01T09:00:00+00:00", "--to", "2026-11-01T12:00:00+00:00",
     "--reason", "why"],
    ["rollout", "resume"],
    ["close", "300000000001", "--reason", "discharged"],
    ["record-activity", "300000000001", "--kind", "bill", "--event-id", "e1"],
])
def test_a_write_without_an_actor_is_refused_before_connecting(
        env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]) -> None:
    file = tmp_path / "rows.csv"
    file.write_text("header\n")
    env.setenv("USER", "whoever-the-container-is")
    code, err = run(capsys, *[word.format(file=file) for word in argv])
    assert code == 2, err
    assert "pass --actor NAME or set ICR_ACTOR" in err and "nothing was written" in err, err
    env.setenv("ICR_ACTOR", "   ")  # blank is no one
    code, err = run(capsys, *[word.format(file=file) for word in argv])
    assert code == 2 and "pass --actor NAME or set ICR_ACTOR" in err, err


def test_the_actor_is_the_option_else_icr_actor() -> None:
    assert actor_of("ops.alice", {"ICR_ACTOR": "ops.bob"}) == "ops.alice"
    assert actor_of(None, {"ICR_ACTOR": " ops.bob "}) == "ops.bob"
    assert actor_of(" ops.alice ", {}) == "ops.alice"


def test_the_worker_refuses_a_bad_setting_the_same_way(env: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import worker

    env.setenv("ICR_DB_POOL_SIZE", "abc")
    code = worker.main([])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: bad setting: ICR_DB_POOL_SIZE='abc'") and "integer" in err, err

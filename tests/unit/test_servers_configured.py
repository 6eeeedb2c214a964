"""Servers only as configured: the embedded ones start only where asked for (neither server
variable set outside production, or ICR_EMBEDDED=true); a partial configuration, or a
production marker with neither variable, is refused before anything starts, naming the
missing variable. No server runs here: a refusal comes first, and nothing else is started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from icr.runtime.servers import Services, services
from icr.runtime.settings import ConfigurationError, Settings

VARIABLES = ("TEMPORAL_ADDRESS", "DATABASE_URL", "ICR_EMBEDDED", "ICR_ENVIRONMENT", "ICR_DATA_DIR")


@pytest.fixture(autouse=True)
def no_server_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test passes: none of the environment's own settings."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def settings(tmp_path: Path, **given: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", **given)


async def refusal(settings: Settings, *, temporal: bool = True, database: bool = True) -> str:
    with pytest.raises(ConfigurationError) as refused:
        async with services(settings, temporal=temporal, database=database):
            pass
    assert not settings.data_dir.exists(), "nothing embedded may start before the refusal"
    return str(refused.value)


async def test_temporal_without_database_is_refused_naming_database_url(tmp_path: Path) -> None:
    message = await refusal(settings(tmp_path, temporal_address="temporal.internal:7233"))
    assert "DATABASE_URL is not" in message and "partial configuration" in message, message
    assert "ICR_EMBEDDED=true" in message, message  # and how to ask for the embedded one on purpose


async def test_database_without_temporal_is_refused_naming_temporal_address(tmp_path: Path) -> None:
    message = await refusal(settings(tmp_path, database_url="postgresql://icr:secret-pw@db.internal:5432/icr"))
    assert "TEMPORAL_ADDRESS is not" in message, message
    assert "secret-pw" not in message, message


async def test_production_marker_with_neither_variable_is_refused_naming_both(tmp_path: Path) -> None:
    message = await refusal(settings(tmp_path, environment="production"))
    assert "ICR_ENVIRONMENT=production" in message, message
    assert "TEMPORAL_ADDRESS and DATABASE_URL are not set" in message, message


async def test_embedded_false_with_neither_variable_is_refused(tmp_path: Path) -> None:
    message = await refusal(settings(tmp_path, embedded=False))
    assert "ICR_EMBEDDED=false" in message and "TEMPORAL_ADDRESS and DATABASE_URL" in message, message


async def test_a_command_needing_only_postgres_does_not_need_temporal_configured(tmp_path: Path) -> None:
    # With only DATABASE_URL (the production marker on): nothing to refuse, nothing embedded.
    given = settings(tmp_path, database_url="postgresql://icr@db.internal/icr", environment="production")
    async with services(given, temporal=False) as found:
        assert found.temporal_address is None and found.database_url == "postgresql://icr@db.internal/icr"
        assert not found.database_embedded
    # ... while a command needing Temporal too is refused, naming it.
    assert "TEMPORAL_ADDRESS is not" in await refusal(given)


def test_embedded_only_with_neither_variable_outside_production_or_when_asked(tmp_path: Path) -> None:
    assert settings(tmp_path).embedded_allowed  # ./run demo, ./run test: zero configuration
    assert not settings(tmp_path, environment="production").embedded_allowed
    assert not settings(tmp_path, temporal_address="t:7233").embedded_allowed
    assert not settings(tmp_path, database_url="postgresql://h/d").embedded_allowed
    assert settings(tmp_path, temporal_address="t:7233", embedded=True).embedded_allowed  # on purpose
    assert settings(tmp_path, environment="production", embedded=True).embedded_allowed
    assert not settings(tmp_path, embedded=False).embedded_allowed


def test_the_environment_variables_set_the_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICR_ENVIRONMENT", "production")
    assert not Settings().embedded_allowed
    monkeypatch.setenv("ICR_EMBEDDED", "true")
    assert Settings().embedded_allowed
    monkeypatch.setenv("ICR_ENVIRONMENT", "prod")  # a typo is refused, not taken for development
    with pytest.raises(ValueError, match="ICR_ENVIRONMENT"):
        Settings()


def test_which_servers_is_said_without_user_or_password() -> None:
    said = Services("temporal.internal:7233", "postgresql://icr:s3cret@db.internal:5432/icr?sslmode=require",
                    None).describe("icr-prod")
    assert said == ("using Temporal at temporal.internal:7233, namespace icr-prod; "
                    "PostgreSQL at db.internal:5432, database icr")
    socket = Services(None, "postgresql://postgres:@/icr?host=/tmp/pg", None, database_embedded=True)
    assert socket.describe("default") == "using PostgreSQL at /tmp/pg, database icr (embedded)"

"""The settings' defaults that name places: the data directory is the project root's `.data/`
(README), wherever the settings module sits in the tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from icr.runtime.settings import ConfigurationError, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_data_directory_is_the_project_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ICR_DATA_DIR", raising=False)
    assert (ROOT / "pyproject.toml").is_file()
    assert Settings.from_env().data_dir == ROOT / ".data"


def test_a_worker_without_a_cache_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local steps need the certificate kept in memory while they run (workflows/certificate.py)."""
    monkeypatch.setenv("ICR_MAX_CACHED_WORKFLOWS", "0")
    with pytest.raises(ConfigurationError, match="ICR_MAX_CACHED_WORKFLOWS='0'"):
        Settings.from_env()
    monkeypatch.setenv("ICR_MAX_CACHED_WORKFLOWS", "1")
    assert Settings.from_env().max_cached_workflows == 1

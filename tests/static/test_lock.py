"""requirements.lock pins what ./run installs: every requirement of pyproject.toml is in it at
the version pyproject names, and the environment the tests run in is the locked one."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonical(name)] = version
    return pins


def test_every_requirement_of_pyproject_is_locked_at_its_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    pins = locked()
    stale = []
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        if pins.get(canonical(name)) != version:
            stale.append(f"{requirement} (lock: {pins.get(canonical(name))})")
    assert not stale, f"requirements.lock is stale, run ./run lock: {stale}"


def test_the_environment_is_the_locked_one() -> None:
    drift = {name: (version, metadata.version(name)) for name, version in locked().items()
             if metadata.version(name) != version}
    assert not drift, f"installed versions differ from requirements.lock (locked, installed): {drift}"

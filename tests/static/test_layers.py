"""The layers, checked: one import-linter layers contract over the packages (pyproject.toml),
every module inside one of its layers, and every effect the rules can emit has an activity of
that name registered on the worker."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

from temporalio import activity

from activities.certificate_activities import CertificateActivities
from icr.domain.models import Effect

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)


def layer_packages(root: Path) -> list[str]:
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def modules_outside_the_layers(root: Path) -> list[str]:
    """Every module of the root packages that no layer contains (a new `icr/foo.py`, say)."""
    packages = layer_packages(root)
    outside = []
    for top in ("icr", "workflows", "activities"):
        for path in sorted((root / top).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            inside = any(module == p or module.startswith(p + ".") for p in packages)
            if not inside and module != "icr":  # the namespace that holds the layers
                outside.append(module)
    return outside


def copy_of_the_tree(tmp_path: Path) -> Path:
    for top in ("icr", "workflows", "activities"):
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_one_layers_contract_is_kept() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout
    assert len([line for line in run.stdout.splitlines() if line.startswith("The layers:")]) == 1


def test_every_module_sits_in_a_layer() -> None:
    assert modules_outside_the_layers(ROOT) == []


def test_a_module_outside_every_layer_is_caught(tmp_path: Path) -> None:
    root = copy_of_the_tree(tmp_path)
    (root / "icr" / "stray.py").write_text('"""Belongs to no layer."""\n')
    assert modules_outside_the_layers(root) == ["icr.stray"]


def test_the_rules_importing_the_runtime_breaks_the_contract(tmp_path: Path) -> None:
    root = copy_of_the_tree(tmp_path)
    letters = root / "icr" / "domain" / "rules" / "letters.py"
    letters.write_text(letters.read_text() + "\nimport icr.runtime.logs  # noqa: E402,F401\n")
    run = lint_imports(root)
    assert run.returncode != 0, run.stdout
    assert "icr.domain.rules.letters -> icr.runtime.logs" in run.stdout


def effect_kinds() -> set[str]:
    union = typing.get_args(Effect)[0]
    return {model.model_fields["kind"].default for model in typing.get_args(union)}


def test_every_effect_kind_has_a_registered_activity_of_that_name() -> None:
    registered = {activity._Definition.must_from_callable(fn).name
                  for fn in CertificateActivities(store=None).all()}  # type: ignore[arg-type]
    kinds = effect_kinds()
    assert {"raise_notification", "close_certificate", "record_activity_events"} <= kinds
    assert kinds <= registered, f"effects without an activity: {sorted(kinds - registered)}"

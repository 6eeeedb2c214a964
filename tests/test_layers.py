"""The layers, checked: import-linter's contracts (pyproject.toml), and every effect the rules
can emit has an activity of that name registered on the worker."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

from temporalio import activity

from activities.certificate_activities import CertificateActivities
from icr.models import Effect

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_are_kept() -> None:
    linter = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def effect_kinds() -> set[str]:
    union = typing.get_args(Effect)[0]
    return {model.model_fields["kind"].default for model in typing.get_args(union)}


def test_every_effect_kind_has_a_registered_activity_of_that_name() -> None:
    registered = {activity._Definition.must_from_callable(fn).name
                  for fn in CertificateActivities(store=None).all()}  # type: ignore[arg-type]
    kinds = effect_kinds()
    assert {"raise_notification", "close_certificate", "record_activity_events"} <= kinds
    assert kinds <= registered, f"effects without an activity: {sorted(kinds - registered)}"

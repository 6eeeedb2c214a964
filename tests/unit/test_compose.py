"""docker-compose.yml cannot run on this machine (no Docker): this reads it and checks that
every service, port, variable and volume the stack table of docs/deployment.md names is there,
that Temporal runs on temporalio/server after a schema job (not the deprecated auto-setup),
and that Prometheus scrapes the server's and every worker's metrics endpoint."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from icr.runtime.namespace import digest_schedule
from icr.runtime.settings import TASK_QUEUE
from workflows.digest import DIGEST_WORKFLOW_ID
from workflows.search_attributes import SEARCH_ATTRIBUTES, cli_type

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def stack_table() -> list[dict[str, str]]:
    """The rows of the stack table in docs/deployment.md (its section 'The stack')."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    section = text[text.index("## The stack (`docker-compose.yml`)"):]
    section = section[:section.index("\n## ", 5)] if "\n## " in section[5:] else section
    table = section[section.index("| service |"):]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append({"service": cells[0], "ports": cells[1], "variables": cells[2], "volumes": cells[3]})
    return rows


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_every_service_port_variable_and_volume_the_deployment_page_names_is_in_the_compose_file() -> None:
    services = compose()["services"]
    volumes = compose().get("volumes", {})
    rows = stack_table()
    assert {names(r["service"])[0] for r in rows} == set(services), "docs/deployment.md's table lists every service"
    for row in rows:
        name = names(row["service"])[0]
        service = services[name]
        published = [str(p) for p in service.get("ports", [])] + [str(p) for p in service.get("expose", [])]
        for port in names(row["ports"]):
            assert any(p == port or p.endswith(f":{port}") or p.endswith(f":{port}:{port}") for p in published), \
                f"{name}: port {port} is not published or exposed ({published})"
        env = service.get("environment", {})
        for variable in names(row["variables"]):
            assert variable in env, f"{name}: variable {variable} is not set"
        mounts = [str(v).split(":")[0] for v in service.get("volumes", [])]
        for volume in names(row["volumes"]):
            assert volume in mounts, f"{name}: volume {volume} is not mounted ({mounts})"
            if not volume.startswith("."):
                assert volume in volumes, f"volume {volume} is not declared"
            elif volume.startswith("./deploy/"):  # shipped with the repository (certs are the operator's)
                assert (ROOT / volume).exists(), f"{volume} is not in the repository"


def test_temporal_runs_on_the_server_image_after_a_schema_job_not_auto_setup() -> None:
    services = compose()["services"]
    images = {name: s.get("image", "") for name, s in services.items()}
    assert not any("auto-setup" in image for image in images.values())
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    schema = "\n".join(services["temporal-schema"]["command"])
    assert "setup-schema" in schema and "update-schema" in schema and "temporal_visibility" in schema
    depends = services["temporal"]["depends_on"]
    assert depends["temporal-schema"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["temporal-setup"]["condition"] == "service_completed_successfully"
    assert "namespace create" in "\n".join(services["temporal-setup"]["command"])


def test_prometheus_scrapes_the_server_and_every_worker() -> None:
    services = compose()["services"]
    assert services["temporal"]["environment"]["PROMETHEUS_ENDPOINT"].endswith(":8000")
    worker_port = services["worker"]["environment"]["ICR_METRICS_PORT"]
    config_path = next(v.split(":")[0] for v in services["prometheus"]["volumes"] if "prometheus.yml" in v)
    config = yaml.safe_load((ROOT / config_path).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["temporal-server"]["static_configs"][0]["targets"] == ["temporal:8000"]
    dns = jobs["icr-worker"]["dns_sd_configs"][0]
    assert dns["names"] == ["worker"] and str(dns["port"]) == worker_port


def test_no_default_secrets_and_encryption_keys_on_the_workers() -> None:
    services = compose()["services"]
    for name in ("worker", "codec-server", "portal"):
        assert ":?" in services[name]["environment"]["ICR_PAYLOAD_KEYS"], f"{name} has a default key"
    assert ":?" in services["temporal"]["environment"]["POSTGRES_PWD"]
    assert "sslmode=require" in services["worker"]["environment"]["DATABASE_URL"]
    portal = services["portal"]["environment"]
    assert "sslmode=require" in portal["DATABASE_URL"]
    for secret in ("ICR_PORTAL_SESSION_SECRET", "ICR_OIDC_CLIENT_SECRET", "ICR_OIDC_ISSUER"):
        assert ":?" in portal[secret], f"the portal has a default {secret}"


def test_the_server_reads_the_shipped_dynamic_config_with_eager_activities() -> None:
    temporal = compose()["services"]["temporal"]
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    source = next(v.split(":")[0] for v in temporal["volumes"] if v.split(":")[1] == path)
    config = yaml.safe_load((ROOT / source).read_text())
    assert config["system.enableActivityEagerExecution"] == [{"value": True}]


def test_prometheus_loads_the_alerts_and_grafana_provisions_both_dashboards() -> None:
    services = compose()["services"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("./"))
    assert [mounts["./deploy/prometheus/alerts.yml"]] == config["rule_files"]
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "icr.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    dashboards = sorted(p.name for p in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    assert dashboards == ["icr-operations.json", "icr-reviews.json"]
    sources = {s["type"]: s for s in yaml.safe_load((provisioning / "datasources" / "icr.yml").read_text())["datasources"]}
    assert set(sources) == {"prometheus", "grafana-postgresql-datasource"}
    database = sources["grafana-postgresql-datasource"]
    assert database["url"] == "icr-db:5432" and database["jsonData"]["sslmode"] == "require"
    for variable in ("ICR_GRAFANA_DB_USER", "ICR_GRAFANA_DB_PASSWORD"):
        assert variable in grafana["environment"] and f"${variable}" in yaml.safe_dump(database)
    assert ":?" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"], "no default admin password"


def setup_script() -> str:
    return "\n".join(compose()["services"]["temporal-setup"]["command"])


def test_the_setup_job_registers_exactly_the_declared_search_attributes() -> None:
    # The engine's single declaration; the job's list is written from it (this assertion's message
    # prints the line to paste), and the workers only check: a missing one stops them.
    declared = {f"{name}={cli_type(key)}" for name, key in SEARCH_ATTRIBUTES.items()}
    loop = re.search(r"for spec in (.*?); do", setup_script(), re.S)
    assert loop is not None, "the setup job has no `for spec in ...; do` loop over the attributes"
    listed = loop.group(1).replace("\\", " ").split()
    assert sorted(listed) == sorted(declared), f"write it as: for spec in {' '.join(declared)}; do"
    assert "temporal operator search-attribute create" in setup_script()


def test_the_setup_job_creates_the_digest_schedule_as_the_engine_declares_it() -> None:
    found = re.search(r"temporal schedule create (.*?)2>&1", setup_script(), re.S)
    assert found is not None, "the setup job creates no schedule"
    flags = dict(re.findall(r"--([a-z-]+) ('[^']*'|\S+)", found.group(1).replace("\\", " ")))
    expected = digest_schedule(TASK_QUEUE)
    action = expected.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert flags["schedule-id"] == DIGEST_WORKFLOW_ID
    assert (flags["workflow-id"], flags["type"], flags["task-queue"]) == (action.id, action.workflow, action.task_queue)
    assert [flags["cron"].strip("'")] == list(expected.spec.cron_expressions)
    assert flags["time-zone"] == expected.spec.time_zone_name
    assert expected.policy.overlap == ScheduleOverlapPolicy.SKIP and flags["overlap-policy"] == "Skip"
    assert "ICR_TASK_QUEUE" not in compose()["services"]["worker"]["environment"]  # the workers' queue is the default


def test_the_workers_get_the_mail_settings_and_no_example_addresses() -> None:
    env = compose()["services"]["worker"]["environment"]
    for name in ("ICR_SMTP_HOST", "ICR_MAIL_FROM"):
        assert env[name] == f"${{{name}:-}}", f"{name}: passed through, empty unless set ({env[name]!r})"
    assert env["ICR_PORTAL_URL"].startswith("${ICR_PORTAL_PUBLIC_URL:?"), "the portal's own address, required"

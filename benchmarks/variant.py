"""`./run bench --variant NAME=VALUE[,...]`: the worker's environment overrides a run compares
with the engine's defaults, and the side-by-side table of the passes (default, variant,
default again), each on certificates of its own against the floors measured just before it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

# Settings the benchmark sets itself: overriding them would point the second worker at other
# servers, data or task queue, or at payloads the benchmark's client cannot read.
FIXED = {
    "TEMPORAL_ADDRESS": "the run's own dev server",
    "TEMPORAL_NAMESPACE": "the run's own dev server",
    "DATABASE_URL": "the run's own PostgreSQL",
    "ICR_DATA_DIR": "the run's data directory",
    "ICR_PAYLOAD_KEYS": "the run's payload keys",
    "ICR_PAYLOAD_ENCRYPTION": "the benchmark's client encodes payloads as shipped",
    "ICR_TASK_QUEUE": "the benchmark's client sends to the engine's queue",
    "ICR_METRICS_PORT": "a free port for each worker",
}


def parse_variant(text: str, known: Collection[str]) -> dict[str, str]:
    """NAME=VALUE[,NAME=VALUE...] into the overrides; each NAME must be one of `known` (the
    engine's settings: a misspelt one would otherwise measure the defaults twice) and not one
    the benchmark fixes. ValueError names the item at fault."""
    overrides: dict[str, str] = {}
    for item in text.split(","):
        name, equals, value = (part.strip() for part in item.partition("="))
        if not equals:
            raise ValueError(f"{item.strip()!r} is not NAME=VALUE")
        if not name:
            raise ValueError(f"{item.strip()!r} has no name before '='")
        if name in FIXED:
            raise ValueError(f"{name} is set by the benchmark ({FIXED[name]})")
        if name not in known:
            raise ValueError(f"{name} is not one of the engine's settings (icr/runtime/settings.py)")
        if name in overrides:
            raise ValueError(f"{name} is given twice")
        overrides[name] = value
    return overrides


def passes(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(column heading, that pass's figures: onboarding, ingest) for each pass, in the order they
    ran: the regular phases (at the top of the results, as in a run without --variant), the
    variant's, and the defaults' again."""
    variant = r["variant"]
    found = [("default", r), ("variant", variant)]
    if "default_again" in variant:
        found.append(("default again", variant["default_again"]))
    return found


def rate(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "not run"
    return f"{figures['per_s']}/s = {figures['ratio']} x {figures['floor_per_s']}/s"


def variant_lines(r: dict[str, Any], protocol_text: Any) -> list[str]:
    """The passes side by side: rate against its floor and CPU per item of the worker and the
    server, then each pass's protocol per item (`protocol_text` renders one, as the regular
    phases print it)."""
    columns = passes(r)
    overrides = ",".join(f"{k}={v}" for k, v in r["variant"]["overrides"].items())
    lines = [f"\nvariant {overrides}, in the same run (new certificates and a floor before each phase):",
             (f"  {'figure':<36}" + "".join(f"{heading:<30}" for heading, _ in columns)).rstrip()]

    def row(name: str, value: Any) -> None:
        lines.append((f"  {name:<36}" + "".join(f"{value(f)!s:<30}" for _, f in columns)).rstrip())

    def cpu(phase: str, key: str) -> Any:
        return lambda f: f[phase][key] if phase in f else "not run"
    row("onboarding: rate = ratio x floor", lambda f: rate(f["onboarding"]))
    row("  worker CPU ms per certificate", cpu("onboarding", "worker_cpu_ms_per_certificate"))
    row("  server CPU ms per certificate", cpu("onboarding", "server_cpu_ms_per_certificate"))
    row("ingest: rate = ratio x floor", lambda f: rate(f.get("ingest")))
    row("  worker CPU ms per event", cpu("ingest", "worker_cpu_ms_per_event"))
    row("  server CPU ms per event", cpu("ingest", "server_cpu_ms_per_event"))
    for phase, key, what in (("onboarding", "protocol_per_certificate", "certificate"),
                             ("ingest", "protocol_per_event", "event")):
        for heading, f in columns:
            if phase in f:
                lines.append(f"    {f'protocol per {what}, {heading}':<42} {protocol_text(f[phase].get(key))}")
    return lines

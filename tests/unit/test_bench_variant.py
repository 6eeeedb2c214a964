"""The benchmark's --variant (benchmarks/variant.py): its parsing, and the passes side by side."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from benchmarks.bench import print_table, protocol_text, variant_arg
from benchmarks.variant import parse_variant, variant_lines

KNOWN = {"ICR_SANDBOX_CONTEXT_CACHE", "ICR_MAX_CACHED_WORKFLOWS", "DATABASE_URL"}


def test_overrides_are_parsed_in_order_a_value_may_hold_equals() -> None:
    assert parse_variant("ICR_SANDBOX_CONTEXT_CACHE=false, ICR_MAX_CACHED_WORKFLOWS = 0", KNOWN) == {
        "ICR_SANDBOX_CONTEXT_CACHE": "false", "ICR_MAX_CACHED_WORKFLOWS": "0"}
    assert parse_variant("ICR_MAX_CACHED_WORKFLOWS=a=b", KNOWN) == {"ICR_MAX_CACHED_WORKFLOWS": "a=b"}


@pytest.mark.parametrize(("text", "message"), [
    ("X", "'X' is not NAME=VALUE"),
    ("ICR_MAX_CACHED_WORKFLOWS=0,", "'' is not NAME=VALUE"),
    ("=false", "'=false' has no name before '='"),
    ("ICR_SANDBOX_CONTEXT_CACH=false", "ICR_SANDBOX_CONTEXT_CACH is not one of the engine's settings"),
    ("DATABASE_URL=postgresql://elsewhere/db", "DATABASE_URL is set by the benchmark"),
    ("ICR_MAX_CACHED_WORKFLOWS=0,ICR_MAX_CACHED_WORKFLOWS=5", "ICR_MAX_CACHED_WORKFLOWS is given twice"),
])
def test_a_bad_item_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        parse_variant(text, KNOWN)


def test_the_command_line_knows_the_engines_settings_and_says_which_item_is_bad() -> None:
    assert variant_arg("ICR_MAX_CACHED_WORKFLOWS=0") == {"ICR_MAX_CACHED_WORKFLOWS": "0"}
    with pytest.raises(argparse.ArgumentTypeError, match="'X' is not NAME=VALUE"):
        variant_arg("X")
    with pytest.raises(argparse.ArgumentTypeError, match="ICR_NO_SUCH is not one of the engine's settings"):
        variant_arg("ICR_NO_SUCH=1")


def figures(rate: float, floor: float, worker_ms: float) -> dict[str, Any]:
    """One pass's onboarding and ingest as bench.py records them (protocol left unmeasured)."""
    return {"onboarding": {"per_s": rate, "floor_per_s": floor, "ratio": round(rate / floor, 2),
                           "worker_cpu_ms_per_certificate": worker_ms, "server_cpu_ms_per_certificate": 40.0},
            "ingest": {"per_s": rate + 1, "floor_per_s": floor, "ratio": round((rate + 1) / floor, 2),
                       "worker_cpu_ms_per_event": worker_ms + 1, "server_cpu_ms_per_event": 20.0}}


def test_the_passes_are_printed_side_by_side_in_the_order_they_ran() -> None:
    results = {**figures(20.0, 40.0, 17.5), "variant": {
        "overrides": {"ICR_SANDBOX_CONTEXT_CACHE": "false"}, **figures(10.0, 50.0, 30.5),
        "default_again": figures(30.0, 60.0, 18.5)}}
    lines = variant_lines(results, protocol_text)
    assert "ICR_SANDBOX_CONTEXT_CACHE=false" in lines[0]
    header = lines[1]
    assert header.index("default") < header.index("variant") < header.index("default again")
    rate = next(line for line in lines if line.strip().startswith("onboarding"))
    assert rate.index("20.0/s = 0.5 x 40.0/s") < rate.index("10.0/s = 0.2 x 50.0/s") < rate.index(
        "30.0/s = 0.5 x 60.0/s")
    worker = next(line for line in lines if "worker CPU ms per event" in line)
    assert worker.split()[-3:] == ["18.5", "31.5", "19.5"]
    protocol = [line.strip().split("  ")[0] for line in lines if "protocol per certificate" in line]
    assert protocol == ["protocol per certificate, default", "protocol per certificate, variant",
                        "protocol per certificate, default again"]
    assert all(line.endswith("not measured") for line in lines if "protocol per" in line)


def test_without_a_variant_the_table_has_no_variant_section(capsys: pytest.CaptureFixture[str]) -> None:
    print_table({"floors": {}, **figures(20.0, 40.0, 17.5)})
    assert "variant" not in capsys.readouterr().out

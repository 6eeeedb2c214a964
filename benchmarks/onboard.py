"""The full onboarding rehearsal: every open certificate (200,000 by default) through
`starter.py import certificates`, on the embedded default, watching the server and workers.

    ./run bench-onboard --data-dir /var/tmp/icr-200k            # start, or carry on where it stopped
    ./run bench-onboard --data-dir /var/tmp/icr-200k --certificates 50000 --workers 2

Resumable like the import it drives: the data directory keeps the servers' state, the
generated registry (the same seed writes the same files) and the samples taken so far, so a
re-run after an interruption (or in another session) restarts the servers on that state and
imports what is left; nothing is started twice. Every `--every` seconds it samples, into
`samples.jsonl` in the data directory: open certificates, each worker's and the server's
resident memory and CPU, the workers' failed workflow tasks and activities (from their metrics),
the task queue's backlog, the load average and the onboarding rate since the last sample. At the
end it checks that every certificate is open and running once and that none reports a problem,
and saves the summary (memory at 10k / 50k / 100k / 200k open, rates, health) as
`benchmarks/results/onboard-<UTC time>.json`; a run stopped early (Ctrl-C, an error) saves its
summary too, marked `"finished": false`.

Run it under `nice -n 19` to let other work on the machine go first. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import QUICK, Bench, cpu_seconds, engine_env, free_port, loadavg, pct, rss_mb  # noqa: E402
from icr.adapters.temporal.client import CertificateClient  # noqa: E402
from icr.domain.models import ActivityEvent  # noqa: E402
from icr.runtime.engine import connect_temporal  # noqa: E402
from icr.runtime.keyring import payload_keys  # noqa: E402
from icr.runtime.servers import services  # noqa: E402
from icr.runtime.settings import Settings  # noqa: E402
from icr.services.synthetic import case_reference, generate_registry  # noqa: E402

PREFIX = 7  # case references 30007nnnnnnn: apart from the other benchmark's sets
LEVELS = [10_000, 50_000, 100_000, 200_000]
OPEN = "WorkflowType = 'CertificateWorkflow' AND ExecutionStatus = 'Running'"
ONBOARDED = f"{OPEN} AND IcrStage IS NOT NULL"  # its first steps done: the registry read, the stage written
NOT_RUNNING = "WorkflowType = 'CertificateWorkflow' AND ExecutionStatus != 'Running'"
# Set by the server on a workflow whose workflow tasks keep failing (a stuck certificate).
PROBLEMS = "WorkflowType = 'CertificateWorkflow' AND TemporalReportedProblems IS NOT NULL"
FAILURE_COUNTERS = {"wft_failed": "temporal_workflow_task_execution_failed",
                    "activity_failed": "temporal_activity_execution_failed"}


def ports(data: Path) -> dict[str, int]:
    """The ports this data directory's servers use, chosen once and kept for every resume."""
    path = data / "ports.json"
    if path.exists():
        return {k: int(v) for k, v in json.loads(path.read_text()).items()}
    chosen = {"temporal": free_port(), "ui": free_port(), "codec": free_port(), "metrics": free_port()}
    path.write_text(json.dumps(chosen))
    return chosen


def level_points(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each level reached, the first sample at or above it."""
    points = []
    for level in LEVELS:
        at = next((s for s in samples if s.get("onboarded", 0) >= level), None)
        if at is not None:
            points.append({"level": level, "onboarded": at["onboarded"], "worker_rss_mb": at["worker_rss_mb"],
                           "server_rss_mb": at["server_rss_mb"]})
    return points


def worker_failures(metrics_port: int) -> dict[str, float | None]:
    """A worker's failed workflow tasks and activities since it started, read from the SDK's
    counters on its metrics endpoint (None when the endpoint does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return dict.fromkeys(FAILURE_COUNTERS)
    totals: dict[str, float | None] = dict.fromkeys(FAILURE_COUNTERS, 0.0)
    for line in text.splitlines():  # "name{labels} value" or "name value"; "#" lines are comments
        name = line.split("{", 1)[0].split(" ", 1)[0]
        for key, counter in FAILURE_COUNTERS.items():
            if name in (counter, counter + "_total"):
                totals[key] = (totals[key] or 0.0) + float(line.rsplit(" ", 1)[-1])
    return totals


def server_errors(log: Path, since: int) -> int:
    """ERROR lines the dev server wrote to its log after byte `since` (this run's part)."""
    with log.open("rb") as f:
        f.seek(since)
        return sum(1 for line in f if b" level=ERROR " in line)


async def sampler(bench: Bench, workers: list[tuple[int, int]], out: Path, every: float,
                  stop: asyncio.Event) -> None:
    """Every `every` seconds until `stop`, one sample line; `workers` are (pid, metrics port)."""
    assert bench.client is not None
    queue = CertificateClient(bench.client, bench.settings.task_queue)
    last_done, last_t = await bench.count(ONBOARDED), time.monotonic()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
        done, t = await bench.count(ONBOARDED), time.monotonic()
        failures = [await asyncio.to_thread(worker_failures, port) for _, port in workers]
        sample = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "open": await bench.count(OPEN),
                  "onboarded": done, "per_s": round((done - last_done) / max(t - last_t, 1e-9), 1),
                  "worker_rss_mb": [round(rss_mb(pid), 1) for pid, _ in workers],
                  "worker_cpu_s": [round(cpu_seconds(pid), 1) for pid, _ in workers],
                  **{key: [f[key] for f in failures] for key in FAILURE_COUNTERS},
                  "backlog": await queue.backlog(),
                  "server_rss_mb": round(rss_mb(bench.temporal_pid), 1),
                  "server_cpu_s": round(cpu_seconds(bench.temporal_pid), 1), "loadavg": loadavg()}
        with out.open("a") as f:
            f.write(json.dumps(sample) + "\n")
        await bench.say(f"{sample['open']} open, {done} onboarded, {sample['per_s']}/s; "
                        f"backlog {sample['backlog']}; worker RSS {sample['worker_rss_mb']} MB, "
                        f"server RSS {sample['server_rss_mb']} MB; failed tasks {sample['wft_failed']}")
        last_done, last_t = done, t


def counter_total(samples: list[dict[str, Any]], key: str) -> float | None:
    """A worker counter's total over every run in `samples`: a worker restarted on resume
    counts from zero again, so a fall starts a new run. None when no sample has it (samples
    from before the counters were recorded)."""
    total, seen = 0.0, False
    last: dict[int, float] = {}
    for sample in samples:
        for i, value in enumerate(sample.get(key) or []):
            if value is None:
                continue
            seen = True
            previous = last.get(i, 0.0)
            total += value - previous if value >= previous else value
            last[i] = value
    return total if seen else None


async def probe(bench: Bench, wanted: int, n: int = 20) -> dict[str, Any]:
    """What users see with every certificate open: `n` certificates picked at random answer
    the `status` query, and an activity event sent to each is applied (its last activity moves)."""
    assert bench.client is not None
    certificates = CertificateClient(bench.client, bench.settings.task_queue)
    refs = [case_reference(i, PREFIX) for i in random.Random(PREFIX).sample(range(wanted), n)]
    query_s = []
    for ref in refs:
        t0 = time.monotonic()
        await certificates.status(ref)
        query_s.append(time.monotonic() - t0)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    sent = time.monotonic()
    for i, ref in enumerate(refs):
        await certificates.record_activity(ref, ActivityEvent(
            event_id=f"rehearsal-probe-{at:%Y%m%dT%H%M%S}-{i}", kind="amendment", occurred_at=at))
    applied_s: list[float] = []
    waiting = set(refs)
    while waiting and time.monotonic() - sent < 300:
        for ref in sorted(waiting):
            last = (await certificates.status(ref)).last_activity_at
            if last is not None and last >= at:
                applied_s.append(time.monotonic() - sent)
                waiting.discard(ref)
        await asyncio.sleep(0.5)
    return {"certificates": n, "status_query_s_p50": round(pct(query_s, 50), 2),
            "status_query_s_max": round(max(query_s), 2), "events_applied": len(applied_s),
            "event_applied_s_max": round(max(applied_s), 1) if applied_s else None}


async def run(args: argparse.Namespace) -> int:
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    p = ports(data)
    registry = data / "registry"
    made = data / "registry.json"  # what was generated, so that a resume imports the same files
    if not made.exists():
        generate_registry(registry, args.certificates, seed=PREFIX, prefix=PREFIX, inactivity_days=608)
        made.write_text(json.dumps({"certificates": args.certificates}))
    wanted = int(json.loads(made.read_text())["certificates"])
    if wanted != args.certificates:
        raise SystemExit(f"error: {data} holds a registry of {wanted} certificates, not {args.certificates}; "
                         "resume with that number or use a new data directory")
    settings = Settings(data_dir=data, temporal_port=p["temporal"], ui_port=p["ui"], codec_port=p["codec"],
                        log_format="json", log_level="warning", embedded=True)
    bench = Bench(QUICK, data, settings)
    server_log = data / "temporal.log"
    log_from = server_log.stat().st_size if server_log.exists() else 0  # this run's server errors only
    async with services(settings) as svc:
        assert svc.temporal_address  # embedded
        keys = payload_keys(settings, embedded=True)
        assert keys is not None  # the engine as shipped: encryption on
        bench.env = engine_env(svc, data, log_level="info")
        bench.temporal_pid = int((data / "temporal.pid").read_text())
        bench.client = await connect_temporal(settings, svc.temporal_address)
        workers = []  # (pid, metrics port)
        for i in range(args.workers):
            port = p["metrics"] if i == 0 else free_port()
            bench.env["ICR_METRICS_PORT"] = str(port)
            workers.append(((await bench.spawn(f"worker-{i}", "worker.py", wait_for="worker_running")).pid, port))
        bench.env["ICR_LOG_LEVEL"] = "warning"
        samples_path = data / "samples.jsonl"
        stop = asyncio.Event()
        watch = asyncio.create_task(sampler(bench, workers, samples_path, args.every, stop))
        started = time.monotonic()
        await bench.say(f"data {data}; server {svc.temporal_address}; UI {svc.ui_url}; workers {workers}")
        end: dict[str, Any] = {"finished": False}
        try:
            await bench.starter("import", "users", str(registry / "users.csv"))
            await bench.starter("import", "certificates", str(registry / "certificates.csv"), "--no-progress")
            # The import returns once every start is accepted; their first tasks follow.
            deadline = time.monotonic() + 600
            while await bench.count(ONBOARDED) < wanted and time.monotonic() < deadline:
                await asyncio.sleep(5)
            end = {"finished": True, "open": await bench.count(OPEN), "open_with_stage": await bench.count(ONBOARDED),
                   "not_running": await bench.count(NOT_RUNNING), "reporting_problems": await bench.count(PROBLEMS),
                   "probe": await probe(bench, wanted)}
        finally:
            stop.set()
            await watch
            for proc in bench.procs:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
            samples = [json.loads(line) for line in samples_path.read_text().splitlines() if line.strip()]
            summary = {
                "certificates": wanted, **end,
                "onboarded_at_last_sample": samples[-1]["onboarded"] if samples else None,
                "this_run_seconds": round(time.monotonic() - started, 1), "workers": args.workers,
                "memory_at_levels": level_points(samples),
                "worker_rss_mb_max": max((max(s["worker_rss_mb"]) for s in samples if s["worker_rss_mb"]),
                                         default=None),
                "server_rss_mb_max": max((s["server_rss_mb"] for s in samples), default=None),
                **{f"{key}_sampled": counter_total(samples, key) for key in FAILURE_COUNTERS},
                "server_errors_this_run": server_errors(server_log, log_from),
                "samples": len(samples), "data_dir": str(data)}
            out = ROOT / "benchmarks" / "results" / f"onboard-{datetime.now(UTC):%Y-%m-%dT%H%M%SZ}.json"
            out.write_text(json.dumps(summary, indent=2) + "\n")
            if end["finished"]:
                await bench.say(f"{end['open']} of {wanted} open ({end['open_with_stage']} with their stage written, "
                                f"{end['reporting_problems']} reporting problems); saved {out}")
            else:
                await bench.say(f"stopped early at {summary['onboarded_at_last_sample']} onboarded; saved {out}")
        healthy = end.get("not_running") == end.get("reporting_problems") == 0 \
            and end.get("probe", {}).get("events_applied") == end.get("probe", {}).get("certificates")
        return 0 if healthy and end["open"] == end["open_with_stage"] == wanted else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.onboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="where the servers, the registry and the samples live")
    parser.add_argument("--certificates", type=int, default=200_000, help="how many (default 200,000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    try:
        code = asyncio.run(run(parser.parse_args()))
    except KeyboardInterrupt:
        print("interrupted: the summary so far is saved; the same command carries on where this stopped")
        code = 130
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

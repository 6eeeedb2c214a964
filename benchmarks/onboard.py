"""The full onboarding rehearsal: every open certificate (200,000 by default) through
`starter.py import certificates`, on the embedded default, watching the server and workers.

    ./run bench-onboard --data-dir /var/tmp/icr-200k            # start, or carry on where it stopped
    ./run bench-onboard --data-dir /var/tmp/icr-200k --certificates 50000 --workers 2

Resumable like the import it drives: the data directory keeps the servers' state, the
generated registry (the same seed writes the same files) and the samples taken so far, so a
re-run after an interruption (or in another session) restarts the servers on that state and
imports what is left; nothing is started twice. Every `--every` seconds it samples, into
`samples.jsonl` in the data directory: open certificates, each worker's and the server's
resident memory and CPU, the load average and the onboarding rate since the last sample. At the end it
checks that every certificate is open and running once, and saves the summary (memory at
10k / 50k / 100k / 200k open, rates, health) as `benchmarks/results/onboard-<UTC time>.json`.

Run it under `nice -n 19` to let other work on the machine go first. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import QUICK, Bench, cpu_seconds, engine_env, free_port, loadavg, rss_mb  # noqa: E402
from icr.engine import connect_temporal  # noqa: E402
from icr.keyring import payload_keys  # noqa: E402
from icr.servers import services  # noqa: E402
from icr.settings import Settings  # noqa: E402
from icr.synthetic import generate_registry  # noqa: E402

PREFIX = 7  # case references 30007nnnnnnn: apart from the other benchmark's sets
LEVELS = [10_000, 50_000, 100_000, 200_000]
OPEN = "WorkflowType = 'CertificateWorkflow' AND ExecutionStatus = 'Running'"
ONBOARDED = f"{OPEN} AND IcrStage IS NOT NULL"  # its first steps done: the registry read, the stage written


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


async def sampler(bench: Bench, workers: list[int], out: Path, every: float, stop: asyncio.Event) -> None:
    last_done, last_t = await bench.count(ONBOARDED), time.monotonic()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
        done, t = await bench.count(ONBOARDED), time.monotonic()
        sample = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "open": await bench.count(OPEN),
                  "onboarded": done, "per_s": round((done - last_done) / max(t - last_t, 1e-9), 1),
                  "worker_rss_mb": [round(rss_mb(pid), 1) for pid in workers],
                  "worker_cpu_s": [round(cpu_seconds(pid), 1) for pid in workers],
                  "server_rss_mb": round(rss_mb(bench.temporal_pid), 1),
                  "server_cpu_s": round(cpu_seconds(bench.temporal_pid), 1), "loadavg": loadavg()}
        with out.open("a") as f:
            f.write(json.dumps(sample) + "\n")
        await bench.say(f"{sample['open']} open, {done} onboarded, {sample['per_s']}/s; "
                        f"worker RSS {sample['worker_rss_mb']} MB, server RSS {sample['server_rss_mb']} MB")
        last_done, last_t = done, t


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
                        log_format="json", log_level="warning")
    bench = Bench(QUICK, data, settings)
    async with services(settings) as svc:
        keys = payload_keys(settings, embedded=True)
        assert keys is not None  # the engine as shipped: encryption on
        bench.env = engine_env(svc, data, log_level="info")
        bench.temporal_pid = int((data / "temporal.pid").read_text())
        bench.client = await connect_temporal(settings, svc.temporal_address)
        workers = []
        for i in range(args.workers):
            bench.env["ICR_METRICS_PORT"] = str(p["metrics"] + i if i == 0 else free_port())
            workers.append((await bench.spawn(f"worker-{i}", "worker.py", wait_for="worker_running")).pid)
        bench.env["ICR_LOG_LEVEL"] = "warning"
        samples_path = data / "samples.jsonl"
        stop = asyncio.Event()
        watch = asyncio.create_task(sampler(bench, workers, samples_path, args.every, stop))
        started = time.monotonic()
        await bench.say(f"data {data}; server {svc.temporal_address}; UI {svc.ui_url}; workers {workers}")
        try:
            await bench.starter("import", "users", str(registry / "users.csv"))
            await bench.starter("import", "certificates", str(registry / "certificates.csv"), "--no-progress")
            # The import returns once every start is accepted; their first tasks follow.
            deadline = time.monotonic() + 600
            while (visible := await bench.count(ONBOARDED)) < wanted and time.monotonic() < deadline:
                await asyncio.sleep(5)
            open_now = await bench.count(OPEN)
        finally:
            stop.set()
            await watch
            for proc in bench.procs:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
        samples = [json.loads(line) for line in samples_path.read_text().splitlines() if line.strip()]
        summary = {
            "certificates": wanted, "open": open_now, "open_with_stage": visible,
            "this_run_seconds": round(time.monotonic() - started, 1), "workers": args.workers,
            "memory_at_levels": level_points(samples),
            "worker_rss_mb_max": max((max(s["worker_rss_mb"]) for s in samples if s["worker_rss_mb"]), default=None),
            "server_rss_mb_max": max((s["server_rss_mb"] for s in samples), default=None),
            "worker_exit_codes": [proc.returncode for proc in bench.procs],
            "samples": len(samples), "data_dir": str(data)}
        out = ROOT / "benchmarks" / "results" / f"onboard-{datetime.now(timezone.utc):%Y-%m-%dT%H%M%SZ}.json"
        out.write_text(json.dumps(summary, indent=2) + "\n")
        await bench.say(f"{open_now} of {wanted} open ({visible} with their stage written); saved {out}")
        return 0 if open_now == visible == wanted else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.onboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="where the servers, the registry and the samples live")
    parser.add_argument("--certificates", type=int, default=200_000, help="how many (default 200,000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    code = asyncio.run(run(parser.parse_args()))
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

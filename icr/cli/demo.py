"""`./run demo`: firms, users and certificates with payments on account and activity
histories, loaded through the same CSV import as production, then driven through every
branch so a newcomer can watch them in the Web UI.

So that overdue and escalated certificates appear within minutes rather than weeks, the demo
adds a "demo pace" policy version to its own (embedded) database: inactivity stays 608 days,
but responses fall due after 20 seconds and are returned after 40 (so an unanswered
certificate is escalated after its third notification, two minutes in).

At the end the demo runs the daily digest once (the schedule runs it at 07:00 UK time): each
provider user with open notifications gets one e-mail, delivered into the local SMTP sink
under the data directory unless ICR_SMTP_HOST names a real server.

While it runs, new certificates keep arriving (one per firm a minute, falling due at once),
so every stage stays populated and the list filters of docs/caseworker-guide.md keep returning rows.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from icr.adapters.db.outbox import Outbox
from icr.adapters.mail.mailer import MailConfig, Mailer, outbox_lines
from icr.adapters.temporal.client import CertificateClient, queue_query, stages_of, web_ui_link
from icr.domain.models import (
    ActivityEvent,
    CertificateStatus,
    CloseCertificateRequest,
    LaaDecisionRequest,
    RespondRequest,
)
from icr.portal.server import demo_portal_app
from icr.runtime.engine import Runtime, build_worker
from icr.runtime.http import free_port, serve, until_stopped
from icr.runtime.mail import mail_server
from icr.runtime.namespace import check_digest_schedule, register_digest_schedule
from icr.services import importer
from workflows.digest import DIGEST_WORKFLOW_ID, DailyDigestWorkflow

log = structlog.get_logger("demo")
DAY = timedelta(days=1)
DEMO_NOTE = "demo pace: responses due in 20 seconds, returned after 40"
DEMO_DUE = timedelta(seconds=20)
DEMO_RETURN = timedelta(seconds=40)

USERS = [
    # login_id, firm, roles, pre_silas, email (optional: OMANAGER has none)
    ("JSMITH", "26517", "case_management", "false", "j.smith@smith-law.example"),
    ("AJONES", "26517", "case_management;cross_office", "false", "a.jones@smith-law.example"),
    ("OMANAGER", "26517", "office_manager", "false", ""),
    ("LEGACY01", "26517", "case_management", "true", "legacy01@smith-law.example"),
    ("PKHAN", "40001", "case_management_supervisor", "false", "p.khan@khan-solicitors.example"),
    ("BWILLIAMS", "40001", "bill_preparation", "false", "b.williams@khan-solicitors.example"),
    ("CEVANS", "51234", "case_management;cross_office", "false", "c.evans@evans-partners.example"),
]

# What the demo does with each certificate: (plan, firm, contact)
PLANS = [
    ("active", "26517", "JSMITH"), ("active", "40001", "PKHAN"), ("active", "51234", "CEVANS"),
    ("ongoing", "26517", "JSMITH"),
    ("billed_keep_open", "26517", "JSMITH"),
    ("costs_negotiated_review", "40001", "PKHAN"),
    ("court_assessment_close", "51234", "CEVANS"),
    ("no_bill_due", "26517", "LEGACY01"),
    ("activity_during_notification", "40001", "PKHAN"),
    ("discharged", "51234", "CEVANS"),
    ("unanswered", "26517", "JSMITH"), ("unanswered", "40001", "PKHAN"), ("unanswered", "51234", "CEVANS"),
    ("staggered", "26517", "JSMITH"), ("staggered", "40001", "PKHAN"), ("staggered", "51234", "CEVANS"),
    ("staggered", "26517", "LEGACY01"),
    ("exercise_ongoing", "26517", "JSMITH"), ("exercise_billed", "40001", "PKHAN"),
    # Inactive for longer than 365 days but not 608: what a return to 365 days makes due at
    # once (longest inactive first); the 330-day one falls due five weeks later.
    ("inactive_500d", "26517", "JSMITH"), ("inactive_450d", "40001", "PKHAN"),
    ("inactive_400d", "51234", "CEVANS"), ("inactive_330d", "26517", "JSMITH"),
]
UNREGISTERED = "300009999001"
# The LAA caseworker directory: decisions are taken only under these names.
CASEWORKERS = ["LAA-CW-01", "LAA-CW-02", "ME"]

# New arrivals while the demo runs: one unanswered certificate per firm every minute keeps each
# firm's AwaitingResponse and Overdue populated (each spends 2 minutes in them, alternating
# every 20 seconds, before it is escalated); a reviewed one arrives when LAA review runs low.
ARRIVAL_EVERY = timedelta(seconds=60)
ARRIVAL_FIRMS = [("26517", "JSMITH"), ("40001", "PKHAN"), ("51234", "CEVANS")]
ARRIVAL_PREFIX = "30002"
MIN_IN_REVIEW = 3
MAX_ARRIVALS_ESCALATED = 6  # older escalated arrivals are closed by a demo caseworker


@dataclass
class DemoCertificate:
    case_reference: str
    plan: str
    firm: str
    contact: str
    last_activity_at: datetime
    poa_paid: str


def demo_certificates(now: datetime) -> list[DemoCertificate]:
    due_now = now - 608 * DAY - timedelta(minutes=1)
    certificates = []
    for i, (plan, firm, contact) in enumerate(PLANS):
        if plan == "active":
            last = now - (30 + 100 * i) * DAY
        elif plan == "staggered":  # fall due one after another, 90 seconds in and on
            last = now - 608 * DAY + timedelta(seconds=90 + 15 * (i - 13))
        elif plan.startswith("inactive_"):
            last = now - int(plan.removeprefix("inactive_").removesuffix("d")) * DAY
        else:
            last = due_now
        certificates.append(DemoCertificate(
            case_reference=f"3000014161{i:02d}", plan=plan, firm=firm, contact=contact,
            last_activity_at=last, poa_paid=f"{(i % 4) * 750}.00"))
    return certificates


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


async def seed(rt: Runtime, now: datetime) -> list[DemoCertificate]:
    folder = rt.settings.data_dir / "demo"
    certificates = demo_certificates(now)
    if await rt.store.certificate_row(certificates[0].case_reference) is not None:
        print(f"  demo data is already in {rt.settings.data_dir}; its certificates carry on where they "
              "were (delete that folder to start afresh)")
        return []
    policy, _ = await rt.store.policy_in_force(now)
    if policy.inactivity_days != 608 or policy.response_due != DEMO_DUE:
        await rt.store.add_policy_version(608, now - timedelta(seconds=1), "demo", DEMO_NOTE, now,
                                          response_due=DEMO_DUE, return_after=DEMO_RETURN)
    users = write_csv(folder / "users.csv", ["login_id", "provider_firm_id", "roles", "pre_silas", "email"],
                      [list(u) for u in USERS])
    certs = write_csv(
        folder / "certificates.csv",
        ["case_reference", "provider_firm_id", "office_code", "provider_contact_login", "granted_on",
         "last_activity_at", "poa_paid", "poa_recouped"],
        [[c.case_reference, c.firm, "2L847Q", c.contact, (c.last_activity_at - 200 * DAY).date().isoformat(),
          c.last_activity_at.isoformat(), c.poa_paid, "0.00"] for c in certificates])
    caseworkers = write_csv(folder / "caseworkers.csv", ["caseworker_id", "active"],
                            [[c, "true"] for c in CASEWORKERS])
    exercise = write_csv(
        folder / "exercise-responses.csv", ["case_reference", "response", "reported_on"],
        [[c.case_reference, "case_ongoing" if c.plan == "exercise_ongoing" else "complete_to_be_billed",
          "2024-01-31"] for c in certificates if c.plan.startswith("exercise")])
    for report in [
        await importer.import_users(rt.store, users, actor="demo", now=now),
        await importer.import_caseworkers(rt.store, caseworkers, actor="demo", now=now),
        await importer.import_exercise_responses(rt.store, rt.certificates, exercise, actor="demo", now=now),
        await importer.import_certificates(rt.store, rt.certificates, certs, actor="demo", now=now),
    ]:
        print(f"  {report.summary()}")
    # An activity source reports on a certificate the registry does not know.
    await rt.certificates.record_activity(UNREGISTERED, ActivityEvent(
        event_id="demo-unregistered-1", kind="amendment", occurred_at=now - 700 * DAY, source="demo"))
    return certificates


async def _when(certificates: CertificateClient, case_reference: str,
                ready: Callable[[CertificateStatus], bool], timeout: float = 60) -> CertificateStatus | None:
    for _ in range(int(timeout * 4)):
        status = await certificates.status(case_reference)
        if ready(status):
            return status
        await asyncio.sleep(0.25)
    return None


async def drive(rt: Runtime, certificate: DemoCertificate) -> None:
    """Take one certificate down its branch, as its provider and caseworker would."""
    certificates = rt.certificates
    ref = certificate.case_reference
    plan = certificate.plan
    responses = {
        "ongoing": "case_ongoing", "billed_keep_open": "complete_to_be_billed",
        "costs_negotiated_review": "complete_costs_negotiated",
        "court_assessment_close": "complete_court_assessment", "no_bill_due": "complete_no_bill_due",
    }
    if plan in responses or plan in ("activity_during_notification", "discharged"):
        status = await _when(certificates, ref, lambda s: s.open_notification is not None)
        if status is None:
            return  # already driven on an earlier run
    if plan in responses:
        responder = "AJONES" if certificate.contact == "LEGACY01" else certificate.contact
        await certificates.respond(ref, RespondRequest(
            user_login_id=responder, response=responses[plan], message="demo response"))
    if plan == "activity_during_notification":
        await certificates.record_activity(ref, ActivityEvent(
            event_id=f"demo-{ref}-bill", kind="bill", occurred_at=datetime.now(UTC), source="demo"))
    if plan == "discharged":
        await certificates.close(ref, CloseCertificateRequest(
            reason="discharged", occurred_at=datetime.now(UTC)))
    if plan in ("billed_keep_open", "court_assessment_close"):
        decision = "keep_open" if plan == "billed_keep_open" else "close"
        if await _when(certificates, ref, lambda s: s.open_task is not None and s.open_task.kind == "review"):
            await certificates.decide(ref, LaaDecisionRequest(
                caseworker="LAA-CW-01", decision=decision, reason=f"demo: {decision}"))


def arrivals(now: datetime, in_review: int) -> list[DemoCertificate]:
    """This round's new certificates, falling due now; case references from the clock, so a
    restarted demo does not reuse them."""
    stamp = f"{ARRIVAL_PREFIX}{int(now.timestamp()) // 10 % 10**6:06d}"
    due_now = now - 608 * DAY - timedelta(minutes=1)
    plans = [("unanswered", firm, contact) for firm, contact in ARRIVAL_FIRMS]
    if in_review < MIN_IN_REVIEW:
        plans.append(("costs_negotiated_review", *ARRIVAL_FIRMS[int(now.timestamp()) // 60 % len(ARRIVAL_FIRMS)]))
    return [DemoCertificate(case_reference=f"{stamp}{i}", plan=plan, firm=firm, contact=contact,
                            last_activity_at=due_now, poa_paid=f"{(i + 1) * 250}.00")
            for i, (plan, firm, contact) in enumerate(plans)]


async def _import_arrivals(rt: Runtime, certificates: list[DemoCertificate], now: datetime) -> None:
    path = write_csv(
        rt.settings.data_dir / "demo" / "arrivals.csv",
        ["case_reference", "provider_firm_id", "office_code", "provider_contact_login", "granted_on",
         "last_activity_at", "poa_paid", "poa_recouped"],
        [[c.case_reference, c.firm, "2L847Q", c.contact, (c.last_activity_at - 200 * DAY).date().isoformat(),
          c.last_activity_at.isoformat(), c.poa_paid, "0.00"] for c in certificates])
    report = await importer.import_certificates(rt.store, rt.certificates, path, actor="demo", now=now)
    log.info("demo_arrivals", summary=report.summary())


async def _tidy_escalated(rt: Runtime) -> None:
    """A demo caseworker closes the oldest escalated arrivals, so the queue stays readable."""
    certificates = rt.certificates
    escalated = sorted([c.case_reference async for c in certificates.list_certificates("Escalated", running=True)
                        if c.case_reference.startswith(ARRIVAL_PREFIX)])
    for ref in escalated[:-MAX_ARRIVALS_ESCALATED]:
        try:
            await certificates.decide(ref, LaaDecisionRequest(
                caseworker="LAA-DEMO", decision="close", reason="demo: older escalations are closed"))
        except Exception as err:  # already decided by someone in the Web UI, say
            log.info("demo_tidy_skipped", case_reference=ref, reason=str(err))


async def keep_stages_populated(rt: Runtime) -> None:
    """Bring in new certificates on a fixed beat (not after each round: the beat keeps the
    arrivals' overdue spells interleaved), until cancelled."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    beat = 0
    drivers: set[asyncio.Task[None]] = set()
    while True:  # the first arrivals at once (after a restart, the stages have thinned)
        await asyncio.sleep(max(started + beat * ARRIVAL_EVERY.total_seconds() - loop.time(), 0))
        beat += 1
        try:
            now = datetime.now(UTC)
            policy, _ = await rt.store.policy_in_force(now)
            if policy.response_due != DEMO_DUE:  # the real periods are back: arrivals would only pile up
                continue
            found = await stages(rt)
            new = arrivals(now, len(found["LaaReview"]))
            await _import_arrivals(rt, new, now)
            for certificate in new:
                if certificate.plan != "unanswered":
                    task = asyncio.create_task(drive(rt, certificate))
                    drivers.add(task)
                    task.add_done_callback(drivers.discard)
            await _tidy_escalated(rt)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the demo carries on; the next beat tries again
            log.warning("demo_arrivals_failed", error=str(err))


async def stages(rt: Runtime) -> dict[str, list[str]]:
    return stages_of([c async for c in rt.certificates.list_certificates()])


async def wait_for_every_stage(rt: Runtime, timeout: timedelta) -> dict[str, list[str]]:
    deadline = datetime.now(UTC) + timeout
    while True:
        found = await stages(rt)
        if all(found.values()) or datetime.now(UTC) >= deadline:
            return found
        await asyncio.sleep(2)


async def send_digest(rt: Runtime, mail: MailConfig) -> None:
    """Run the daily digest once now, and show each provider user's mail."""
    handle = await rt.client.start_workflow(
        DailyDigestWorkflow.run, id=f"{DIGEST_WORKFLOW_ID}-demo-{datetime.now(UTC):%Y%m%dT%H%M%S}",
        task_queue=rt.settings.task_queue)
    print("\nDaily digest e-mails (the schedule sends them at 07:00 UK time; sent once now):")
    try:
        result = await asyncio.wait_for(handle.result(), timeout=60)
    except TimeoutError:
        print("  not all sent within a minute: it retries with backoff (`./run starter mail list --failed`)")
    else:
        print(f"  {result.digest_date}: {result.queued} queued now, {result.sent} sent now, {result.already_sent} "
              f"sent earlier today, {len(result.failed)} failed, {len(result.without_address)} without an address")
        for line in outbox_lines(await Outbox(rt.store.pool).rows(day=result.digest_date)):
            print(f"  {line}")
    if mail.off:
        print(f"  Not sent: {mail.off}; `./run starter mail list` lists the outbox.", flush=True)
        return
    where = f"in the local SMTP sink: {mail.sink}" if mail.sink else f"sent through {mail.host}:{mail.port}"
    print(f"  The messages are {where}; `./run starter mail list` lists the outbox.", flush=True)


# One demo user per role, as the demo prints them for the provider portal.
PORTAL_USERS = [
    ("JSMITH", "case management: answers the reviews assigned to it (firm 26517)"),
    ("AJONES", "Cross Office: answers any review of firm 26517, also those of the pre-SiLAS LEGACY01"),
    ("OMANAGER", "Office Manager: sees firm 26517's reviews, cannot answer them"),
    ("BWILLIAMS", "bill preparation: sees firm 40001's reviews, cannot answer them"),
]


async def run_demo(rt: Runtime, keep_running: bool) -> int:
    now = datetime.now(UTC)
    ui = rt.services.ui_url or "(your Temporal Web UI)"
    print(f"Temporal Web UI: {ui}/namespaces/{rt.settings.temporal_namespace}/workflows", flush=True)
    host = rt.settings.portal_host
    port = free_port(host, rt.settings.portal_port, "ICR_PORTAL_PORT")
    portal = f"http://{host}:{port}"
    if "portal_url" not in rt.settings.model_fields_set:  # the digest's link opens this portal
        rt.settings = rt.settings.model_copy(update={"portal_url": f"{portal}/"})
    print("Seeding demo data through the CSV import ...", flush=True)
    if rt.services.temporal_embedded:  # on any other server it is `starter.py setup`'s
        await register_digest_schedule(rt.client, rt.settings.task_queue)
    else:
        await check_digest_schedule(rt.client)
    runner = await serve(demo_portal_app(rt.settings, rt.store, rt.certificates, [u[0] for u in USERS]), host, port)
    try:
        return await _run_demo(rt, keep_running, now, portal)
    finally:
        await runner.cleanup()


def print_portal(portal: str) -> None:
    print(f"\nProvider portal: {portal}/  (the demo signs you in by picking a demo user; responses are "
          "due 20 seconds after a review is raised and it returns to the LAA after 40, then is sent again)")
    for login_id, role in PORTAL_USERS:
        print(f"  {login_id:<10} {role}")
    print(flush=True)


async def _run_demo(rt: Runtime, keep_running: bool, now: datetime, portal: str) -> int:
    async with mail_server(rt.settings) as mail, build_worker(
            rt.client, rt.store, rt.settings, Mailer(Outbox(rt.store.pool), mail)):
        certificates = await seed(rt, now)
        print_portal(portal)
        await asyncio.gather(*(drive(rt, c) for c in certificates))
        if keep_running and certificates:
            print("Waiting until every stage has certificates (unanswered ones go Overdue after 20 s "
                  "and are escalated after their third notification, about 2 minutes) ...", flush=True)
            found = await wait_for_every_stage(rt, timedelta(minutes=3))
        else:
            await asyncio.sleep(2)  # visibility is eventually consistent
            found = await stages(rt)
        print("Certificates by stage:")
        for stage, refs in found.items():
            shown = " ".join(sorted(refs)[:6]) + (" ..." if len(refs) > 6 else "")
            print(f"  {stage:<17} {len(refs):>3}  {shown}")
        await send_digest(rt, mail)
        print_hints(rt, found)
        print_portal(portal)
        if keep_running:
            print("\nNew certificates arrive every minute so every stage stays populated. "
                  "The worker keeps running; press Ctrl-C to stop.", flush=True)
            arriving = asyncio.create_task(keep_stages_populated(rt))
            await until_stopped()
            arriving.cancel()
            await asyncio.gather(arriving, return_exceptions=True)
    return 0


def print_hints(rt: Runtime, found: dict[str, list[str]]) -> None:
    """Where to look next, naming certificates that are in that stage now."""
    namespace = rt.settings.temporal_namespace
    ui = rt.services.ui_url
    print(f"\nTemporal Web UI: {ui or '(your Temporal Web UI)'}/namespaces/{namespace}/workflows")
    filters = [
        ("overdue certificates of firm 26517", "IcrStage = 'Overdue' AND ProviderFirmId = '26517'"),
        ("everything waiting for the LAA", queue_query()),
        ("the review queue", queue_query("review")),
        ("the escalation queue", queue_query("escalation")),
    ]
    hints = []
    for what, query in filters:
        hints.append((what, query))
        if ui:
            hints.append(("", web_ui_link(ui, namespace, query)))
    hints.append(("the queue on the command line", "./run starter queue --kind review"))
    hints.append(("back to 365 days, dry run first", "./run starter policy set --inactivity-days 365 "
                                                     "--reason 'back to 12 months' --actor ME --dry-run"))
    if found["Overdue"]:
        hints.append(("an overdue certificate now", f"./run starter status {sorted(found['Overdue'])[0]}"))
    if found["LaaReview"]:
        hints.append(("one waiting for a decision now", f"./run starter decide {sorted(found['LaaReview'])[0]} "
                                                        "--caseworker ME --decision keep_open --reason 'bill expected'"))
    for what, hint in hints:
        print(f"  {what + ':' if what else '':<36} {hint}")
    print(flush=True)

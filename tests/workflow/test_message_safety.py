"""Messages from outside that must not hurt a certificate: a payload the worker cannot decode
(forged, or encrypted with a key it does not hold), a response whose user lookup outlasts the
return date, and multi-megabyte values held while a continue-as-new waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.converter import PayloadCodec
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from icr.adapters.db.rows import AuditRow
from icr.adapters.db.store import Store
from icr.adapters.temporal.codec import EncryptionCodec, PayloadKeys, data_converter
from icr.domain.models import (
    ActivityEvent,
    CertificateInput,
    CertificateStatus,
    CloseCertificateRequest,
    LaaDecisionRequest,
    ReassignContactRequest,
    RespondRequest,
)
from icr.domain.rules import workflow_id_for
from icr.services.importer import import_certificates
from tests.conftest import Engine, add_user, running_engine
from tests.short_history import SHORT_HISTORY_LIMIT, ShortHistoryCertificateWorkflow
from tests.workflow_helpers import (
    DAY,
    due_certificate,
    eventually,
    run_id,
    start_refused,
    started_certificate,
    status,
    task_failures,
)
from workflows.certificate import CertificateWorkflow


async def audited(engine: Engine, action: str) -> list[AuditRow]:
    return [a for a in await engine.store.audit_of(engine.ref) if a.action == action]


# --- forged payloads -----------------------------------------------------------------------


class ForgedCodec(PayloadCodec):
    """A caller's codec that encrypts with a key the engine does not hold, and reads the
    engine's answers with the engine's key (so that the test sees the refusal)."""

    def __init__(self, forged: PayloadKeys, real: PayloadCodec) -> None:
        self._forged, self._real = EncryptionCodec(forged), real

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._forged.encode(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._real.decode(payloads)


def forger(engine: Engine, key_id: str) -> Client:
    """A client on the engine's namespace whose payloads say `binary/encrypted` and do not decrypt."""
    config = engine.client.config()
    real = engine.client.data_converter.payload_codec
    assert real is not None
    config["data_converter"] = data_converter(ForgedCodec(PayloadKeys.generate(key_id), real))
    return Client(**config)


# The engine's own key id with another key (authentication fails), and a key id it does not have.
FORGED_KEYS = ["test1", "forged"]


@pytest.mark.parametrize("key_id", FORGED_KEYS)
async def test_forged_encrypted_signals_are_dropped_and_counted_and_the_certificate_carries_on(
        engine: Engine, key_id: str) -> None:
    handle = await started_certificate(engine, 10 * DAY)
    forged = forger(engine, key_id).get_workflow_handle(handle.id)
    now = await engine.now()
    await forged.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="forged", kind="bill",
                                                                           occurred_at=now))
    await forged.signal(CertificateWorkflow.laa_decision, LaaDecisionRequest(caseworker="CW", decision="close",
                                                                             reason="forged"))
    await forged.signal(CertificateWorkflow.close_certificate, CloseCertificateRequest(reason="forged",
                                                                                       occurred_at=now))
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="good", kind="bill",
                                                                           occurred_at=now))
    await engine.env.sleep(1)
    s = await eventually(lambda: status(handle), lambda s: s.last_activity_at == now)
    assert s.stage == "Active" and s.closed_at is None
    assert [r.event_id for r in await engine.store.ledger_of(engine.ref)] == ["good"]
    rows = await eventually(lambda: audited(engine, "messages_undecodable"),
                            lambda rows: sum(int(r.detail["messages"]) for r in rows) == 3)
    assert all("could not be decoded" in r.detail["reason"] for r in rows)
    # Why, without the payload: the key it named, or that it failed authentication.
    assert all(("failed authentication" if key_id == "test1" else "'forged'") in r.detail["last_reason"]
               for r in rows)
    assert await task_failures(handle) == 0


@pytest.mark.parametrize(("update", "request_"), [
    (CertificateWorkflow.respond, RespondRequest(user_login_id="CASEWORKER1", response="case_ongoing")),
    (CertificateWorkflow.decide, LaaDecisionRequest(caseworker="CW", decision="close", reason="forged")),
    (CertificateWorkflow.reassign_contact, ReassignContactRequest(user_login_id="X", new_contact_login_id="Y")),
], ids=["respond", "decide", "reassign_contact"])
async def test_a_forged_encrypted_update_is_refused_and_changes_nothing(engine: Engine, update: Any,
                                                                       request_: Any) -> None:
    handle = await started_certificate(engine, 608 * DAY)
    before = await status(handle)
    forged = forger(engine, "forged").get_workflow_handle(handle.id)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await asyncio.wait_for(forged.execute_update(update, request_), 20)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "undecodable_message", cause
    assert "could not be decoded" in cause.message
    after = await status(handle)
    assert (after.stage, after.open_notification, after.history) == (before.stage, before.open_notification,
                                                                       before.history)
    assert await task_failures(handle) == 0


async def test_a_forged_encrypted_start_ends_at_once_and_the_import_then_starts_the_real_review(
        engine: Engine, tmp_path: Path) -> None:
    now = await engine.now()
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    forged = await forger(engine, "forged").start_workflow(
        CertificateWorkflow.run, CertificateInput(case_reference=engine.ref), id=workflow_id_for(engine.ref),
        task_queue=engine.task_queue)
    await start_refused(forged, "undecodable_start")
    assert await task_failures(forged) == 0
    # The import then starts the certificate's real review over the forged run.
    rows = tmp_path / "certificates.csv"
    rows.write_text("case_reference,provider_firm_id,office_code,provider_contact_login,granted_on,"
                    f"last_activity_at,poa_paid,poa_recouped\n{engine.ref},26517,2L847Q,CASEWORKER1,2020-01-06,"
                    f"{(now - 608 * DAY).isoformat()},0.00,0.00\n", encoding="utf-8")
    report = await import_certificates(engine.store, engine.certificates, rows, actor="ops", now=now)
    assert (report.refused, report.workflows_started) == ([], 1)
    handle = engine.client.get_workflow_handle(workflow_id_for(engine.ref))
    await engine.env.sleep(1)
    s = await eventually(lambda: status(handle), lambda s: s.open_notification is not None)
    assert s.stage == "AwaitingResponse"
    # A review closed by the rules is still never started again.
    await handle.signal(CertificateWorkflow.close_certificate,
                        CloseCertificateRequest(reason="discharged", occurred_at=await engine.now()))
    await handle.result()
    assert await engine.certificates.start(engine.ref) is False


async def test_a_start_that_ended_unusable_does_not_stop_an_activity_source_starting_the_review(
        engine: Engine) -> None:
    forged = await engine.client.start_workflow("CertificateWorkflow", {"case_reference": "not one"},
                                                id=workflow_id_for(engine.ref), task_queue=engine.task_queue)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(forged.result(), 30)
    now = await engine.now()
    await engine.certificates.record_activity(engine.ref, ActivityEvent(event_id="a1", kind="application",
                                                                        occurred_at=now - 10 * DAY))
    await engine.env.sleep(1)
    handle = engine.client.get_workflow_handle(workflow_id_for(engine.ref))
    s = await eventually(lambda: status(handle), lambda s: s.last_activity_at is not None)
    assert s.last_activity_at == now - 10 * DAY


# --- the wrong number of arguments -----------------------------------------------------------


@pytest.mark.parametrize("args", [[], [{"event_id": "e1"}, {"more": 1}]], ids=["none", "two"])
async def test_a_signal_with_the_wrong_number_of_arguments_is_dropped_and_counted(engine: Engine,
                                                                                   args: list[Any]) -> None:
    handle = await started_certificate(engine, 10 * DAY)
    for signal in ("record_activity", "laa_decision", "close_certificate"):
        await handle.signal(signal, args=args)
    await handle.signal("registration_updated", args=[{"more": 1}])  # carries nothing: what was sent is ignored
    now = await engine.now()
    await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(event_id="good", kind="bill",
                                                                           occurred_at=now))
    await engine.env.sleep(1)
    s = await eventually(lambda: status(handle), lambda s: s.last_activity_at == now)
    assert s.stage == "Active" and s.closed_at is None
    rows = await eventually(lambda: audited(engine, "messages_undecodable"),
                            lambda rows: sum(int(r.detail["messages"]) for r in rows) == 3)
    assert all(f"{len(args)} were sent" in r.detail["last_reason"] for r in rows)
    assert await task_failures(handle) == 0


async def test_a_start_with_more_than_one_input_ends_at_once_and_the_review_can_start(engine: Engine) -> None:
    forged = await engine.client.start_workflow(
        "CertificateWorkflow", args=[{"case_reference": engine.ref}, {"carried": {}}], id=workflow_id_for(engine.ref),
        task_queue=engine.task_queue)
    await start_refused(forged, "invalid_start")
    assert await task_failures(forged) == 0
    assert await engine.certificates.start(engine.ref) is True


# --- a response whose user lookup outlasts the return date ----------------------------------


class Outage(Interceptor):
    """Every attempt of one activity fails while `down` (a database outage): the step is
    retried, with its backoff, until it is over."""

    def __init__(self, activity_type: str) -> None:
        self.activity_type = activity_type
        self.down = False
        self.failed = 0

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        outage = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                if outage.down and activity.info().activity_type == outage.activity_type:
                    outage.failed += 1
                    raise RuntimeError("the database is unavailable (a test's outage)")
                return await super().execute_activity(input)

        return Inbound(next)


async def test_a_response_accepted_before_the_return_date_lands_on_its_notification(
        time_env: WorkflowEnvironment, store: Store) -> None:
    outage = Outage("load_users")
    async with running_engine(time_env, store, interceptors=[outage]) as engine:
        handle = await due_certificate(engine, poa_paid="700.00")
        notification = (await status(handle)).open_notification
        assert notification is not None
        await engine.env.sleep(notification.return_date - await engine.now() - timedelta(minutes=1))
        outage.down = True
        update = await handle.start_update(
            CertificateWorkflow.respond, RespondRequest(user_login_id="CASEWORKER1", response="complete_no_bill_due"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        await engine.env.sleep(timedelta(minutes=3))  # the return date passes while the lookup fails
        assert await engine.now() > notification.return_date and outage.failed >= 2
        waiting = await status(handle)
        assert waiting.open_notification is not None and waiting.notifications_raised == 1
        assert waiting.open_notification.notification_id == notification.notification_id
        outage.down = False
        await engine.env.sleep(timedelta(minutes=2))  # the lookup's next retry goes through
        result = await asyncio.wait_for(update.result(), 30)
        assert (result.notification_id, result.response) == (notification.notification_id, "complete_no_bill_due")
        final = CertificateStatus.model_validate(await asyncio.wait_for(handle.result(), 30))
        assert final.stage == "Closed" and [r.amount for r in final.recoupments] == ["700.00"]
        rows = await store.notifications_of(engine.ref)
        assert [(r.notification_id, r.response) for r in rows] == [
            (notification.notification_id, "complete_no_bill_due")]
        actions = [a.action for a in await store.audit_of(engine.ref)]
        assert "notification_returned" not in actions and "task_raised" not in actions, actions
        assert await task_failures(handle) == 0


# --- multi-megabyte values held while a continue-as-new waits --------------------------------

HUGE = "x" * 1_500_000  # under the server's 2 MB limit for one payload; four of them are not


async def test_huge_values_held_across_a_continue_as_new_are_carried_bounded(
        time_env: WorkflowEnvironment, store: Store) -> None:
    outage = Outage("load_users")
    async with running_engine(time_env, store, interceptors=[outage],
                              certificate_workflow=ShortHistoryCertificateWorkflow) as engine:
        handle = await due_certificate(engine)
        first_run = await run_id(engine, handle)
        # A reassignment waits for its user lookup: the continue-as-new waits for it.
        outage.down = True
        update = await handle.start_update(
            CertificateWorkflow.reassign_contact, ReassignContactRequest(user_login_id="NOBODY",
                                                                         new_contact_login_id="NOBODY2"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        history_length = 0
        for i in range(20):  # until the run is past its history limit
            await handle.signal(CertificateWorkflow.record_activity, ActivityEvent(
                event_id=f"old-{i}", kind="amendment", occurred_at=await engine.now() - 700 * DAY))
            await engine.env.sleep(1)
            history_length = len((await handle.fetch_history()).events)
            if history_length > SHORT_HISTORY_LIMIT + 5:
                break
        assert history_length > SHORT_HISTORY_LIMIT
        for _ in range(2):
            await handle.signal(CertificateWorkflow.laa_decision, LaaDecisionRequest(
                caseworker="CW", decision="close", reason="r", task_id=HUGE))
            await handle.signal(CertificateWorkflow.close_certificate, CloseCertificateRequest(
                reason="discharged", occurred_at=await engine.now(), system=HUGE))
        outage.down = False
        await engine.env.sleep(timedelta(minutes=2))  # the lookup's next retry goes through
        with pytest.raises(WorkflowUpdateFailedError):  # refused: no such users
            await asyncio.wait_for(update.result(), 30)
        await engine.env.sleep(1)
        await eventually(lambda: run_id(engine, handle), lambda run: run != first_run, seconds=30)
        s = await eventually(lambda: status(handle), lambda s: len([
            h for h in s.history if "refused" in h.what]) >= 4, seconds=30)
        assert s.stage == "AwaitingResponse" and s.closed_at is None
        # What the next run was handed: the held messages, each string cut to its limit plus one.
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        assert started.continued_execution_run_id == first_run
        [payload] = await engine.client.data_converter.payload_codec.decode(  # type: ignore[union-attr]
            started.input.payloads)
        assert len(payload.data) < 50_000, len(payload.data)
        carried = json.loads(payload.data)["carried"]
        assert [len(d["task_id"]) for d in carried["pending_decisions"]] == [101, 101]
        assert [len(c["system"]) for c in carried["pending_closes"]] == [101, 101]
        assert sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) == 0
        first = await engine.client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
        assert sum(1 for e in first.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) == 0

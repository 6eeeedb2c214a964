"""Signals, updates and queries asked again after a server's transient "not now"
(icr/adapters/temporal/client.py `retry_transient`), on the real time-skipping server with
the failures injected in front of it (tests/faults.py): an update is asked again under its
own update id, so a retry of one the server had already taken gets its first answer."""

from __future__ import annotations

import pytest
from temporalio.service import RPCStatusCode

from icr.adapters.temporal import client as client_module
from icr.adapters.temporal.client import TRANSIENT, CertificateClient, MessageRefused
from icr.domain.models import ReassignContactRequest, RespondRequest
from tests.conftest import Engine, add_certificate, add_user
from tests.faults import Faults
from tests.workflow_helpers import DAY, due_certificate, eventually, started_certificate, status

STATUSES = sorted(TRANSIENT)


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "TRANSIENT_PAUSE", 0.0)


def faulty(engine: Engine) -> tuple[CertificateClient, Faults]:
    faults = Faults()
    return CertificateClient(faults.client(engine.client), engine.task_queue), faults


async def test_a_signal_that_failed_transiently_is_sent_again(engine: Engine) -> None:
    handle = await started_certificate(engine, 30 * DAY)
    certificates, faults = faulty(engine)
    await add_user(engine.store, "CASEWORKER2", ["case_management"])
    contacts = ["CASEWORKER2", "CASEWORKER1"] * 2
    for transient, contact in zip(STATUSES, contacts, strict=True):
        now = await engine.now()
        await add_certificate(engine.store, engine.ref, last_activity_at=now - 30 * DAY, contact=contact)
        faults.fail("signal", transient)
        before = faults.calls["signal"]
        assert await certificates.registration_updated(engine.ref) is True, transient.name
        assert faults.calls["signal"] - before == 2, transient.name
        # The second attempt reached the review: it read the registry again.
        await eventually(lambda: status(handle), lambda s, c=contact: s.provider_contact_login == c)


async def test_a_query_that_failed_transiently_is_asked_again(engine: Engine) -> None:
    await started_certificate(engine, 30 * DAY)
    certificates, faults = faulty(engine)
    for transient in STATUSES:
        faults.fail("query", transient)
        before = faults.calls["query"]
        answered = await certificates.status(engine.ref)
        assert answered.case_reference == engine.ref and answered.stage == "Active", transient.name
        assert faults.calls["query"] - before == 2, transient.name


async def test_an_update_whose_answer_was_lost_is_asked_again_under_the_same_id(engine: Engine) -> None:
    handle = await started_certificate(engine, 30 * DAY)
    await add_user(engine.store, "CASEWORKER2", ["case_management", "cross_office"])
    certificates, faults = faulty(engine)
    contacts = ["CASEWORKER2", "CASEWORKER1"] * 2
    for transient, contact in zip(STATUSES, contacts, strict=True):
        # The server took the update and applied it; only its answer was lost.
        faults.fail("update", transient, after=True)
        sent = len(faults.update_ids)
        result = await certificates.reassign(engine.ref, ReassignContactRequest(
            user_login_id="CASEWORKER2", new_contact_login_id=contact))
        assert result.provider_contact_login == contact, transient.name
        first, again = faults.update_ids[sent:]
        assert first is not None and first == again, transient.name
    # Each reassignment was applied once, however many times it was asked.
    notes = [h.what for h in (await status(handle)).history if "reassigned the provider contact" in h.what]
    assert len(notes) == len(STATUSES)


async def test_a_response_retried_after_a_timeout_gets_its_first_answer(engine: Engine) -> None:
    await due_certificate(engine, poa_paid="900.00")
    certificates, faults = faulty(engine)
    request = RespondRequest(user_login_id="CASEWORKER1", response="complete_to_be_billed", message="bill in June")
    faults.fail("update", RPCStatusCode.DEADLINE_EXCEEDED, after=True)
    answer = await certificates.respond(engine.ref, request, update_id="portal-key-0001")
    assert (answer.response, answer.outcome, answer.stage) == ("complete_to_be_billed", "LAA review task raised",
                                                               "LaaReview")
    assert faults.update_ids == ["portal-key-0001", "portal-key-0001"]
    # A caller that retries on its own (after its own timeout, or a restart) with the same id
    # gets the same first answer, not a second response...
    again = await engine.certificates.respond(engine.ref, request, update_id="portal-key-0001")
    assert again == answer
    # ...while a new id is a new response, refused: the notification was answered.
    with pytest.raises(MessageRefused) as refused:
        await engine.certificates.respond(engine.ref, request, update_id="portal-key-0002")
    assert refused.value.code == "no_open_notification"
    recorded = [a for a in await engine.store.audit_of(engine.ref) if a.action == "response_recorded"]
    assert len(recorded) == 1
    assert len(await engine.store.tasks_of(engine.ref)) == 1

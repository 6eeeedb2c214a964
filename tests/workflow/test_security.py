"""Personal data out of Temporal's plaintext: the payload codec, key rotation, the codec
server's token and CORS, and a canary written through every path that must never show in
plaintext in a history, a search attribute, a memo or a log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta

import aiohttp
import pytest
import structlog
from temporalio.api.common.v1 import Payload
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    GetWorkflowExecutionHistoryRequest,
)

from icr.adapters.temporal.client import MessageRefused
from icr.adapters.temporal.codec import ENCODING, EncryptionCodec, PayloadKeyError, PayloadKeys
from icr.domain.models import (
    ActivityEvent,
    CloseCertificateRequest,
    LaaDecisionRequest,
    ReassignContactRequest,
    RespondRequest,
)
from icr.runtime.codec_server import codec_app
from icr.runtime.http import serve
from icr.runtime.keyring import ConfigurationError, payload_keys
from icr.runtime.logs import configure_logging
from icr.runtime.settings import Settings
from tests.conftest import Engine, add_certificate, add_user
from tests.workflow_helpers import eventually
from workflows.certificate import CertificateWorkflow

DAY = timedelta(days=1)
CANARY_LOGIN = "CANARY7Q3ZLOGIN"
CANARY_MESSAGE = "canary-message-5f1e2d-do-not-leak"


def plain(data: bytes) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


# --- the codec ---------------------------------------------------------------------------


async def test_encoded_payload_holds_only_ciphertext_and_round_trips() -> None:
    codec = EncryptionCodec(PayloadKeys.generate("k1"))
    [encoded] = await codec.encode([plain(b'{"message": "' + CANARY_MESSAGE.encode() + b'"}')])
    assert encoded.metadata["encoding"] == ENCODING and encoded.metadata["encryption-key-id"] == b"k1"
    assert CANARY_MESSAGE.encode() not in encoded.SerializeToString()
    [decoded] = await codec.decode([encoded])
    assert decoded.data == b'{"message": "' + CANARY_MESSAGE.encode() + b'"}'


async def test_two_encodings_of_the_same_payload_differ() -> None:
    codec = EncryptionCodec(PayloadKeys.generate("k1"))
    a, b = await codec.encode([plain(b"same"), plain(b"same")])
    assert a.data != b.data


async def test_a_payload_written_without_a_key_is_read_as_it_is() -> None:
    codec = EncryptionCodec(PayloadKeys.generate("k1"))
    payload = plain(b'{"case_reference": "300001416143"}')
    assert await codec.decode([payload]) == [payload]


async def test_an_old_history_encoded_with_a_retired_key_still_decodes() -> None:
    old = PayloadKeys.generate("2025a")
    [written] = await EncryptionCodec(old).encode([plain(b"written in 2025")])
    new = PayloadKeys.generate("2026a")
    rotated = PayloadKeys.parse(f"{new.format()},{old.format()}")  # new first: it encrypts
    codec = EncryptionCodec(rotated)
    assert [p.data for p in await codec.decode([written])] == [b"written in 2025"]
    [fresh] = await codec.encode([plain(b"written now")])
    assert fresh.metadata["encryption-key-id"] == b"2026a"
    with pytest.raises(ValueError, match="'2025a', which this process does not have"):
        await EncryptionCodec(new).decode([written])


async def test_a_tampered_payload_is_refused() -> None:
    codec = EncryptionCodec(PayloadKeys.generate("k1"))
    [encoded] = await codec.encode([plain(b"amount 1000.00")])
    tampered = Payload(metadata=dict(encoded.metadata), data=encoded.data[:-1] + bytes([encoded.data[-1] ^ 1]))
    with pytest.raises(ValueError, match="failed authentication"):
        await codec.decode([tampered])


@pytest.mark.parametrize("text, problem", [
    ("", "no key given"),
    ("k1", "not `id:base64key`"),
    ("k1:not base64!", "not valid base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", "5 bytes; AES-256 needs 32"),
    (f"k1:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(32)).decode()}", "listed twice"),
])
def test_bad_keys_are_refused_without_quoting_them(text: str, problem: str) -> None:
    with pytest.raises(PayloadKeyError, match=problem) as caught:
        PayloadKeys.parse(text)
    assert "not base64!" not in str(caught.value) or problem == "not valid base64"


def test_keys_never_print_their_material() -> None:
    keys = PayloadKeys.generate("k1")
    material = base64.b64encode(keys.keys["k1"]).decode()
    assert material not in repr(keys) and material not in str(keys)
    settings = Settings(payload_keys=keys.format(), codec_token="tok-secret-1", database_url="postgresql://u:pw-secret@h/d")
    shown = repr(settings) + str(settings.model_dump())
    assert material not in shown and "tok-secret-1" not in shown and "pw-secret" not in shown


def test_a_real_temporal_without_keys_is_refused_unless_switched_off(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="ICR_PAYLOAD_KEYS is not set"):
        payload_keys(Settings(temporal_address="temporal:7233", data_dir=tmp_path), embedded=False)
    assert payload_keys(Settings(temporal_address="t:7233", payload_encryption=False, data_dir=tmp_path),
                        embedded=False) is None


def test_the_embedded_default_makes_one_key_and_keeps_it(tmp_path) -> None:
    first = payload_keys(Settings(data_dir=tmp_path), embedded=True)
    again = payload_keys(Settings(data_dir=tmp_path), embedded=True)
    assert first is not None and first == again
    assert (tmp_path / "payload-keys").stat().st_mode & 0o777 == 0o600


# --- the codec server ----------------------------------------------------------------------

UI = "http://127.0.0.1:8233"
TOKEN = "codec-token-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def codec_server() -> AsyncIterator[tuple[str, EncryptionCodec]]:
    codec = EncryptionCodec(PayloadKeys.generate("k1"))
    port = free_port()
    runner = await serve(codec_app(codec, TOKEN, [UI]), "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}", codec
    await runner.cleanup()


async def body_of(codec: EncryptionCodec, text: bytes) -> str:
    [encoded] = await codec.encode([plain(text)])
    return json.dumps({"payloads": [{
        "metadata": {k: base64.b64encode(v).decode() for k, v in encoded.metadata.items()},
        "data": base64.b64encode(encoded.data).decode()}]})


async def test_codec_server_decodes_for_the_ui_with_its_token(codec_server: tuple[str, EncryptionCodec]) -> None:
    url, codec = codec_server
    body = await body_of(codec, b'{"x": 1}')
    async with aiohttp.ClientSession() as http:
        for endpoint, headers in [(f"{url}/decode", {"Authorization": f"Bearer {TOKEN}"}),
                                  (f"{url}/{TOKEN}/decode", {})]:
            async with http.post(endpoint, data=body, headers={"Origin": UI, **headers}) as r:
                assert r.status == 200, await r.text()
                assert r.headers["Access-Control-Allow-Origin"] == UI
                [payload] = (await r.json())["payloads"]
                assert base64.b64decode(payload["data"]) == b'{"x": 1}'
        async with http.options(f"{url}/decode", headers={
                "Origin": UI, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace"}) as r:
            assert r.status == 204 and "X-Namespace" in r.headers["Access-Control-Allow-Headers"]


async def test_codec_server_refuses_a_request_without_its_token(codec_server: tuple[str, EncryptionCodec]) -> None:
    url, codec = codec_server
    body = await body_of(codec, CANARY_MESSAGE.encode())
    async with aiohttp.ClientSession() as http:
        for endpoint, headers in [(f"{url}/decode", {}),
                                  (f"{url}/decode", {"Authorization": "Bearer wrong"}),
                                  (f"{url}/wrong/decode", {})]:
            async with http.post(endpoint, data=body, headers={"Origin": UI, **headers}) as r:
                assert r.status == 401
                assert CANARY_MESSAGE not in await r.text()


async def test_codec_server_refuses_another_origin(codec_server: tuple[str, EncryptionCodec]) -> None:
    url, codec = codec_server
    body = await body_of(codec, CANARY_MESSAGE.encode())
    evil = "http://evil.example"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/decode", data=body,
                             headers={"Origin": evil, "Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
            assert CANARY_MESSAGE not in await r.text()
        async with http.options(f"{url}/decode", headers={"Origin": evil}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers


# --- the canary ------------------------------------------------------------------------------


async def raw_history(engine: Engine, workflow_id: str) -> bytes:
    response = await engine.client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(namespace="default", execution={"workflow_id": workflow_id}))
    return response.history.SerializeToString()


async def test_a_canary_never_shows_in_plaintext(engine: Engine, caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO)  # the engine logs at info and above; the SDK's debug output quotes refusals
    certificates = engine.certificates
    now = await engine.now()
    await add_user(engine.store, CANARY_LOGIN, ["case_management", "cross_office"])
    await add_user(engine.store, "CASEWORKER1", ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 608 * DAY, contact=CANARY_LOGIN)
    handle = await engine.start(engine.ref)
    await engine.env.sleep(1)
    # Every path a login id or a message can take: the notification to the canary, a refused
    # and an accepted response with a message, a reassignment by and to it, an event whose
    # source is the canary, a decision and a close.
    with pytest.raises(MessageRefused):
        await certificates.respond(engine.ref, RespondRequest(user_login_id=CANARY_LOGIN + "X",
                                                              response="case_ongoing", message=CANARY_MESSAGE))
    await certificates.respond(engine.ref, RespondRequest(user_login_id=CANARY_LOGIN,
                                                          response="complete_to_be_billed", message=CANARY_MESSAGE))
    await certificates.reassign(engine.ref, ReassignContactRequest(user_login_id=CANARY_LOGIN,
                                                                   new_contact_login_id="CASEWORKER1"))
    await certificates.record_activity(engine.ref, ActivityEvent(
        event_id=f"evt-{CANARY_LOGIN}", kind="bill", occurred_at=now, source=CANARY_LOGIN))
    await certificates.decide(engine.ref, LaaDecisionRequest(caseworker="CW1", decision="keep_open",
                                                             reason=CANARY_MESSAGE))
    await engine.env.sleep(1)
    status = await certificates.status(engine.ref)
    assert status.stage == "Active"  # the messages were all taken (and decrypted by the engine)
    assert any(CANARY_LOGIN in h.what for h in status.history)
    await certificates.close(engine.ref, CloseCertificateRequest(reason=CANARY_MESSAGE, occurred_at=now))
    await handle.result()

    history = await raw_history(engine, handle.id)
    for canary in (CANARY_LOGIN, CANARY_MESSAGE):
        assert canary.encode() not in history, f"{canary} in the raw history"
    described = await engine.client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace="default", execution={"workflow_id": handle.id}))
    info = described.workflow_execution_info
    attributes_and_memo = info.search_attributes.SerializeToString() + info.memo.SerializeToString()
    assert CANARY_LOGIN.encode() not in attributes_and_memo and CANARY_MESSAGE.encode() not in attributes_and_memo
    assert CANARY_LOGIN not in handle.id
    logged = caplog.text + "".join(capsys.readouterr())
    assert CANARY_LOGIN not in logged and CANARY_MESSAGE not in logged
    # The database is the system of record: it does hold them, in the clear, as it must.
    rows = await engine.store.notifications_of(engine.ref)
    assert rows[0].message == CANARY_MESSAGE


@contextlib.contextmanager
def engine_logging(fmt: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """The engine's own log configuration (as worker.py sets it) writing to the captured
    stderr; yields a reader of everything written so far. Puts the test's logging back after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(fmt, "info")
    structlog.configure(cache_logger_on_first_use=False)  # so later tests get structlog's defaults back
    written: list[str] = []

    def read() -> str:
        out, err = capsys.readouterr()
        written.append(out + err)
        return "".join(written)
    try:
        yield read
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.mark.parametrize("fmt", ["console", "json"])
async def test_a_failing_step_logs_its_traceback_without_local_variables(
        engine: Engine, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    now = await engine.now()
    await add_user(engine.store, CANARY_LOGIN, ["case_management"])
    await add_certificate(engine.store, engine.ref, last_activity_at=now - 608 * DAY, contact=CANARY_LOGIN)
    handle = await engine.start(engine.ref)
    await engine.env.sleep(1)
    await eventually(lambda: handle.query(CertificateWorkflow.status), lambda s: s.stage == "AwaitingResponse")
    with engine_logging(fmt, capsys) as logged:
        # The step that records the response (its input holds the login id and the message)
        # fails until the column is back: an outage, retried, its traceback logged each time.
        await engine.store.pool.execute("ALTER TABLE notifications RENAME COLUMN message TO message_held")
        responding = asyncio.create_task(engine.certificates.respond(engine.ref, RespondRequest(
            user_login_id=CANARY_LOGIN, response="case_ongoing", message=CANARY_MESSAGE)))

        async def output() -> str:
            return logged()
        await eventually(output, lambda text: "record_response" in text and "UndefinedColumnError" in text,
                         seconds=30)
        await engine.store.pool.execute("ALTER TABLE notifications RENAME COLUMN message_held TO message")
        answer = await responding
        text = logged()
    assert answer.outcome == "clock restarted"
    # The traceback is there, its frames named...
    assert ("Traceback (most recent call last)" if fmt == "console" else '"frames"') in text
    assert "record_response" in text
    # ...and nothing of their local variables: not the step's input, not its login id or message.
    assert "locals" not in text and "RecordResponse(" not in text
    assert CANARY_LOGIN not in text and CANARY_MESSAGE not in text


async def test_the_embedded_web_ui_decodes_through_its_codec_server(tmp_path) -> None:
    from icr.runtime.servers import temporal_dev_server

    settings = Settings(data_dir=tmp_path, temporal_port=free_port(), ui_port=free_port())
    async with temporal_dev_server(settings):
        token = (tmp_path / "codec-token").read_text().strip()
        codec = EncryptionCodec(payload_keys(settings, embedded=True))  # type: ignore[arg-type]
        ui = f"http://127.0.0.1:{settings.ui_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{ui}/api/v1/settings") as r:
                endpoint = (await r.json())["Codec"]["Endpoint"]
            assert endpoint == f"http://127.0.0.1:{settings.codec_server_port}/{token}"
            body = await body_of(codec, b'{"who": "' + CANARY_LOGIN.encode() + b'"}')
            for _ in range(50):  # the codec server starts beside the dev server
                try:
                    async with http.post(f"{endpoint}/decode", data=body, headers={"Origin": ui}) as r:
                        assert r.status == 200
                        [payload] = (await r.json())["payloads"]
                        assert CANARY_LOGIN.encode() in base64.b64decode(payload["data"])
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("the codec server did not answer")


# --- who may act ---------------------------------------------------------------------------


async def test_a_decision_from_an_unknown_or_inactive_caseworker_is_refused_and_changes_nothing(
        engine: Engine, tmp_path) -> None:
    from icr.services.importer import import_caseworkers
    from tests.workflow_helpers import due_certificate, respond, status

    handle = await due_certificate(engine, poa_paid="900.00")
    await respond(handle, "complete_to_be_billed")
    task = (await status(handle)).open_task
    assert task is not None
    directory = tmp_path / "caseworkers.csv"
    directory.write_text("caseworker_id,active\nLAA-LEFT,false\nLAA-NEW,true\n")
    report = await import_caseworkers(engine.store, directory, actor="ops", now=await engine.now())
    assert (report.imported, report.refused) == (2, [])
    # Through the `decide` update the refusal comes back; through the signal it is only audited.
    with pytest.raises(MessageRefused) as refused:
        await engine.certificates.decide(engine.ref, LaaDecisionRequest(caseworker="NOBODY", decision="close",
                                                                        reason="forged"))
    assert refused.value.code == "unknown_caseworker"
    await engine.certificates.send_decision(engine.ref, LaaDecisionRequest(caseworker="LAA-LEFT", decision="close",
                                                                           reason="forged"))
    await engine.env.sleep(1)
    s = await status(handle)
    assert s.stage == "LaaReview" and s.open_task == task and s.recoupments == []
    assert [t.is_open for t in await engine.store.tasks_of(engine.ref)] == [True]
    assert await engine.store.recoupments_of(engine.ref) == []
    refusals = [(a.actor, a.action) for a in await engine.store.audit_of(engine.ref)
                if a.action == "decision_refused"]
    assert refusals == [("NOBODY", "decision_refused"), ("LAA-LEFT", "decision_refused")]
    reasons = [a.detail for a in await engine.store.audit_of(engine.ref) if a.action == "decision_refused"]
    assert "not in the LAA caseworker directory" in str(reasons[0]) and "no longer active" in str(reasons[1])
    # The directory's caseworker decides, and the audit names them.
    await engine.certificates.decide(engine.ref, LaaDecisionRequest(caseworker="LAA-NEW", decision="close",
                                                                    reason="confirmed"))
    final = await handle.result()
    assert final.stage == "Closed" and [r.amount for r in final.recoupments] == ["900.00"]
    decided = [a for a in await engine.store.audit_of(engine.ref) if a.action == "decision_recorded"]
    assert [a.actor for a in decided] == ["LAA-NEW"]


async def test_close_certificate_records_the_system_that_sent_it(engine: Engine) -> None:
    from tests.workflow_helpers import due_certificate

    handle = await due_certificate(engine)
    await engine.certificates.close(engine.ref, CloseCertificateRequest(
        reason="discharged", occurred_at=await engine.now(), system="CCMS discharge"))
    await handle.result()
    closed = [a for a in await engine.store.audit_of(engine.ref) if a.action == "certificate_closed"]
    assert [a.actor for a in closed] == ["close_certificate from CCMS discharge"]

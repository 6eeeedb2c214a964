"""Answering through the portal: its API and its form go through the engine's `respond`
update (time-skipping server, real PostgreSQL): accepted, refused with the engine's code as a
4xx, and a retry with the same Idempotency-Key answered with the first answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from icr.portal.auth import DemoSignIn
from tests.conftest import Engine, add_user
from tests.portal_helpers import CSRF, portal_client, session_cookie
from tests.workflow_helpers import due_certificate, status

CONTACT = "CASEWORKER1"


@pytest.fixture
async def portal(engine: Engine) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = await portal_client(engine.store, engine.certificates, DemoSignIn([CONTACT]),
                                 clock=lambda: datetime.now(UTC))
    yield client
    await client.close()


async def post(portal: TestClient[Any, Any], notification_id: str, body: object, key: str,
               login: str = CONTACT) -> tuple[int, dict[str, Any]]:
    response = await portal.post(f"/notifications/{notification_id}/response", json=body,
                                 cookies=session_cookie(login),
                                 headers={"X-CSRF-Token": CSRF, "Idempotency-Key": key})
    return response.status, await response.json()


async def test_an_answer_is_accepted_and_a_retry_with_the_same_key_gets_the_first_answer(
        engine: Engine, portal: TestClient) -> None:
    handle = await due_certificate(engine)
    before = await status(handle)
    assert before.open_notification is not None
    notification_id = before.open_notification.notification_id
    body = {"response": "case_ongoing", "message": "still before the court"}
    code, first = await post(portal, notification_id, body, "key-1")
    assert code == 200, first
    assert first == {"notification_id": notification_id, "response": "case_ongoing",
                     "outcome": first["outcome"], "stage": "Active"} and first["outcome"]
    after = await status(handle)
    assert after.open_notification is None and after.inactivity_deadline > before.inactivity_deadline
    # A retry after a timeout: the same key is the same update, answered as the first time.
    code, again = await post(portal, notification_id, body, "key-1")
    assert (code, again) == (200, first)
    # A new key is a new answer, refused: the notification is no longer open.
    code, refused = await post(portal, notification_id, body, "key-2")
    assert code == 409 and refused["code"] == "no_open_notification", refused
    row = await engine.store.notification(notification_id)
    assert row is not None and row.status == "Responded" and row.message == "still before the court"
    detail = (await (await portal.get(f"/notifications/{notification_id}", cookies=session_cookie(CONTACT))).json())
    assert detail["notification"]["status"] == "responded" and detail["notification"]["available_responses"] == []


@pytest.mark.parametrize(("login", "body", "status_code", "code"), [
    ("OM1", {"response": "case_ongoing"}, 409, "not_permitted"),
    ("CM2", {"response": "case_ongoing"}, 409, "not_assigned"),
    (CONTACT, {"response": "case_finished"}, 422, "unknown_response"),
    (CONTACT, {"response": ""}, 422, "missing_response"),
    (CONTACT, {"response": "case_ongoing", "message": "x" * 2001}, 422, "message_too_long"),
], ids=["office-manager", "not-assigned", "unknown-response", "no-response", "long-message"])
async def test_a_refusal_is_a_4xx_with_the_engines_code_and_changes_nothing(
        engine: Engine, portal: TestClient, login: str, body: dict[str, str], status_code: int, code: str) -> None:
    await add_user(engine.store, "OM1", ["office_manager"])
    await add_user(engine.store, "CM2", ["case_management"])
    handle = await due_certificate(engine)
    before = await status(handle)
    assert before.open_notification is not None
    got, problem = await post(portal, before.open_notification.notification_id, body, "key-1", login=login)
    assert (got, problem["code"]) == (status_code, code), problem
    assert problem["message"]
    after = await status(handle)
    assert after.open_notification == before.open_notification and after.stage == before.stage


async def test_the_form_shows_a_refusal_in_the_error_summary_then_confirms_the_answer(
        engine: Engine, portal: TestClient) -> None:
    handle = await due_certificate(engine)
    opened = (await status(handle)).open_notification
    assert opened is not None
    path = f"/reviews/{opened.notification_id}"
    cookies = session_cookie(CONTACT)
    response = await portal.post(f"{path}/response", cookies=cookies,
                                 data={"csrf_token": CSRF, "idempotency_key": "form-1", "message": "kept"})
    page = await response.text()
    assert response.status == 422
    assert "govuk-error-summary" in page and 'href="#response"' in page and "Select a response" in page
    assert "kept</textarea>" in page  # what was typed is not lost
    response = await portal.post(f"{path}/response", cookies=cookies, allow_redirects=False, data={
        "csrf_token": CSRF, "idempotency_key": "form-2", "response": "complete_to_be_billed", "message": "billing"})
    assert response.status == 303 and response.headers["Location"] == f"{path}/confirmation"
    confirmation = await (await portal.get(response.headers["Location"], cookies=response.cookies)).text()
    assert "Response submitted" in confirmation and "Case Complete to be Billed" in confirmation
    assert (await status(handle)).stage == "LaaReview"

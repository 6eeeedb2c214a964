"""The provider portal's read API and pages against a seeded database: each filter, paging
and sorting, the 403 across firms, the available responses per role, sign-in, sessions and
CSRF. (Answering goes through the engine: tests/workflow/test_portal_respond.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient
from icr.domain.models import NotificationStatus, Response
from icr.portal.auth import DemoSignIn
from icr.portal.sessions import COOKIE
from tests.conftest import FIRM, OTHER_FIRM, add_user
from tests.portal_helpers import CSRF, portal_client, seed_notification, session_cookie

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ALL = [r.value for r in Response]
A, B, C, D, E, F = (f"30000000000{i}" for i in range(1, 7))


@pytest.fixture
async def seeded(store: Store) -> dict[str, str]:
    for login, roles, firm, pre_silas in [
            ("JSMITH", ["case_management"], FIRM, False), ("AJONES", ["case_management", "cross_office"], FIRM, False),
            ("OMANAGER", ["office_manager"], FIRM, False), ("LEGACY01", ["case_management"], FIRM, True),
            ("BPREP", ["bill_preparation"], FIRM, False), ("PKHAN", ["case_management_supervisor"], OTHER_FIRM, False)]:
        await add_user(store, login, roles, firm, pre_silas)
    return {
        "A": await seed_notification(store, A, FIRM, "JSMITH", NOW - 20 * DAY),  # overdue, returned tomorrow
        "B": await seed_notification(store, B, FIRM, "JSMITH", NOW - 2 * DAY),  # open
        "C": await seed_notification(store, C, FIRM, "LEGACY01", NOW - 5 * DAY),  # a pre-SiLAS login's
        "D": await seed_notification(store, D, FIRM, "JSMITH", NOW - 40 * DAY, closed=NotificationStatus.RESPONDED),
        "E": await seed_notification(store, E, FIRM, "JSMITH", NOW - 25 * DAY),  # past its return date, not yet closed
        "F": await seed_notification(store, F, OTHER_FIRM, "PKHAN", NOW - 3 * DAY),
    }


@pytest.fixture
async def portal(store: Store, seeded: dict[str, str]) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    # Reads only: the engine is never asked, so no Temporal client is needed.
    client = await portal_client(store, CertificateClient(None, "unused"),  # type: ignore[arg-type]
                                 DemoSignIn(["JSMITH", "AJONES", "OMANAGER"]), clock=lambda: NOW)
    yield client
    await client.close()


async def get_json(portal: TestClient[Any, Any], path: str, login: str | None = "JSMITH",
                   status: int = 200) -> Any:
    response = await portal.get(path, cookies=session_cookie(login) if login else None, allow_redirects=False)
    assert response.status == status, await response.text()
    return await response.json()


def refs(page: dict[str, Any]) -> list[str]:
    return [n["case_reference_number"] for n in page["content"]]


async def test_a_firm_lists_its_notifications_newest_first_with_the_data_api_fields(portal: TestClient) -> None:
    page = await get_json(portal, f"/notifications?provider-id={FIRM}")
    assert refs(page) == [B, C, A, E, D]
    assert (page["number"], page["size"], page["total_elements"], page["total_pages"]) == (0, 20, 5, 1)
    a = page["content"][2]
    assert a == {
        "notification_id": f"ICR-{A}-001", "case_reference_number": A, "provider_firm_id": FIRM,
        "user": {"login_id": "JSMITH"}, "subject": "Inactive Case Please Review", "notification_type": "ICR",
        "assign_date": "2026-05-21", "due_date": "2026-06-04", "return_date": "2026-06-11",
        "due_at": "2026-06-04T12:00:00Z", "status": "overdue", "notification_open_indicator": True,
        "evidence_allowed": False}
    assert [n["status"] for n in page["content"]] == ["open", "open", "overdue", "overdue", "responded"]


@pytest.mark.parametrize(("query", "expected"), [
    (f"case-reference-number={A}", [A]),
    ("assigned-to-user-id=LEGACY01", [C]),
    ("include-closed=false", [B, C, A, E]),
    ("include-closed=true", [B, C, A, E, D]),
    # UK dates of assignment, both ends included: A on 21 May, E on 16 May, D on 1 May.
    ("date-from=2026-05-16&date-to=2026-05-21", [A, E]),
    ("date-from=2026-06-01", [B, C]),
    ("date-to=2026-05-01", [D]),
    ("sort=due_date,asc", [D, E, A, C, B]),
    ("sort=due_date", [B, C, A, E, D]),
    ("sort=case_reference_number,asc", [A, B, C, D, E]),
    ("size=2&page=1", [A, E]),
    ("size=2&page=2", [D]),
    ("size=2&page=3", []),
], ids=["case", "assignee", "open-only", "with-closed", "date-window", "date-from", "date-to", "due-asc",
        "due-desc", "case-asc", "page-1", "last-page", "past-the-end"])
async def test_each_filter_sort_and_page(portal: TestClient, query: str, expected: list[str]) -> None:
    page = await get_json(portal, f"/notifications?provider-id={FIRM}&{query}")
    assert refs(page) == expected
    if "size=2" in query:
        assert (page["size"], page["total_elements"], page["total_pages"]) == (2, 5, 3)


@pytest.mark.parametrize("query", [
    "", "provider-id=26517&page=-1", "provider-id=26517&size=0", "provider-id=26517&size=101",
    "provider-id=26517&date-from=21/05/2026", "provider-id=26517&sort=status", "provider-id=26517&sort=due_date,up",
    "provider-id=26517&include-closed=yes", "provider-id=26517&case-reference-number=12345",
], ids=["no-provider", "negative-page", "empty-page", "huge-page", "bad-date", "bad-sort", "bad-direction",
        "bad-bool", "bad-case-reference"])
async def test_a_bad_parameter_is_a_400_naming_it(portal: TestClient, query: str) -> None:
    problem = await get_json(portal, f"/notifications?{query}", status=400)
    assert problem["code"] in ("missing_parameter", "invalid_parameter") and problem["message"]


async def test_another_firms_notifications_are_403(portal: TestClient, seeded: dict[str, str]) -> None:
    assert (await get_json(portal, f"/notifications?provider-id={OTHER_FIRM}", status=403))["code"] == "wrong_firm"
    assert (await get_json(portal, f"/notifications/{seeded['F']}", status=403))["code"] == "wrong_firm"
    assert (await get_json(portal, f"/notifications/{seeded['F']}", login="PKHAN"))["notification"][
        "case_reference_number"] == F
    assert (await get_json(portal, "/notifications/ICR-300000000999-001", status=404))["code"] == "not_found"
    assert (await get_json(portal, "/users/PKHAN/notifications/summary", status=403))["code"] == "wrong_firm"
    assert (await get_json(portal, "/users/NOBODY/notifications/summary", status=403))["code"] == "wrong_firm"


async def test_the_summary_counts_a_users_open_and_overdue_notifications(portal: TestClient) -> None:
    # JSMITH: A (overdue), B (open), E (past due, still open); D is closed.
    assert await get_json(portal, "/users/JSMITH/notifications/summary") == {
        "notifications": 3, "standard_actions": 1, "overdue_actions": 2}
    # Another user of the same firm may be asked about (an Office Manager sees the firm's).
    assert await get_json(portal, "/users/LEGACY01/notifications/summary", login="OMANAGER") == {
        "notifications": 1, "standard_actions": 1, "overdue_actions": 0}


@pytest.mark.parametrize(("login", "which", "expected"), [
    ("JSMITH", "A", ALL), ("AJONES", "A", ALL), ("OMANAGER", "A", []), ("BPREP", "A", []),
    ("LEGACY01", "C", []), ("AJONES", "C", ALL), ("JSMITH", "C", []),
    ("JSMITH", "D", []), ("JSMITH", "E", []), ("PKHAN", "F", ALL),
], ids=["assignee", "cross-office", "office-manager", "bill-preparation", "pre-silas-itself",
        "cross-office-for-pre-silas", "not-assigned", "closed", "returned", "other-firm-own"])
async def test_available_responses_are_those_the_signed_in_user_may_give_now(
        portal: TestClient, seeded: dict[str, str], login: str, which: str, expected: list[str]) -> None:
    notification = (await get_json(portal, f"/notifications/{seeded[which]}", login=login))["notification"]
    assert notification["available_responses"] == expected
    assert "has had no activity" in notification["message"]


async def test_the_api_needs_a_signed_in_user_of_the_directory(portal: TestClient) -> None:
    assert (await get_json(portal, f"/notifications?provider-id={FIRM}", login=None, status=401))["code"] == \
        "unauthenticated"
    assert (await get_json(portal, f"/notifications?provider-id={FIRM}", login="STRANGER", status=403))["code"] == \
        "unknown_user"
    # The demo has no tokens: a bearer token is not accepted.
    response = await portal.get(f"/notifications?provider-id={FIRM}", headers={"Authorization": "Bearer x"})
    assert response.status == 401


async def test_a_tampered_session_cookie_signs_nobody_in(portal: TestClient) -> None:
    cookie = session_cookie("JSMITH")[COOKIE]
    body, _, mac = cookie.rpartition(".")
    forged = session_cookie("AJONES")[COOKIE].rpartition(".")[0] + "." + mac
    for value in (forged, body + ".", "garbage"):
        response = await portal.get(f"/notifications?provider-id={FIRM}", cookies={COOKIE: value})
        assert response.status == 401


async def test_answering_through_the_session_needs_its_csrf_token_and_an_idempotency_key(
        portal: TestClient, seeded: dict[str, str]) -> None:
    path = f"/notifications/{seeded['A']}/response"
    body = {"response": "case_ongoing"}
    cookies = session_cookie("JSMITH")
    response = await portal.post(path, json=body, cookies=cookies, headers={"Idempotency-Key": "k1"})
    assert response.status == 403 and (await response.json())["code"] == "csrf"
    response = await portal.post(path, json=body, cookies=cookies, headers={"X-CSRF-Token": "wrong",
                                                                            "Idempotency-Key": "k1"})
    assert response.status == 403 and (await response.json())["code"] == "csrf"
    response = await portal.post(path, json=body, cookies=cookies, headers={"X-CSRF-Token": CSRF})
    assert response.status == 400 and (await response.json())["code"] == "missing_idempotency_key"
    response = await portal.post(path, data="not json", cookies=cookies,
                                 headers={"X-CSRF-Token": CSRF, "Idempotency-Key": "k1"})
    assert response.status == 400 and (await response.json())["code"] == "invalid_body"
    response = await portal.post(f"/notifications/{seeded['F']}/response", json=body, cookies=cookies,
                                 headers={"X-CSRF-Token": CSRF, "Idempotency-Key": "k1"})
    assert response.status == 403 and (await response.json())["code"] == "wrong_firm"


async def test_the_pages_send_a_signed_out_user_to_sign_in_and_back(portal: TestClient) -> None:
    response = await portal.get("/reviews/ICR-300000000001-001", allow_redirects=False)
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/sign-in" and parse_qs(location.query) == {"next": ["/reviews/ICR-300000000001-001"]}
    page = await (await portal.get("/sign-in?next=/reviews/ICR-300000000001-001")).text()
    assert 'action="/sign-in/demo"' in page and "JSMITH" in page and "office manager" in page
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    # The sign-in form is CSRF-protected too, and only a listed demo user signs in.
    response = await portal.post("/sign-in/demo", data={"login_id": "JSMITH", "csrf_token": "forged",
                                                        "next": "/"}, allow_redirects=False)
    assert response.status == 403
    response = await portal.post("/sign-in/demo", data={"login_id": "PKHAN", "csrf_token": csrf, "next": "/"},
                                 allow_redirects=False)
    assert response.status == 422 and "govuk-error-summary" in await response.text()
    response = await portal.post("/sign-in/demo", data={
        "login_id": "JSMITH", "csrf_token": csrf, "next": "/reviews/ICR-300000000001-001"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/reviews/ICR-300000000001-001"
    page = await (await portal.get("/reviews/ICR-300000000001-001")).text()
    assert "Signed in as <strong>JSMITH</strong>" in page
    # A new session at sign-in: the token of the signed-out page no longer works.
    assert csrf not in page


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
async def test_sign_in_never_redirects_off_the_site(portal: TestClient, target: str) -> None:
    page = await (await portal.get("/sign-in", params={"next": target})).text()
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = await portal.post("/sign-in/demo", data={"login_id": "JSMITH", "csrf_token": csrf, "next": target},
                                 allow_redirects=False)
    assert response.headers["Location"] == "/"


async def test_the_list_page_shows_the_users_open_reviews_with_overdue_in_words(portal: TestClient) -> None:
    page = await (await portal.get("/", cookies=session_cookie("JSMITH"))).text()
    assert "Your inactive case reviews" in page
    assert A in page and B in page and E in page and C not in page and D not in page
    # Overdue is said in words (a tag's text), never by colour alone: A and E are overdue, B is not.
    assert [line.strip() for line in page.splitlines()].count("Overdue") == 2
    firm = await (await portal.get("/?show=firm", cookies=session_cookie("JSMITH"))).text()
    assert C in firm and D not in firm
    # Soonest due first: E (due 30 May), A (4 June), then C and B.
    assert firm.index(E) < firm.index(A) < firm.index(C) < firm.index(B)


async def test_the_notification_page_offers_the_five_responses_only_to_who_may_answer(
        portal: TestClient, seeded: dict[str, str]) -> None:
    page = await (await portal.get(f"/reviews/{seeded['A']}", cookies=session_cookie("JSMITH"))).text()
    for label in ["Case Ongoing", "Case Complete to be Billed", "Case Complete Costs Negotiated",
                  "Case Complete Court Assessment", "Case Complete No Bill Due"]:
        assert label in page
    assert page.count('type="radio"') == 5 and 'name="csrf_token"' in page and 'id="message"' in page
    assert "has had no activity" in page
    manager = await (await portal.get(f"/reviews/{seeded['A']}", cookies=session_cookie("OMANAGER"))).text()
    assert 'type="radio"' not in manager and "Office Manager can view notifications but not respond" in manager
    other = await portal.get(f"/reviews/{seeded['F']}", cookies=session_cookie("JSMITH"))
    assert other.status == 403
    response = await portal.post(f"/reviews/{seeded['A']}/response", cookies=session_cookie("JSMITH"),
                                 data={"response": "case_ongoing", "csrf_token": "forged"})
    assert response.status == 403


async def test_every_page_carries_a_content_security_policy_and_the_vendored_assets_are_served(
        portal: TestClient) -> None:
    response = await portal.get("/sign-in")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy and "frame-ancestors 'none'" in policy
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'nonce="{nonce}"' in await response.text()
    for path in ["/govuk-frontend/govuk-frontend.min.css", "/govuk-frontend/govuk-frontend.min.js",
                 "/assets/fonts/bold-b542beb274-v2.woff2", "/assets/images/favicon.svg", "/portal-assets/portal.js"]:
        assert (await portal.get(path)).status == 200, path


async def test_signing_out_needs_the_csrf_token_and_ends_the_session(portal: TestClient) -> None:
    cookies = session_cookie("JSMITH")
    response = await portal.post("/sign-out", data={"csrf_token": "forged"}, cookies=cookies, allow_redirects=False)
    assert response.status == 403
    response = await portal.post("/sign-out", data={"csrf_token": CSRF}, cookies=cookies, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/signed-out"
    cleared = response.cookies[COOKIE].value
    after = await portal.get(f"/notifications?provider-id={FIRM}", cookies={COOKIE: cleared})
    assert after.status == 401

"""The provider portal in a real browser: headless Chromium (the system's, driven by
Playwright) against the portal served beside a worker on the Temporal dev server and
PostgreSQL. A provider signs in (the demo's sign-in), opens the overdue review, is told in
the error summary that a response must be chosen, answers "Case Ongoing" with a message, sees
the confirmation, and the certificate's `status` shows the new deadline. Skipped, saying why,
where no Chromium is installed."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient
from icr.adapters.temporal.codec import EncryptionCodec, data_converter
from icr.domain.models import CertificateStatus
from icr.portal.app import build_app
from icr.portal.auth import DemoSignIn
from icr.runtime.engine import build_worker
from icr.runtime.http import serve
from icr.runtime.settings import Settings
from tests.conftest import FIRM, TEST_KEYS, add_certificate, add_user
from tests.devserver import SEARCH_ATTRIBUTES, temporal_binary

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"the real-browser test of the portal needs headless Chromium at {CHROMIUM} "
                "(`apt-get install -y chromium`)", allow_module_level=True)
playwright = pytest.importorskip("playwright.async_api", reason="the `playwright` package (test extras) is missing")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
DAY = timedelta(days=1)
SCREENSHOTS = Path("/tmp/icr-portal-screenshots")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES, ui=False)
    try:
        yield env
    finally:
        await env.shutdown()


async def wait_for(certificates: CertificateClient, ref: str, stage: str, seconds: float = 90) -> CertificateStatus:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status = await certificates.status(ref)
        if status.stage == stage:
            return status
        assert asyncio.get_running_loop().time() < deadline, f"{ref} is still {status.stage}"
        await asyncio.sleep(0.5)


async def test_a_provider_signs_in_and_answers_the_overdue_review_in_a_browser(
        dev_server: WorkflowEnvironment, store: Store) -> None:
    client = await Client.connect(dev_server.client.service_client.config.target_host,
                                  data_converter=data_converter(EncryptionCodec(TEST_KEYS)))
    settings = Settings(task_queue=f"icr-portal-{uuid.uuid4().hex[:8]}")
    certificates = CertificateClient(client, settings.task_queue)
    now = datetime.now(UTC)
    # Responses fall due 3 seconds after a review is raised (so it is overdue at once), and
    # return to the LAA only after ten minutes.
    await store.add_policy_version(608, now - timedelta(seconds=1), "test", "fast due date", now,
                                   response_due=timedelta(seconds=3), return_after=timedelta(minutes=10))
    await add_user(store, "JSMITH", ["case_management"])
    ref = f"3000{uuid.uuid4().int % 10**8:08d}"
    await add_certificate(store, ref, last_activity_at=now - 700 * DAY, contact="JSMITH")
    port = free_port()
    runner = await serve(build_app(store, certificates, DemoSignIn(["JSMITH"]), "x" * 40, secure_cookies=False),
                         "127.0.0.1", port)
    async with build_worker(client, store, settings):
        assert await certificates.start(ref, FIRM)
        before = await wait_for(certificates, ref, "Overdue")
        assert before.open_notification is not None
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            try:
                await answer_in_the_browser(page, f"http://127.0.0.1:{port}", ref)
            finally:
                SCREENSHOTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(SCREENSHOTS / "last.png"), full_page=True)
                await browser.close()
        after = await wait_for(certificates, ref, "Active")
    await runner.cleanup()
    assert after.open_notification is None
    # Case Ongoing counts as activity: the clock restarts from the answer, 608 days on.
    assert after.last_activity_at is not None and after.last_activity_at >= now
    assert after.inactivity_deadline is not None and before.inactivity_deadline is not None
    assert after.inactivity_deadline - after.last_activity_at == 608 * DAY
    assert after.inactivity_deadline > before.inactivity_deadline + 600 * DAY
    row = await store.notification(before.open_notification.notification_id)
    assert row is not None and row.status == "Responded" and row.message == "Still before the court."


async def answer_in_the_browser(page: Any, portal: str, ref: str) -> None:
    expect = playwright.expect
    await page.goto(f"{portal}/")
    # Signed out: the sign-in page, where the demo picks a user.
    await expect(page.get_by_role("heading", name="Sign in as a demo user")).to_be_visible()
    # The first thing the keyboard reaches is the skip link.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Skip to main content"
    # (A focused skip link is shown above the page; leaving it moves the page back up.)
    await page.evaluate("document.activeElement.blur()")
    await page.get_by_label("JSMITH").check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Your inactive case reviews")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=ref)
    await expect(row.get_by_text("Overdue", exact=True)).to_be_visible()  # said in words, not colour alone
    await row.get_by_role("link").click()
    await expect(page.get_by_role("heading", name=f"Case {ref}")).to_be_visible()
    await expect(page.get_by_text("The letter")).to_be_visible()
    # Submitted with no response chosen: the error summary, focused, links to the radios.
    await page.get_by_role("button", name="Submit response").click()
    summary = page.locator(".govuk-error-summary")
    await expect(summary).to_be_visible()
    await expect(summary).to_be_focused()
    await expect(summary.get_by_role("link", name="Select a response")).to_have_attribute("href", "#response")
    SCREENSHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "refused.png"), full_page=True)
    await page.get_by_label("Case Ongoing").check()
    await page.get_by_label("Message to the LAA (optional)").fill("Still before the court.")
    await page.get_by_role("button", name="Submit response").click()
    await expect(page.get_by_role("heading", name="Response submitted")).to_be_visible()
    await expect(page.get_by_text("Case Ongoing")).to_be_visible()
    await expect(page.get_by_text("inactivity clock restarts today")).to_be_visible()

"""The caseworker's Web UI in a real browser: headless Chromium (the system's, driven by
Playwright) against the Temporal dev server's own Web UI, with `worker.py` as a process and
the registry loaded by `starter.py import`.

A caseworker opens the review queue's link, finds the certificate, reads its stage, task and
dates under User Metadata without running a query, sends a `decide` update from
*Send an Update*, sees a bad decision refused with its reason, and sees a good one take the
certificate back to Active. Skipped, saying why, where no Chromium is installed.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.devserver import (
    CERTIFICATE_HEADER,
    FIRM,
    SEARCH_ATTRIBUTES,
    USER_HEADER,
    EngineEnv,
    WorkerProcess,
    engine_database,  # noqa: F401  (fixture)
    engine_env,  # noqa: F401  (fixture)
    engine_task_queue,  # noqa: F401  (fixture)
    new_case_reference,
    query_status,
    temporal_binary,
    wait_listed,
    wait_stage,
    worker,  # noqa: F401  (fixture)
    workflow_id,
    write_csv,
)

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"the real-browser test of the Web UI needs headless Chromium at {CHROMIUM} "
                "(`apt-get install -y chromium`; .ci/run installs it when run as root)", allow_module_level=True)
playwright = pytest.importorskip("playwright.async_api", reason="the `playwright` package (test extras) is missing")

# What a sandboxed CI machine needs: no GPU, no sandbox, nothing fetched from the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UK = ZoneInfo("Europe/London")
TIMEOUT_MS = 15_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ui_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
async def dev_server(ui_port: int) -> AsyncIterator[WorkflowEnvironment]:
    """The dev server WITH its Web UI (the other modules' has none); the engine fixtures use it."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES, ui=True, ui_port=ui_port)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="module")
def client(dev_server: WorkflowEnvironment) -> Client:
    return dev_server.client


def uk(at: str) -> str:
    """A status time as the Web UI's details show it (UK time, to the minute)."""
    return datetime.fromisoformat(at).astimezone(UK).strftime("%Y-%m-%d %H:%M")


@pytest.fixture(scope="module")
async def certificates(engine_env: EngineEnv, worker: WorkerProcess, client: Client,  # noqa: F811
                       tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One certificate waiting for the LAA's review, one awaiting the provider's response."""
    folder = tmp_path_factory.mktemp("csv")
    review, awaiting = new_case_reference(), new_case_reference()
    inactive = (datetime.now(UTC) - timedelta(days=700)).replace(microsecond=0).isoformat()
    users = write_csv(folder / "users.csv", USER_HEADER, [["UI-CONTACT", FIRM, "case_management", "false"]])
    certs = write_csv(folder / "certificates.csv", CERTIFICATE_HEADER, [
        [review, FIRM, "2L847Q", "UI-CONTACT", "2020-01-06", inactive, "1200.00", "200.00"],
        [awaiting, FIRM, "2L847Q", "UI-CONTACT", "2020-01-06", inactive, "0.00", "0.00"],
    ])
    caseworkers = write_csv(folder / "caseworkers.csv", ["caseworker_id", "active"], [["LAA-CW-UI", "true"]])
    for run in [await engine_env.starter("import", "users", str(users)),
                await engine_env.starter("import", "caseworkers", str(caseworkers)),
                await engine_env.starter("import", "certificates", str(certs))]:
        assert run.code == 0, str(run)
    await wait_stage(client, review, "AwaitingResponse")
    run = await engine_env.starter("respond", review, "--user", "UI-CONTACT", "--response", "complete_to_be_billed",
                                   "--message", "a private message")
    assert run.code == 0, str(run)
    await wait_stage(client, review, "LaaReview")
    await wait_stage(client, awaiting, "AwaitingResponse")
    await wait_listed(client, "OpenTaskKind = 'review'", workflow_id(review))
    await wait_listed(client, f"IcrStage = 'AwaitingResponse' AND ProviderFirmId = '{FIRM}'", workflow_id(awaiting))
    return {"review": review, "awaiting": awaiting}


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """A fresh headless Chromium profile (nothing remembered from another run)."""
    async with playwright.async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1100})
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            await context.close()


def link(ui_port: int, query: str) -> str:
    """The list filter's link, as `./run demo` and `starter.py queue` print it."""
    return f"http://127.0.0.1:{ui_port}/namespaces/default/workflows?query={quote(query, safe='')}"


async def open_from_list(page: Any, ui_port: int, query: str, ref: str) -> None:
    await page.goto(link(ui_port, query))
    await page.get_by_role("link", name=workflow_id(ref), exact=True).click()
    await page.wait_for_url(re.compile(f"/workflows/{workflow_id(ref)}/"))


async def user_metadata(page: Any, ref: str, headline: str) -> str:
    """The certificate's Summary, Details and Current Details (each rendered in its own frame),
    as the caseworker reads them, once the current details show `headline`."""
    await page.get_by_text("User Metadata", exact=True).click()
    frames = page.locator("main").frame_locator("iframe")
    summary, details, current = (frames.nth(i).locator("body") for i in range(3))
    await playwright.expect(summary).to_contain_text(f"Certificate {ref} · firm {FIRM}")
    await playwright.expect(current).to_contain_text(headline)
    texts = [await part.inner_text() for part in (summary, details, current)]
    return "\n".join(texts).replace("\u2019", "'")  # the UI typesets apostrophes


async def send_decide(page: Any, data: dict[str, str]) -> Any:
    """More Actions → Send an Update → `decide`, with `data` as its JSON input; the dialog."""
    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name="Send an Update").click()
    dialog = page.get_by_role("dialog", name="Send an Update")
    await dialog.get_by_test_id("update-select-button").click()
    await dialog.get_by_role("option", name="decide", exact=True).click()
    await dialog.get_by_role("textbox", name="Data").click()
    await page.keyboard.press("Control+A")  # the dialog keeps what was typed last time
    await page.keyboard.insert_text(json.dumps(data))
    await page.keyboard.press("Tab")  # the editor hands its text to the form when it loses focus
    await dialog.get_by_role("button", name="Submit").click()
    return dialog


async def test_a_caseworker_finds_reads_and_decides_a_certificate_in_the_web_ui(
        browser: Any, ui_port: int, certificates: dict[str, str], client: Client) -> None:
    page = await browser.new_page()
    ref = certificates["review"]
    status = await query_status(client, ref)
    task_id = status["open_task"]["task_id"]

    # The review queue's link lists the certificate; opening it shows the start input as sent.
    await open_from_list(page, ui_port, "OpenTaskKind = 'review'", ref)
    await playwright.expect(page.get_by_text('"case_reference"')).to_be_visible()
    input_panel = await page.get_by_text('"case_reference"').locator("xpath=ancestor::div[1]").inner_text()
    assert "state" not in input_panel and "pending_events" not in input_panel, input_panel

    # Its situation, without running a query: stage, task and what it asks, dates, money.
    text = await user_metadata(page, ref, "LAA review: a task awaits a caseworker")
    assert f"Open task {task_id} (review" in text and "Case Complete to be Billed: close, or keep open" in text, text
    assert f"Inactivity deadline {uk(status['inactivity_deadline'])}" in text, text
    assert "Payments on account outstanding £1000.00" in text, text
    for personal in ["UI-CONTACT", "a private message"]:
        assert personal not in text, f"{personal!r} shown in the Web UI:\n{text}"

    # A decision it cannot take is refused, with the reason, in the dialog.
    dialog = await send_decide(page, {"caseworker": "LAA-CW-UI", "decision": "maybe", "reason": "checking"})
    await playwright.expect(dialog.get_by_text("'maybe' is not a decision; use one of: close, keep_open")) \
        .to_be_visible()
    assert 'File "' not in await dialog.inner_text()  # the reason alone, no Python stack
    await dialog.get_by_test_id("cancel-modal-button").click()
    assert (await query_status(client, ref))["stage"] == "LaaReview"

    # keep_open is taken: the certificate goes Active, and its details say so.
    dialog = await send_decide(page, {"caseworker": "LAA-CW-UI", "decision": "keep_open",
                                      "reason": "bill expected", "task_id": task_id})
    await playwright.expect(dialog).to_be_hidden()
    after = await wait_stage(client, ref, "Active")
    await page.reload()
    text = await user_metadata(page, ref, "Active: the inactivity clock is running")
    assert f"Falls due {uk(after['inactivity_deadline'])}" in text, text
    assert f"caseworker decided keep_open on {task_id}" in text and "LAA-CW-UI" not in text, text
    await wait_listed(client, f"IcrStage = 'Active' AND ProviderFirmId = '{FIRM}'", workflow_id(ref))


async def test_a_certificate_awaiting_its_response_shows_the_due_date(
        browser: Any, ui_port: int, certificates: dict[str, str], client: Client) -> None:
    page = await browser.new_page()
    ref = certificates["awaiting"]
    notification = (await query_status(client, ref))["open_notification"]
    await open_from_list(page, ui_port, f"IcrStage = 'AwaitingResponse' AND ProviderFirmId = '{FIRM}'", ref)
    text = await user_metadata(page, ref, "Awaiting the provider")
    assert (f"Open notification {notification['notification_id']} (cycle 1 of 3): due {uk(notification['due_date'])}, "
            f"returned {uk(notification['return_date'])}") in text, text
    assert "UI-CONTACT" not in text, text
    # The timeline reads as the review: the timer says what it waits for.
    await page.get_by_text("Timeline", exact=True).first.click()
    await playwright.expect(page.get_by_text(f"wait for response: due {uk(notification['due_date'])}")).to_be_visible()

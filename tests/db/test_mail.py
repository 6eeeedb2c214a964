"""Sending the daily digest by SMTP, against a real aiosmtpd server on this machine: one mail
per provider user a day, its content, a user with no address, a refused recipient, the server
down then up, and a sender that dies between the send and the mark."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from icr.adapters.db.outbox import DigestMail, Outbox
from icr.adapters.db.store import Store
from icr.adapters.mail.mailer import MailConfig, Mailer, message_id_for, outbox_lines
from icr.adapters.mail.sink import local_sink, stored_messages
from icr.domain.models import (
    DailyDigestResult,
    QueueDailyDigests,
    RaiseNotification,
    RecordResponse,
    Response,
    SendDailyDigests,
    User,
)
from icr.domain.rules import NOTIFICATION_SUBJECT, UK, notification_letter
from icr.runtime.engine import build_worker
from icr.runtime.mail import mail_config, mail_server
from icr.runtime.settings import Settings
from icr.services.importer import import_users
from workflows.digest import DailyDigestWorkflow

FIRM = "26517"
DOMAIN = "laa.example"
PORTAL = "https://portal.example/icr?from=digest&x=1"
AT = datetime(2026, 6, 30, 6, 0, tzinfo=UTC)  # 07:00 in the UK
DAY = AT.astimezone(UK).date()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    envelope_to: list[str]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class SmtpServer:
    """A real SMTP server (aiosmtpd) on a fixed free port: keeps what it accepts, answers
    RCPT for the addresses in `refuse` with the reply given there, and can be stopped and
    started again on the same port (the server down, then up)."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    rcpt_attempts: list[str] = field(default_factory=list)
    controller: Controller | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        self.rcpt_attempts.append(address)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(list(envelope.rcpt_tos), message))
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    async def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(self.controller.start)

    async def stop(self) -> None:
        if self.controller is not None:
            await asyncio.to_thread(self.controller.stop)
            self.controller = None

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if r.envelope_to == [address]]

    def config(self) -> MailConfig:
        return MailConfig(host="127.0.0.1", port=self.port, starttls=False, username=None, password=None,
                          timeout=5, mail_from=f"Legal Aid Agency <icr-noreply@{DOMAIN}>", portal_url=PORTAL)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    server = SmtpServer()
    await server.start()
    yield server
    await server.stop()


# --- helpers ---------------------------------------------------------------------------------


async def add_user(store: Store, login_id: str, email_address: str | None) -> None:
    await store.upsert_user(User(login_id=login_id, provider_firm_id=FIRM, roles=["case_management"],
                                 email=email_address), "test", AT)


async def notify(store: Store, ref: str, contact: str, at: datetime, due: timedelta = timedelta(days=14)) -> str:
    notification_id = f"ICR-{ref}-001"
    await store.raise_notification(RaiseNotification(
        case_reference=ref, notification_id=notification_id, cycle=1, provider_firm_id=FIRM,
        assigned_to=contact, date_assigned=at, due_date=at + due, return_date=at + due + timedelta(days=7),
        subject=NOTIFICATION_SUBJECT, letter=notification_letter(ref, at + due, response_due=due,
                                                                 return_after=due + timedelta(days=7))))
    return notification_id


async def queue_and_send(store: Store, mailer: Mailer, at: datetime = AT, run_key: str = "run-1") -> Any:
    day = at.astimezone(UK).date()
    await store.queue_daily_digests(QueueDailyDigests(digest_date=day, at=at))
    return await mailer.send_digests(SendDailyDigests(digest_date=day, at=at, run_key=run_key))


async def row(store: Store, login_id: str, day: date = DAY) -> Any:
    found = await store.pool.fetchrow(
        "SELECT * FROM email_digests WHERE login_id = $1 AND digest_date = $2", login_id, day)
    assert found is not None
    return found


async def audits(store: Store, action: str) -> list[dict[str, Any]]:
    rows = await store.pool.fetch("SELECT * FROM audit_log WHERE action = $1 ORDER BY id", action)
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


@contextlib.asynccontextmanager
async def digest_worker(env: WorkflowEnvironment, store: Store, mailer: Mailer) -> AsyncIterator[str]:
    """A worker on its own task queue on the time-skipping server, sending through `mailer`."""
    task_queue = f"icr-mail-{uuid.uuid4().hex[:8]}"
    async with build_worker(env.client, store, Settings(task_queue=task_queue), mailer):
        yield task_queue


async def start_digest(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(DailyDigestWorkflow.run, id=f"digest-{uuid.uuid4().hex[:8]}",
                                       task_queue=task_queue)


async def finished(client: Client, handle: WorkflowHandle[Any, Any], timeout: float = 20) -> DailyDigestResult:
    """Waits in real time: awaiting result() on the time-skipping server would jump ahead."""
    for _ in range(int(timeout * 10)):
        if (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED:
            history = await handle.fetch_history()
            payloads = history.events[-1].workflow_execution_completed_event_attributes.result.payloads
            [result] = await client.data_converter.decode(payloads, [DailyDigestResult])
            assert isinstance(result, DailyDigestResult)
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"the digest workflow did not complete in {timeout} seconds")


async def run_digest(client: Client, task_queue: str, timeout: float = 20) -> DailyDigestResult:
    return await finished(client, await start_digest(client, task_queue), timeout)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    for _ in range(int(timeout * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the condition did not hold in time")


# --- one mail per user per day -----------------------------------------------------------------


async def test_one_mail_per_user_per_day_however_many_notifications_and_runs(
        time_env: WorkflowEnvironment, store: Store, smtp: SmtpServer) -> None:
    now = await time_env.get_current_time()
    await add_user(store, "ALICE", "alice@firm.example")
    await add_user(store, "BOB", "bob@firm.example")
    for i in range(5):
        await notify(store, f"30000000011{i}", "ALICE", now - timedelta(hours=i))
    await notify(store, "300000000120", "BOB", now)
    today = now.astimezone(UK).date()

    async with digest_worker(time_env, store, Mailer(Outbox(store.pool), smtp.config())) as queue:
        first = await run_digest(time_env.client, queue)
        again = [await run_digest(time_env.client, queue) for _ in range(3)]

        assert (first.digest_date, first.queued, first.sent, first.already_sent) == (today, 2, 2, 0)
        assert (first.failed, first.without_address) == ([], [])
        for result in again:
            assert (result.queued, result.sent, result.already_sent) == (0, 0, 2)
        assert [r.envelope_to for r in smtp.received] in (
            [["alice@firm.example"], ["bob@firm.example"]], [["bob@firm.example"], ["alice@firm.example"]])
        alice = (await row(store, "ALICE", today))
        assert alice["sent_at"] is not None and alice["attempts"] == 1
        assert alice["smtp_response"].startswith("250 2.0.0 Ok: queued as Q")
        assert alice["message_id"] == message_id_for("ALICE", today, DOMAIN) == smtp.to("alice@firm.example")[0].message_id
        assert len(await audits(store, "digest_sent")) == 2

        await time_env.sleep(timedelta(days=1))
        tomorrow = await run_digest(time_env.client, queue)
        assert (tomorrow.digest_date, tomorrow.queued, tomorrow.sent) == (today + timedelta(days=1), 2, 2)
        assert len(smtp.to("alice@firm.example")) == 2
        assert len({r.message_id for r in smtp.received}) == 4


def test_message_ids_are_stable_and_distinct_per_login() -> None:
    assert message_id_for("J.SMITH", date(2026, 5, 17), "laa.example") == "<digest-J=2ESMITH-2026-05-17@laa.example>"
    logins = ["a@b", "a_b", "a=40b", "a-b", "A-B", "a b", "é"]
    ids = {message_id_for(login, date(2026, 5, 17), "x.example") for login in logins}
    assert len(ids) == len(logins)
    assert all(i.count("@") == 1 and " " not in i and i.isascii() for i in ids)


# --- the content ---------------------------------------------------------------------------------


async def test_the_mail_names_the_firm_the_count_the_earliest_due_date_and_the_portal(
        store: Store, smtp: SmtpServer) -> None:
    await add_user(store, "ALICE", "alice@firm.example")
    # Due at 23:30 UTC on 13 July: already the 14th in the UK (BST).
    await notify(store, "300000000201", "ALICE", AT - timedelta(days=1), due=timedelta(days=14, hours=17, minutes=30))
    await notify(store, "300000000202", "ALICE", AT - timedelta(days=2), due=timedelta(days=30))
    answered = await notify(store, "300000000203", "ALICE", AT - timedelta(days=3))
    await store.record_response(RecordResponse(
        case_reference="300000000203", notification_id=answered, response=Response.CASE_ONGOING,
        message="Private note from the solicitor: client in hospital", responded_by="ALICE",
        response_key="r1", at=AT - timedelta(hours=1)))

    result = await queue_and_send(store, Mailer(Outbox(store.pool), smtp.config()))

    assert result.sent == 1
    [mail] = smtp.received
    message = mail.message
    assert mail.envelope_to == ["alice@firm.example"]
    assert message["To"] == "alice@firm.example"
    assert message["From"] == f"Legal Aid Agency <icr-noreply@{DOMAIN}>"
    assert message["Subject"] == "Inactive case review: 2 notifications waiting for your response"
    assert message["Message-ID"] == message_id_for("ALICE", DAY, DOMAIN)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == AT  # the digest's time: a re-send is the same message
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    plain, markup = text.get_content(), html.get_content()
    assert "Provider firm: 26517" in plain
    assert "Open notifications for you: 2" in plain
    assert "Earliest due date: Tuesday 14 July 2026" in plain
    assert PORTAL in plain
    assert 'href="https://portal.example/icr?from=digest&amp;x=1"' in markup
    assert "26517" in markup and "Tuesday 14 July 2026" in markup
    for secret in ("Private note", "hospital", "300000000201", "Inactive Case Please Review"):
        assert secret not in plain and secret not in markup


# --- a user with no address ------------------------------------------------------------------------


async def test_a_user_without_an_address_is_reported_and_audited_once_and_mailed_once_they_have_one(
        time_env: WorkflowEnvironment, store: Store, smtp: SmtpServer, tmp_path: Path) -> None:
    now = await time_env.get_current_time()
    today = now.astimezone(UK).date()
    await add_user(store, "ALICE", "alice@firm.example")
    await add_user(store, "CAROL", None)
    await notify(store, "300000000301", "ALICE", now)
    await notify(store, "300000000302", "CAROL", now)
    await notify(store, "300000000303", "NOBODY", now)  # not in the directory at all

    async with digest_worker(time_env, store, Mailer(Outbox(store.pool), smtp.config())) as queue:
        first = await run_digest(time_env.client, queue)
        second = await run_digest(time_env.client, queue)
        assert (first.queued, first.sent, first.without_address) == (3, 1, ["CAROL", "NOBODY"])
        assert (second.queued, second.sent, second.without_address) == (0, 0, ["CAROL", "NOBODY"])
        assert sorted(a["detail"]["login_id"] for a in await audits(store, "digest_not_sent")) == ["CAROL", "NOBODY"]
        carol = await row(store, "CAROL", today)
        assert (carol["sent_at"], carol["failed_at"], carol["attempts"]) == (None, None, 0)
        assert carol["last_error"] == "no e-mail address in the user directory"
        header, *listed = outbox_lines(await Outbox(store.pool).rows(problems_only=True))
        assert header.startswith("# day") and len(listed) == 2 and all("no_address" in line and "no e-mail address" in line for line in listed)

        # The address arrives through the import; the next run the same day sends CAROL's.
        users = tmp_path / "users.csv"
        users.write_text("login_id,provider_firm_id,roles,pre_silas,email\n"
                         "CAROL,26517,case_management,false,carol@firm.example\n"
                         "DAVE,26517,case_management,false,not-an-address\n"
                         "ERIN,26517,case_management,false,\n", encoding="utf-8")
        report = await import_users(store, users, actor="test", now=now)
        assert (report.imported, report.updated, report.refused_rows) == (1, 1, 1)
        assert report.refused[0].line == 3 and report.refused[0].column == "email"
        assert "not an e-mail address" in report.refused[0].reason
        assert [u.email for u in await store.load_users(["ERIN"])] == [None]

        third = await run_digest(time_env.client, queue)
        assert (third.sent, third.already_sent, third.without_address) == (1, 1, ["NOBODY"])
        assert [r.envelope_to for r in smtp.received] == [["alice@firm.example"], ["carol@firm.example"]]

        # Its day over, the digest nobody could be sent fails for good: no mail of yesterday's today.
        await time_env.sleep(timedelta(days=1))
        await run_digest(time_env.client, queue)
        nobody = await row(store, "NOBODY", today)
        assert nobody["failed_at"] is not None and "not sent on its day" in nobody["last_error"]

    # A users file without the email column leaves the addresses as they are.
    old_style = tmp_path / "old.csv"
    old_style.write_text("login_id,provider_firm_id,roles,pre_silas\nCAROL,26517,case_management,true\n",
                         encoding="utf-8")
    assert (await import_users(store, old_style, actor="test", now=now)).updated == 1
    assert [u.email for u in await store.load_users(["CAROL"])] == ["carol@firm.example"]


# --- refusals --------------------------------------------------------------------------------------


async def test_a_refused_recipient_fails_for_good_without_holding_up_the_others(
        time_env: WorkflowEnvironment, store: Store, smtp: SmtpServer) -> None:
    now = await time_env.get_current_time()
    await add_user(store, "ALICE", "alice@firm.example")
    await add_user(store, "GONE", "gone@firm.example")
    await notify(store, "300000000401", "ALICE", now)
    await notify(store, "300000000402", "GONE", now)
    smtp.refuse["gone@firm.example"] = "550 5.1.1 <gone@firm.example>: mailbox unavailable"

    async with digest_worker(time_env, store, Mailer(Outbox(store.pool), smtp.config())) as queue:
        first = await run_digest(time_env.client, queue)
        second = await run_digest(time_env.client, queue)

    assert (first.sent, first.failed) == (1, ["GONE"])
    assert (second.sent, second.failed) == (0, ["GONE"])
    assert smtp.rcpt_attempts.count("gone@firm.example") == 1  # never retried
    assert [r.envelope_to for r in smtp.received] == [["alice@firm.example"]]
    gone = await row(store, "GONE", now.astimezone(UK).date())
    assert gone["sent_at"] is None and gone["failed_at"] is not None
    assert gone["last_error"] == "recipient refused: 550 5.1.1 <gone@firm.example>: mailbox unavailable"
    [audit] = await audits(store, "digest_failed")
    assert audit["detail"]["login_id"] == "GONE"
    [_, line] = outbox_lines(await Outbox(store.pool).rows(problems_only=True))
    assert "GONE" in line and "failed" in line and "550 5.1.1" in line


async def test_a_temporary_refusal_is_retried(store: Store, smtp: SmtpServer) -> None:
    await add_user(store, "BUSY", "busy@firm.example")
    await notify(store, "300000000501", "BUSY", AT)
    smtp.refuse["busy@firm.example"] = "450 4.2.1 mailbox busy, try again later"
    mailer = Mailer(Outbox(store.pool), smtp.config())

    first = await queue_and_send(store, mailer)
    assert (first.sent, first.pending, first.failed) == (0, ["BUSY"], [])
    busy = await row(store, "BUSY")
    assert (busy["attempts"], busy["claimed_at"], busy["failed_at"]) == (1, None, None)
    assert "450 4.2.1" in busy["last_error"]
    assert "retrying" in outbox_lines(await Outbox(store.pool).rows(problems_only=True))[1]

    del smtp.refuse["busy@firm.example"]
    second = await queue_and_send(store, mailer)
    assert (second.sent, second.pending) == (1, [])
    assert (await row(store, "BUSY"))["attempts"] == 2
    assert len(smtp.received) == 1


async def test_an_address_that_cannot_be_used_fails_for_good(store: Store, smtp: SmtpServer) -> None:
    await add_user(store, "ODD", None)
    await store.pool.execute("UPDATE users SET email = 'odd user@firm' WHERE login_id = 'ODD'")  # by hand
    await notify(store, "300000000601", "ODD", AT)
    result = await queue_and_send(store, Mailer(Outbox(store.pool), smtp.config()))
    assert (result.failed, smtp.rcpt_attempts) == (["ODD"], [])
    assert "not an e-mail address" in (await row(store, "ODD"))["last_error"]


# --- the server down, then up ------------------------------------------------------------------------


async def test_the_server_down_then_up(time_env: WorkflowEnvironment, store: Store, smtp: SmtpServer) -> None:
    now = await time_env.get_current_time()
    today = now.astimezone(UK).date()
    await add_user(store, "ALICE", "alice@firm.example")
    await add_user(store, "BOB", "bob@firm.example")
    await notify(store, "300000000701", "ALICE", now)
    await notify(store, "300000000702", "BOB", now)
    await smtp.stop()

    async with digest_worker(time_env, store, Mailer(Outbox(store.pool), smtp.config())) as queue:
        handle = await start_digest(time_env.client, queue)

        async def deferred() -> bool:
            alice = await store.pool.fetchrow(
                "SELECT * FROM email_digests WHERE login_id = 'ALICE' AND digest_date = $1", today)
            return alice is not None and alice["attempts"] >= 1 and alice["claimed_at"] is None
        await eventually(deferred)
        alice = await row(store, "ALICE", today)
        assert alice["sent_at"] is None and alice["failed_at"] is None
        assert alice["last_error"].startswith("cannot reach the SMTP server")
        assert "retrying" in outbox_lines(await Outbox(store.pool).rows(problems_only=True))[1]

        await smtp.start()  # the activity's retry (with backoff) finds it up
        result = await finished(time_env.client, handle, timeout=30)

    assert (result.queued, result.sent, result.failed, result.without_address) == (2, 2, [], [])
    assert sorted(r.envelope_to[0] for r in smtp.received) == ["alice@firm.example", "bob@firm.example"]
    assert (await row(store, "ALICE", today))["attempts"] >= 2


async def test_no_smtp_server_configured_waits_and_says_so(store: Store) -> None:
    await add_user(store, "ALICE", "alice@firm.example")
    await notify(store, "300000000801", "ALICE", AT)
    config = mail_config(Settings())
    result = await queue_and_send(store, Mailer(Outbox(store.pool), config))
    assert result.pending == ["ALICE"]
    assert "no SMTP server configured" in (await row(store, "ALICE"))["last_error"]


REAL_SERVERS = {"TEMPORAL_ADDRESS": "temporal.internal:7233", "DATABASE_URL": "postgresql://icr@db.internal/icr"}


@pytest.mark.parametrize("unset", [["ICR_SMTP_HOST", "ICR_MAIL_FROM", "ICR_PORTAL_URL"], ["ICR_PORTAL_URL"]])
async def test_with_real_servers_and_no_mail_settings_the_mailer_refuses_and_digests_stay_pending(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unset: list[str]) -> None:
    # The setting of a worker in a container with no mail configured: never a local folder marked sent.
    given = {**REAL_SERVERS, "ICR_DATA_DIR": str(tmp_path), "ICR_SMTP_HOST": "smtp.laa.example",
             "ICR_MAIL_FROM": f"icr@{DOMAIN}", "ICR_PORTAL_URL": PORTAL}
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    for name in (*unset, "ICR_EMBEDDED", "ICR_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    await add_user(store, "ALICE", "alice@firm.example")
    await notify(store, "300000000811", "ALICE", AT)
    async with mail_server(Settings.from_env()) as config:
        result = await queue_and_send(store, Mailer(Outbox(store.pool), config))
    assert (result.sent, result.pending) == (0, ["ALICE"])
    assert not (tmp_path / "mail").exists(), "a local folder took the digest"
    found = await row(store, "ALICE")
    assert found["sent_at"] is None and found["attempts"] == 0, "the mailer tried to send"
    reason = found["last_error"]
    assert reason.startswith("the mailer is off: ") and all(name in reason for name in unset), reason
    # `mail list --failed` shows the row, and why.
    [shown] = await Outbox(store.pool).rows(day=DAY, problems_only=True)
    assert (shown.login_id, shown.status, shown.last_error) == ("ALICE", "held", reason)


async def test_with_embedded_servers_and_no_smtp_host_the_digest_goes_to_the_local_sink(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*REAL_SERVERS, "ICR_SMTP_HOST", "ICR_MAIL_FROM", "ICR_PORTAL_URL", "ICR_EMBEDDED", "ICR_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    async with mail_server(Settings(data_dir=tmp_path)) as config:
        assert config.off is None and config.sink == tmp_path / "mail" and config.host == "127.0.0.1"


# --- a sender that dies between the send and the mark ----------------------------------------------


class WorkerKilled(Exception):
    """Raised by the mailer's test hook right after the SMTP server accepted a message."""


def die_after_sending(login_id: str) -> Callable[[DigestMail], Awaitable[None]]:
    died = False

    async def hook(mail: DigestMail) -> None:
        nonlocal died
        if mail.login_id == login_id and not died:
            died = True
            raise WorkerKilled(f"killed after sending {mail.message_id}")
    return hook


async def test_a_sender_killed_between_send_and_mark_resends_once_with_the_same_message_id(
        store: Store, smtp: SmtpServer) -> None:
    """What this proves: the database state a killed sender leaves (the row claimed, the message
    accepted, the row not marked) is re-sent only once the claim's lease has run out, with the
    same Message-ID and content, and the row ends sent once. The 'kill' is an exception at that
    point (not a SIGKILL), which the mailer does not catch: it writes nothing more for the row."""
    await add_user(store, "ALICE", "alice@firm.example")
    await add_user(store, "BOB", "bob@firm.example")
    await notify(store, "300000000901", "ALICE", AT)
    await notify(store, "300000000902", "BOB", AT)
    lease = timedelta(seconds=1)
    dying = Mailer(Outbox(store.pool), smtp.config(), lease=lease, lanes=1, after_send=die_after_sending("ALICE"))

    with pytest.raises(WorkerKilled):
        await queue_and_send(store, dying)
    alice = await row(store, "ALICE")
    assert (alice["sent_at"], alice["attempts"]) == (None, 1) and alice["claimed_at"] is not None
    assert len(smtp.to("alice@firm.example")) == 1

    # Within the lease, nobody touches the claimed row: BOB goes, ALICE waits.
    mailer = Mailer(Outbox(store.pool), smtp.config(), lease=lease)
    soon = await queue_and_send(store, mailer, run_key="run-2")
    assert (soon.sent, soon.pending) == (1, ["ALICE"])
    assert len(smtp.to("alice@firm.example")) == 1

    await asyncio.sleep(lease.total_seconds() + 0.2)
    later = await queue_and_send(store, mailer, run_key="run-2")
    assert (later.sent, later.already_sent, later.pending) == (2, 0, [])
    first, again = smtp.to("alice@firm.example")
    assert first.message_id == again.message_id == message_id_for("ALICE", DAY, DOMAIN)
    assert first.message.as_bytes() == again.message.as_bytes()
    alice = await row(store, "ALICE")
    assert alice["sent_at"] is not None and alice["attempts"] == 2
    assert len(await audits(store, "digest_sent")) == 2  # once each

    await queue_and_send(store, mailer, run_key="run-3")
    assert len(smtp.received) == 3  # ALICE twice (the unavoidable copy), BOB once; nothing more


async def test_a_worker_killed_between_send_and_mark_the_digest_run_retries_and_sends_once_more(
        time_env: WorkflowEnvironment, store: Store, smtp: SmtpServer) -> None:
    """Through Temporal: the activity attempt dies after the send, its retry waits out the claim
    (failing while it is held) and re-sends with the same Message-ID; the run completes."""
    now = await time_env.get_current_time()
    await add_user(store, "ALICE", "alice@firm.example")
    await add_user(store, "BOB", "bob@firm.example")
    await notify(store, "300000001001", "ALICE", now)
    await notify(store, "300000001002", "BOB", now)
    mailer = Mailer(Outbox(store.pool), smtp.config(), lease=timedelta(seconds=1), lanes=1,
                    after_send=die_after_sending("ALICE"))

    async with digest_worker(time_env, store, mailer) as queue:
        result = await run_digest(time_env.client, queue, timeout=30)
        assert (result.queued, result.sent, result.failed) == (2, 2, [])
        again = await run_digest(time_env.client, queue)
        assert (again.sent, again.already_sent) == (0, 2)

    alice = smtp.to("alice@firm.example")
    assert len(alice) == 2 and alice[0].message_id == alice[1].message_id
    assert len(smtp.to("bob@firm.example")) == 1
    assert (await row(store, "ALICE", now.astimezone(UK).date()))["attempts"] == 2


# --- the local sink ----------------------------------------------------------------------------------


async def test_the_local_sink_keeps_each_message_as_a_file(store: Store, tmp_path: Path) -> None:
    await add_user(store, "ALICE", "alice@firm.example")
    await notify(store, "300000001101", "ALICE", AT)
    async with local_sink(tmp_path / "mail") as (host, port):
        config = MailConfig(host=host, port=port, starttls=False, username=None, password=None, timeout=5,
                            mail_from=f"icr@{DOMAIN}", portal_url=PORTAL, sink=tmp_path / "mail")
        result = await queue_and_send(store, Mailer(Outbox(store.pool), config))
    assert result.sent == 1
    [stored] = stored_messages(tmp_path / "mail")
    assert stored.read_bytes().startswith(b"X-Envelope-To: alice@firm.example\r\n")
    assert (await row(store, "ALICE"))["smtp_response"] == f"250 OK stored as {stored.name}"
    [_, line] = outbox_lines(await Outbox(store.pool).rows(day=DAY))
    assert "ALICE" in line and "sent" in line and stored.name in line


def test_the_smtp_password_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"ICR_SMTP_HOST": "smtp.example", "ICR_SMTP_PASSWORD": "s3cret",
                        "ICR_SMTP_STARTTLS": "false"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    config = mail_config(settings)
    assert config.password is not None and config.password.get_secret_value() == "s3cret"
    assert (config.host, config.starttls) == ("smtp.example", False)
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(config)


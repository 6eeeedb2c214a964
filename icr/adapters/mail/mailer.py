"""Sending the daily digest: claim an outbox row, render it, send it by SMTP, mark it.

What is guaranteed (docs/operations.md, 'The daily digest e-mail', says the same):
- At most one digest row per provider user per UK day (the outbox's primary key), and a row
  is marked sent once.
- A row is claimed before it is sent, for a lease (10 minutes); a sender gives up on one
  message after at most twice SEND_DEADLINE (2 minutes to connect, 2 to send), well inside
  its lease, so two live senders never send the same row.
- A row is sent a second time only when the SMTP server accepted it and then the sender
  died, or lost its database, before the row was marked (or the server's "250" answer was
  lost on the way back): SMTP cannot tell us whether a message whose answer we never saw was
  delivered. The row's claim then runs out, and the next attempt sends it again with the
  same Message-ID (and the same content), so a receiving system can drop the copy.
- Permanent failures (a 5xx answer, an address that cannot be used) are recorded on the row
  and never retried; transient ones (server down, a 4xx answer, a timeout, a login or TLS
  problem) are recorded and retried with backoff by the digest run's activity retries.
- A user with no address is recorded on the row, reported by the run and audited once per
  day; the row is sent by a later run on the same day once an address is imported.
- A mailer that is off (`MailConfig.off`: real servers without mail settings) claims nothing:
  it records why on each of the day's unsent rows, which stay pending and are retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

import aiosmtplib
import structlog
from pydantic import SecretStr

from icr.adapters.db.outbox import DigestMail, Outbox, OutboxRow
from icr.domain.models import DigestMailResult, SendDailyDigests
from icr.domain.rules import UK

log = structlog.get_logger(__name__)

LEASE = timedelta(minutes=10)
SEND_DEADLINE = timedelta(minutes=2)
LANES = 4  # messages in flight at once, each lane on its own SMTP connection

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"({_LOCAL})@({_LABEL}(?:\.{_LABEL})+)")
_MESSAGE_ID_SAFE = re.compile(r"[A-Za-z0-9_-]")


def check_address(value: str) -> str:
    """A plain ASCII e-mail address (`name@example.org`), or ValueError saying why not."""
    match = _ADDRESS.fullmatch(value)
    if match is None:
        raise ValueError(f"{value[:100]!r} is not an e-mail address like name@example.org")
    if len(value) > 254 or len(match.group(1)) > 64:
        raise ValueError(f"{value[:100]!r} is too long for an e-mail address")
    return value


def message_id_for(login_id: str, day: date, domain: str) -> str:
    """Stable for (login id, day), and distinct for distinct login ids: a re-sent digest
    carries the same Message-ID, so a receiving system can drop the copy."""
    encoded = "".join(c if _MESSAGE_ID_SAFE.fullmatch(c) else "".join(f"={b:02X}" for b in c.encode())
                      for c in login_id)
    return f"<digest-{encoded}-{day.isoformat()}@{domain}>"


@dataclass(frozen=True)
class MailConfig:
    """Where and how mail is sent. `host` None: nowhere configured (rows wait, retried). `off`:
    why this mailer may not send at all (rows wait with that reason, retried)."""

    host: str | None
    port: int
    starttls: bool
    username: str | None
    password: SecretStr | None
    timeout: float
    mail_from: str
    portal_url: str
    sink: Path | None = None  # set when `host` is this process's local sink
    off: str | None = None

    @property
    def domain(self) -> str:
        return parseaddr(self.mail_from)[1].rpartition("@")[2] or "icr.local"


# --- the message ---------------------------------------------------------------------------


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def render(mail: DigestMail, config: MailConfig) -> EmailMessage:
    """Plain text and HTML: the firm, how many notifications are open, the earliest due date
    and the portal. Only those facts: no case details and no free text from anyone."""
    count = _plural(mail.open_notifications, "notification", "notifications")
    due = (mail.earliest_due.astimezone(UK).strftime("%A %-d %B %Y") if mail.earliest_due
           else "see the provider portal")
    firm = mail.provider_firm_id or "your firm"
    message = EmailMessage()
    message["From"] = config.mail_from
    message["To"] = mail.recipient
    message["Subject"] = f"Inactive case review: {count} waiting for your response"
    # From the digest's business time, like the Message-ID: a re-send is the same message.
    message["Date"] = format_datetime(mail.queued_at)
    message["Message-ID"] = mail.message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    facts = [("Provider firm", firm), ("Open notifications for you", str(mail.open_notifications)),
             ("Earliest due date", due)]
    intro = (f"You have {count} from the Legal Aid Agency's inactive case review waiting "
             "for your response.")
    outro = ("You get at most one of these e-mails a day, on days when you have notifications "
             "open. Please do not reply to this e-mail.")
    message.set_content("\n".join([
        intro, "", *(f"{label}: {value}" for label, value in facts), "",
        "Please respond to each one in the provider portal:", config.portal_url, "", outro, ""]))
    rows = "".join(f"<tr><th align=\"left\">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                   for label, value in facts)
    url = html.escape(config.portal_url, quote=True)
    message.add_alternative(
        f"<!DOCTYPE html><html><body><p>{html.escape(intro)}</p><table>{rows}</table>"
        f"<p>Please respond to each one in the <a href=\"{url}\">provider portal</a>.</p>"
        f"<p><small>{html.escape(outro)}</small></p></body></html>\n", subtype="html")
    # Not the random default: a re-send is byte for byte the same message.
    message.set_boundary("=_digest_" + hashlib.sha256(mail.message_id.encode()).hexdigest()[:32])
    return message


# --- sending -------------------------------------------------------------------------------


class _Transient(Exception):
    """Worth retrying. `connection`: the server itself is not usable (down, refused our login
    or TLS): stop taking rows on this lane."""

    def __init__(self, reason: str, *, connection: bool) -> None:
        super().__init__(reason)
        self.connection = connection


class _Permanent(Exception):
    """This message to this address will never go: record it, never retry."""


def _answer(code: int, message: str) -> str:
    return f"{code} {message}".strip()


def _classify(err: Exception) -> _Transient | _Permanent:
    """By the SMTP reply code: 5xx is permanent for the message, 4xx transient. Problems
    with the server as a whole are transient whatever their code: they are not the row's."""
    if isinstance(err, aiosmtplib.SMTPRecipientsRefused):
        refused = err.recipients[0]
        text = f"recipient refused: {_answer(refused.code, refused.message)}"
        return _Permanent(text) if refused.code >= 500 else _Transient(text, connection=False)
    if isinstance(err, (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPConnectResponseError,
                        aiosmtplib.SMTPHeloError)):
        return _Transient(f"server refused the session: {_answer(err.code, err.message)}", connection=True)
    if isinstance(err, aiosmtplib.SMTPSenderRefused):
        # The sender address is configuration, the same for every row: not the row's fault.
        return _Transient(f"sender refused (check ICR_MAIL_FROM): {_answer(err.code, err.message)}",
                          connection=True)
    if isinstance(err, aiosmtplib.SMTPResponseException):
        text = f"server refused the message: {_answer(err.code, err.message)}"
        return _Permanent(text) if err.code >= 500 else _Transient(text, connection=False)
    if isinstance(err, ValueError):  # aiosmtplib refuses an address it cannot put on the wire
        return _Permanent(f"unusable address: {err}")
    reason = str(err) or type(err).__name__
    if isinstance(err, TimeoutError):
        return _Transient(f"the SMTP server did not answer in time: {reason}", connection=True)
    if isinstance(err, OSError):  # refused, unreachable, disconnected
        return _Transient(f"cannot reach the SMTP server: {reason}", connection=True)
    return _Transient(f"the SMTP session failed: {reason}", connection=True)


class Mailer:
    """Sends the day's queued digests. `after_send` runs between the send and the mark:
    tests use it to die there, as a killed worker would."""

    def __init__(self, outbox: Outbox, config: MailConfig, *, lease: timedelta = LEASE, lanes: int = LANES,
                 after_send: Callable[[DigestMail], Awaitable[None]] | None = None) -> None:
        self.outbox = outbox
        self.config = config
        self.lease = lease
        self.lanes = lanes
        self.after_send = after_send

    async def send_digests(self, step: SendDailyDigests,
                           heartbeat: Callable[[], None] = lambda: None) -> DigestMailResult:
        expired = await self.outbox.expire_before(step.digest_date, self.lease)
        if expired:
            log.warning("digests_expired", before=step.digest_date.isoformat(), count=expired)
        if self.config.off:
            held = await self.outbox.hold_unsent(step.digest_date, self.config.off)
            log.warning("digests_held", digest_date=step.digest_date.isoformat(), count=held,
                        reason="the mailer is off")
            return await self.outbox.summary(step.digest_date, step.run_key)
        logins = iter(await self.outbox.unsent(step.digest_date))
        try:
            # A lane that fails unexpectedly (the database gone, a sender dying) stops the others.
            async with asyncio.TaskGroup() as lanes:
                for _ in range(self.lanes):
                    lanes.create_task(self._lane(logins, step, heartbeat))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from failed  # what went wrong, not "a TaskGroup failed"
        return await self.outbox.summary(step.digest_date, step.run_key)

    async def _lane(self, logins: Iterator[str], step: SendDailyDigests, heartbeat: Callable[[], None]) -> None:
        smtp: aiosmtplib.SMTP | None = None
        try:
            for login_id in logins:  # shared by the lanes: each login is taken by one of them
                claim = await self.outbox.claim(
                    login_id, step.digest_date, run_key=step.run_key, lease=self.lease,
                    message_id=message_id_for(login_id, step.digest_date, self.config.domain), at=step.at)
                heartbeat()
                if claim.mail is None:
                    continue
                mail = claim.mail
                try:
                    check_address(mail.recipient)
                    smtp = smtp or await self._connect()
                    answer = await self._send(smtp, mail)
                except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as err:
                    await _close(smtp)  # a fresh session for the next message
                    smtp = None
                    outcome = _classify(err)
                    if isinstance(outcome, _Permanent):
                        await self.outbox.mark_failed(mail, str(outcome), at=step.at)
                        log.warning("digest_failed", login_id=login_id, reason=str(outcome))
                        continue
                    await self.outbox.release(mail, str(outcome), run_key=step.run_key)
                    log.warning("digest_deferred", login_id=login_id, reason=str(outcome),
                                attempts=mail.attempts)
                    if outcome.connection:
                        return
                    continue
                # Between these two lines the message is out and the row says nothing yet: a
                # sender dying here leaves the claim to run out, and the row is sent again.
                if self.after_send is not None:
                    await self.after_send(mail)
                await self.outbox.mark_sent(mail, answer, run_key=step.run_key, at=step.at)
                log.info("digest_sent", login_id=login_id, message_id=mail.message_id, answer=answer)
        finally:
            await _close(smtp)

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self.config
        if not config.host:
            raise aiosmtplib.SMTPConnectError("no SMTP server configured (ICR_SMTP_HOST)")
        smtp = aiosmtplib.SMTP(
            hostname=config.host, port=config.port, start_tls=config.starttls, username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            timeout=config.timeout)
        await asyncio.wait_for(smtp.connect(), SEND_DEADLINE.total_seconds())
        return smtp

    async def _send(self, smtp: aiosmtplib.SMTP, mail: DigestMail) -> str:
        message = render(mail, self.config)
        _, answer = await asyncio.wait_for(
            smtp.send_message(message, sender=parseaddr(self.config.mail_from)[1], recipients=[mail.recipient]),
            SEND_DEADLINE.total_seconds())
        return f"250 {answer}"  # send_message returns only on the server's 250 to the message


async def _close(smtp: aiosmtplib.SMTP | None) -> None:
    if smtp is None:
        return
    try:
        if smtp.is_connected:
            await asyncio.wait_for(smtp.quit(), 5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        smtp.close()


# --- for ops -------------------------------------------------------------------------------


def outbox_lines(rows: list[OutboxRow]) -> list[str]:
    """`starter.py mail list`: who, which day, what became of it, and the server's answer or
    the reason it was not sent."""
    lines = [f"# {'day':<10}  {'login':<12} {'address':<32} {'status':<10} {'open':>8}  {'attempts':<11} "
             "server's answer, or why not sent"]
    for r in rows:
        outcome = r.smtp_response if r.status == "sent" else (r.last_error or "")
        attempts = _plural(r.attempts, "attempt", "attempts")
        lines.append(f"{r.digest_date.isoformat()}  {r.login_id:<12} {r.recipient or '-':<32} {r.status:<10} "
                     f"{r.open_notifications:>3} open  {attempts:<11} {outcome}".rstrip())
    return lines

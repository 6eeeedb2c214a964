"""Where the daily digest goes, from settings: the configured SMTP server; with embedded servers
(a developer's box, the demo) a local sink under the data directory; otherwise nowhere.

With real servers the mailer fails closed: without ICR_SMTP_HOST, ICR_MAIL_FROM and
ICR_PORTAL_URL it sends nothing, and each digest stays pending with the reason on its outbox
row (`starter.py mail list`), rather than land in a folder inside a container marked sent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import structlog

from icr.adapters.mail.mailer import MailConfig
from icr.adapters.mail.sink import local_sink, sink_folder
from icr.runtime.settings import Settings

log = structlog.get_logger(__name__)

# Only with embedded servers: example addresses for a developer's box and the demo.
LOCAL_MAIL_FROM = "Legal Aid Agency <icr-noreply@icr.local>"
LOCAL_PORTAL_URL = "https://provider-portal.example/inactive-case-review"


def missing_mail_settings(settings: Settings) -> list[str]:
    return [name for name, value in (("ICR_SMTP_HOST", settings.smtp_host), ("ICR_MAIL_FROM", settings.mail_from),
                                     ("ICR_PORTAL_URL", settings.portal_url)) if not value]


def mailer_refusal(settings: Settings) -> str | None:
    """Why the mailer may not send with these settings; None when it may."""
    missing = missing_mail_settings(settings)
    if settings.embedded_allowed or not missing:
        return None
    return (f"the mailer is off: {', '.join(missing)} not set (with real servers digests go only through "
            "the configured SMTP server, from the configured sender, with the configured portal link); "
            "the digests wait until they are set")


def mail_config(settings: Settings) -> MailConfig:
    return MailConfig(host=settings.smtp_host, port=settings.smtp_port, starttls=settings.smtp_starttls,
                      username=settings.smtp_username, password=settings.smtp_password,
                      timeout=settings.smtp_timeout, mail_from=settings.mail_from or LOCAL_MAIL_FROM,
                      portal_url=settings.portal_url or LOCAL_PORTAL_URL, off=mailer_refusal(settings))


@contextlib.asynccontextmanager
async def mail_server(settings: Settings) -> AsyncIterator[MailConfig]:
    """The configured SMTP server; with embedded servers and no ICR_SMTP_HOST, a local sink
    under the data directory; otherwise a mailer that is off (see `mailer_refusal`)."""
    config = mail_config(settings)
    if config.off:
        log.error("mailer_refused", missing=missing_mail_settings(settings),
                  reason="real servers and no complete mail settings: digests stay pending")
        yield config
        return
    if config.host:
        log.info("smtp_server_configured", host=config.host, port=config.port, starttls=config.starttls,
                 username=config.username)
        yield config
        return
    folder = sink_folder(settings.data_dir)
    async with local_sink(folder) as (host, port):
        log.info("smtp_sink_started", address=f"{host}:{port}", folder=str(folder))
        yield replace(config, host=host, port=port, starttls=False, username=None, password=None, sink=folder)

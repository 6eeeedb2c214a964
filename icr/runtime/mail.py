"""Where the daily digest goes, from settings: the configured SMTP server, or on the
embedded default a local sink under the data directory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import structlog

from icr.adapters.mail.mailer import MailConfig
from icr.adapters.mail.sink import local_sink, sink_folder
from icr.runtime.settings import Settings

log = structlog.get_logger(__name__)


def mail_config(settings: Settings) -> MailConfig:
    return MailConfig(host=settings.smtp_host, port=settings.smtp_port, starttls=settings.smtp_starttls,
                      username=settings.smtp_username, password=settings.smtp_password,
                      timeout=settings.smtp_timeout, mail_from=settings.mail_from, portal_url=settings.portal_url)


@contextlib.asynccontextmanager
async def mail_server(settings: Settings) -> AsyncIterator[MailConfig]:
    """The configured SMTP server, or (no ICR_SMTP_HOST) a local sink under the data directory."""
    config = mail_config(settings)
    if config.host:
        log.info("smtp_server_configured", host=config.host, port=config.port, starttls=config.starttls,
                 username=config.username)
        yield config
        return
    folder = sink_folder(settings.data_dir)
    if settings.temporal_address or settings.database_url:
        # Real servers but no mail server: say so loudly; the digests still land somewhere.
        log.warning("smtp_not_configured", reason="ICR_SMTP_HOST is unset: the daily digest goes to a "
                    "local sink, not to provider users", folder=str(folder))
    async with local_sink(folder) as (host, port):
        log.info("smtp_sink_started", address=f"{host}:{port}", folder=str(folder))
        yield replace(config, host=host, port=port, starttls=False, username=None, password=None, sink=folder)

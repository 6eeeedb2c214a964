"""The daily digest's mailing step: send what the digest run queued.

Business time (`at`, the digest date) comes in the input from `workflow.now()`; the outbox's
lease is on the database's clock (see icr/adapters/db/outbox.py).
"""

from __future__ import annotations

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from icr.adapters.mail.mailer import Mailer
from icr.adapters.temporal.metrics import EngineMetrics
from icr.domain.models import DigestMailResult, SendDailyDigests

log = structlog.get_logger(__name__)

DEFERRED = "DigestMailDeferred"


class MailActivities:
    def __init__(self, mailer: Mailer, metrics: EngineMetrics | None = None) -> None:
        self.mailer = mailer
        self.metrics = metrics or EngineMetrics()

    def all(self) -> list:
        return [self.send_daily_digests]

    @activity.defn
    async def send_daily_digests(self, step: SendDailyDigests) -> DigestMailResult:
        """Sends every queued digest of the day that has an address. Fails (to be retried with
        backoff) while some are worth retrying: a server down, a 4xx answer, or a claim held
        by another sender until its lease runs out."""
        result = await self.mailer.send_digests(step, heartbeat=activity.heartbeat)
        # Counted on every pass, also one that ends in a retry (none is in the workflow's result).
        self.metrics.digests_sent.add(result.sent)
        self.metrics.digests_failed.add(len(result.failed))
        self.metrics.digests_deferred.add(len(result.pending))
        log.info("daily_digests_mailed", digest_date=step.digest_date.isoformat(), sent=result.sent,
                 already_sent=result.already_sent, failed=len(result.failed),
                 without_address=len(result.without_address), pending=len(result.pending))
        if result.pending:
            raise ApplicationError(
                f"{len(result.pending)} daily digest(s) of {step.digest_date.isoformat()} not sent yet "
                f"({', '.join(result.pending[:10])}); the reason is on each outbox row "
                "(`starter.py mail list --failed`)", result.model_dump(mode="json"), type=DEFERRED)
        return result

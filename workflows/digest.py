"""`DailyDigestWorkflow`: each morning, one "you have outstanding actions" e-mail per provider
user with open notifications (never one per notification). Run by a Temporal Schedule; a
second run on the same UK day queues nothing more and sends nothing more.

It queues the day's digests in the outbox, then sends them (a regular activity, retried with
backoff while a server is down or a claim has not run out; see icr/adapters/mail/mailer.py for exactly what
is guaranteed)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from icr.domain.models import DailyDigestResult, DigestMailResult, QueueDailyDigests, SendDailyDigests
    from icr.domain.rules import UK

DIGEST_WORKFLOW_ID = "icr-daily-digest"
# Runs whose history predates the mailing step replay without it.
MAIL_PATCH = "send-daily-digest-mail"
# Retried until the middle of the evening: a digest that could not go by then is not sent
# (the next morning's run fails it as superseded), so nobody gets two in one day.
MAIL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                         maximum_interval=timedelta(minutes=5))


@workflow.defn(name="DailyDigestWorkflow")
class DailyDigestWorkflow:
    @workflow.run
    async def run(self) -> DailyDigestResult:
        now = workflow.now()
        day = now.astimezone(UK).date()
        queued: int = await workflow.execute_activity(
            "queue_daily_digests", QueueDailyDigests(digest_date=day, at=now), result_type=int,
            start_to_close_timeout=timedelta(minutes=5))
        if not workflow.patched(MAIL_PATCH):
            return DailyDigestResult(digest_date=day, queued=queued)
        mail = await workflow.execute_activity(
            "send_daily_digests", SendDailyDigests(digest_date=day, at=now, run_key=workflow.info().run_id),
            result_type=DigestMailResult,
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=5),
            schedule_to_close_timeout=timedelta(hours=12), retry_policy=MAIL_RETRY)
        return DailyDigestResult(digest_date=day, queued=queued, sent=mail.sent, already_sent=mail.already_sent,
                                 failed=mail.failed, without_address=mail.without_address)

"""`DailyDigestWorkflow`: each morning, one "you have outstanding actions" e-mail per provider
user with open notifications (never one per notification). Run by a Temporal Schedule; a
second run on the same UK day queues nothing more."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from icr.models import DailyDigestResult, QueueDailyDigests
    from icr.rules import UK

DIGEST_WORKFLOW_ID = "icr-daily-digest"


@workflow.defn(name="DailyDigestWorkflow")
class DailyDigestWorkflow:
    @workflow.run
    async def run(self) -> DailyDigestResult:
        now = workflow.now()
        day = now.astimezone(UK).date()
        queued: int = await workflow.execute_activity(
            "queue_daily_digests", QueueDailyDigests(digest_date=day, at=now), result_type=int,
            start_to_close_timeout=timedelta(minutes=5))
        return DailyDigestResult(digest_date=day, queued=queued)

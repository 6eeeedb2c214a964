"""The certificate workflow's side effects, each an idempotent write keyed by its business step.

Business time arrives in every input (`at`, set from `workflow.now()`): an activity never
reads the clock, so retries and replays write the same values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from icr.adapters.db.store import Store
from icr.adapters.temporal.metrics import EngineMetrics
from icr.domain.models import (
    INVALID_DATA,
    AuditRefusal,
    CertificateSnapshot,
    ClaimExerciseResponse,
    CloseCertificate,
    CloseCertificateResult,
    CloseNotification,
    CloseTask,
    ExtendNotification,
    LoadCaseworkerInput,
    LoadCaseworkerResult,
    LoadCertificateInput,
    LoadUsersInput,
    LoadUsersResult,
    MarkNotificationOverdue,
    QueueDailyDigests,
    RaiseNotification,
    RaiseTask,
    RecordActivityEvents,
    RecordActivityResult,
    RecordResponse,
    UpdateContact,
)

log = structlog.get_logger(__name__)


@contextlib.contextmanager
def _invalid_data_named() -> Iterator[None]:
    """A value the database will never store fails with type `invalid_data`, so that the
    workflow can tell it from an outage: a step carrying a message then gives up on that
    message (refused and audited), while an outage is waited out."""
    try:
        yield
    except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as err:
        # Retryable for the SDK: the workflow's retry policy decides, per step, whether
        # invalid data ends the step (a message's) or is retried (the engine's own).
        raise ApplicationError(f"the database refused the step: {type(err).__name__}: {err}"[:1000],
                               type=INVALID_DATA) from None


class CertificateActivities:
    def __init__(self, store: Store, metrics: EngineMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics or EngineMetrics()

    def all(self) -> list:
        return [
            self.load_certificate, self.load_users, self.load_caseworker, self.record_activity_events,
            self.raise_notification, self.mark_notification_overdue, self.extend_notification,
            self.close_notification,
            self.record_response, self.raise_task, self.close_task, self.claim_exercise_response,
            self.close_certificate, self.update_contact, self.audit_refusal,
            self.queue_daily_digests,
        ]

    @activity.defn
    async def load_certificate(self, request: LoadCertificateInput) -> CertificateSnapshot:
        return await self.store.load_certificate(request.case_reference, request.at)

    @activity.defn
    async def load_caseworker(self, request: LoadCaseworkerInput) -> LoadCaseworkerResult:
        return LoadCaseworkerResult(caseworker=await self.store.load_caseworker(request.caseworker_id))

    @activity.defn
    async def load_users(self, request: LoadUsersInput) -> LoadUsersResult:
        return LoadUsersResult(users=await self.store.load_users(request.login_ids))

    @activity.defn
    async def record_activity_events(self, step: RecordActivityEvents) -> RecordActivityResult:
        with _invalid_data_named():
            result = await self.store.record_activity_events(step)
        # The step's ledger rows (a retried step counts again what its lost attempt wrote).
        self.metrics.events_recorded.add(len(result.events))
        log.info("activity_events_recorded", case_reference=step.case_reference,
                 received=len(step.events), recorded=len(result.events), refused=len(result.refused))
        return result

    @activity.defn
    async def raise_notification(self, step: RaiseNotification) -> None:
        with _invalid_data_named():
            await self.store.raise_notification(step)
        self.metrics.notifications_raised.add(1)
        log.info("notification_raised", case_reference=step.case_reference,
                 notification_id=step.notification_id, cycle=step.cycle)

    @activity.defn
    async def mark_notification_overdue(self, step: MarkNotificationOverdue) -> None:
        with _invalid_data_named():
            await self.store.mark_notification_overdue(step)
        log.info("notification_overdue", case_reference=step.case_reference,
                 notification_id=step.notification_id)

    @activity.defn
    async def extend_notification(self, step: ExtendNotification) -> None:
        await self.store.extend_notification(step)
        log.info("notification_extended", case_reference=step.case_reference,
                 notification_id=step.notification_id, due_date=step.due_date.isoformat(),
                 outages=[e.outage_id for e in step.extensions])

    @activity.defn
    async def close_notification(self, step: CloseNotification) -> None:
        with _invalid_data_named():
            await self.store.close_notification(step)
        log.info("notification_closed", case_reference=step.case_reference,
                 notification_id=step.notification_id, status=step.status.value)

    @activity.defn
    async def record_response(self, step: RecordResponse) -> None:
        with _invalid_data_named():
            await self.store.record_response(step)
        log.info("response_recorded", case_reference=step.case_reference,
                 notification_id=step.notification_id, response=step.response.value)

    @activity.defn
    async def raise_task(self, step: RaiseTask) -> None:
        with _invalid_data_named():
            await self.store.raise_task(step)
        self.metrics.tasks_raised.add(1)
        log.info("task_raised", case_reference=step.case_reference, task_id=step.task_id,
                 kind=step.task_kind.value)

    @activity.defn
    async def close_task(self, step: CloseTask) -> None:
        with _invalid_data_named():
            await self.store.close_task(step)
        log.info("task_closed", case_reference=step.case_reference, task_id=step.task_id,
                 decision=step.decision.value if step.decision else None)

    @activity.defn
    async def claim_exercise_response(self, step: ClaimExerciseResponse) -> None:
        with _invalid_data_named():
            await self.store.claim_exercise_response(step)
        log.info("exercise_response_claimed", case_reference=step.case_reference)

    @activity.defn
    async def close_certificate(self, step: CloseCertificate) -> CloseCertificateResult:
        with _invalid_data_named():
            recouped = await self.store.close_certificate(step)
        if recouped is not None:
            self.metrics.recoupments.add(1)
        # No free text in logs (a reason can name people): the audit log keeps it.
        log.info("certificate_closed", case_reference=step.case_reference, recoup=step.recoup,
                 recouped=recouped)
        return CloseCertificateResult(recouped=recouped)

    @activity.defn
    async def update_contact(self, step: UpdateContact) -> None:
        with _invalid_data_named():
            await self.store.update_contact(step)
        log.info("contact_reassigned", case_reference=step.case_reference)

    @activity.defn
    async def audit_refusal(self, step: AuditRefusal) -> None:
        with _invalid_data_named():
            await self.store.audit_refusal(step)
        self.metrics.refusals.add(1)
        log.info("message_refused", case_reference=step.case_reference, action=step.action)

    @activity.defn
    async def queue_daily_digests(self, step: QueueDailyDigests) -> int:
        queued = await self.store.queue_daily_digests(step)
        log.info("daily_digests_queued", digest_date=step.digest_date.isoformat(), queued=queued)
        return queued

"""The one way in to a certificate's workflow: typed starts, messages, queries and lists.

Everything outside the workflow itself (the import, the CLI, the demo, the tests) reaches
`CertificateWorkflow` through `CertificateClient`, by the SDK's typed method references
(`CertificateWorkflow.respond`, ...) and typed results (`RespondResult`,
`CertificateStatus`). No other module names the workflow, its signals, its updates or its
query by string; only the contract tests do, on purpose, as an outside system would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import structlog
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import HistoryEventFilterType, TaskQueueType, WorkflowExecutionStatus
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeTaskQueueResponse,
    DescribeWorkflowExecutionRequest,
    GetWorkflowExecutionHistoryRequest,
)
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from icr.domain.models import (
    INVALID_START,
    UNDECODABLE_START,
    ActivityEvent,
    CertificateInput,
    CertificateStatus,
    CloseCertificateRequest,
    DecideResult,
    IcrStage,
    LaaDecisionRequest,
    ReassignContactRequest,
    ReassignContactResult,
    RespondRequest,
    RespondResult,
    TaskKind,
)
from icr.domain.rules import static_details, static_summary, workflow_id_for
from workflows.certificate import CertificateWorkflow
from workflows.clock import STALE_CLOCK
from workflows.search_attributes import (
    CASE_REFERENCE,
    ICR_STAGE,
    INACTIVITY_DEADLINE,
    NOTIFICATION_CYCLE,
    OPEN_TASK_KIND,
    PROVIDER_FIRM_ID,
    RESPONSE_DUE_DATE,
)

CertificateHandle = WorkflowHandle[CertificateWorkflow, CertificateStatus]
# Times a `status` query that met a stale run of a worker's cache is asked again.
STALE_QUERY_RETRIES = 3
# A busy or restarting server's "not now" (the SDK itself retries only some of these): one
# "operation was canceled" from a dev server at full load once left a row of a 100,000-row
# import without its review, and the import ended with an error. Calls that are safe to
# repeat ask again, with a growing pause: starts (the id is unique), signals (each of the
# engine's signals is harmless twice: see `_signal`), updates (under one update id, which the
# server answers once) and queries (they change nothing).
TRANSIENT = frozenset({RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE,
                       RPCStatusCode.RESOURCE_EXHAUSTED})
TRANSIENT_RETRIES = 5
TRANSIENT_PAUSE = 0.5  # seconds before the first retry, doubled for each next one

# How a run ends whose start the workflow could not use (an outside caller's broken or forged
# start, see CertificateWorkflow.run): it never held a review, so the certificate's real
# review may still start over it. Every other ended run, above all a review closed by the
# rules, keeps its id: a closed certificate is never reopened.
UNUSABLE_START = frozenset({"invalid_case_reference", "workflow_id_mismatch", UNDECODABLE_START, INVALID_START})

log = structlog.get_logger(__name__)
T = TypeVar("T")


def transient_status(err: BaseException) -> RPCStatusCode | None:
    """The transient status a call failed with, or None when the failure is not transient.
    An update's timed-out or cancelled call reaches us as the SDK's
    WorkflowUpdateRPCTimeoutOrCancelledError, caused by the server's answer; caused by our
    own cancellation (Ctrl-C) instead, it is not transient and is never asked again."""
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        err = err.__cause__  # type: ignore[assignment]
    if isinstance(err, RPCError) and err.status in TRANSIENT:
        return err.status
    return None


async def retry_transient(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`call()`, asked again up to TRANSIENT_RETRIES times while the server answers with a
    transient status; any other error, or the last transient one, is raised."""
    attempt = 0
    while True:
        try:
            return await call()
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            status = transient_status(err)
            if status is None or attempt == TRANSIENT_RETRIES:
                raise
            pause = TRANSIENT_PAUSE * 2 ** attempt
            attempt += 1
            log.warning("server_call_retried", call=what, status=status.name, attempt=attempt, pause_s=pause)
            await asyncio.sleep(pause)


class CertificateNotFound(Exception):
    """No review workflow has ever run for this case reference."""

    def __init__(self, case_reference: str) -> None:
        super().__init__(f"certificate {case_reference} has no review workflow (not imported, "
                         "and no activity recorded)")
        self.case_reference = case_reference


class CertificateClosed(Exception):
    """The certificate's review has ended; nothing reopens it."""

    def __init__(self, case_reference: str) -> None:
        super().__init__(f"certificate {case_reference} is closed")
        self.case_reference = case_reference


class NoWorker(Exception):
    """No worker polls the task queue, so nothing can answer a query or an update."""

    def __init__(self, task_queue: str) -> None:
        super().__init__(f"no worker is polling task queue {task_queue!r}, so nothing can answer; start a "
                         "worker on that task queue (python worker.py, with the same settings) and try again")
        self.task_queue = task_queue


class MessageRefused(Exception):
    """The certificate refused an update; `code` is the rules' stable refusal code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CertificateListing:
    """One certificate as the list filters see it (search attributes, no personal data)."""

    case_reference: str
    stage: str | None
    provider_firm_id: str | None
    inactivity_deadline: datetime | None
    response_due_date: datetime | None
    open_task_kind: str | None = None
    notification_cycle: int | None = None


def list_query(stage: str | None = None, firm: str | None = None, *, running: bool = False) -> str:
    """The visibility query for certificates by stage and firm."""
    clauses = [f"WorkflowType = '{CertificateWorkflow.__name__}'"]
    if running:
        clauses.append("ExecutionStatus = 'Running'")
    if stage:
        clauses.append(f"{ICR_STAGE.name} = '{stage}'")
    if firm:
        clauses.append(f"{PROVIDER_FIRM_ID.name} = '{firm}'")
    return " AND ".join(clauses)


def queue_query(kind: str | None = None, firm: str | None = None) -> str:
    """The list filter of an LAA queue: certificates whose open task is of this kind (any kind
    when None), of one firm or all. The same filter works in the Web UI and the `temporal` CLI."""
    if kind:
        clauses = [f"{OPEN_TASK_KIND.name} = '{kind}'"]
    else:
        clauses = [f"{OPEN_TASK_KIND.name} IN ({', '.join(repr(k.value) for k in TaskKind)})"]
    if firm:
        clauses.append(f"{PROVIDER_FIRM_ID.name} = '{firm}'")
    return " AND ".join(clauses)


def web_ui_link(ui_url: str, namespace: str, query: str) -> str:
    """The Web UI's workflow list with this filter applied."""
    return f"{ui_url.rstrip('/')}/namespaces/{quote(namespace)}/workflows?query={quote(query, safe='')}"


def _not_found(err: RPCError) -> bool:
    return err.status == RPCStatusCode.NOT_FOUND


class CertificateClient:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    def handle(self, case_reference: str) -> CertificateHandle:
        return self.client.get_workflow_handle_for(CertificateWorkflow.run, workflow_id_for(case_reference))

    # --- starting ------------------------------------------------------------------------

    async def start(self, case_reference: str, provider_firm_id: str | None = None) -> bool:
        """Start the certificate's review unless one exists; False when one is running or
        has ended (REJECT_DUPLICATE: a closed certificate is never reopened), except a run
        that ended on a start it could not use (UNUSABLE_START), which never held a review.

        A transient failure is retried; when the failed call had in fact started the review,
        the retry finds it running and this returns False, as for any review already there."""
        async def start(reuse: WorkflowIDReusePolicy) -> None:
            await retry_transient(lambda: self.client.start_workflow(
                CertificateWorkflow.run, CertificateInput(case_reference=case_reference),
                id=workflow_id_for(case_reference), task_queue=self.task_queue,
                static_summary=static_summary(case_reference, provider_firm_id),
                static_details=static_details(case_reference, provider_firm_id),
                id_reuse_policy=reuse, id_conflict_policy=WorkflowIDConflictPolicy.FAIL), f"start {case_reference}")

        try:
            await start(WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            if not await self.ended_on_an_unusable_start(case_reference):
                return False
            try:
                await start(WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
            except WorkflowAlreadyStartedError:  # started meanwhile by another caller
                return False
            log.info("review_started_over_unusable_start", case_reference=case_reference)
        return True

    async def ended_on_an_unusable_start(self, case_reference: str) -> bool:
        """Whether the certificate's latest run failed because its start could not be used."""
        workflow_id = workflow_id_for(case_reference)
        namespace = self.client.namespace
        try:
            described = await retry_transient(lambda: self.client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(namespace=namespace,
                                                 execution=WorkflowExecution(workflow_id=workflow_id))),
                f"describe {case_reference}")
            info = described.workflow_execution_info
            if info.status != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_FAILED:
                return False
            closing = await retry_transient(lambda: self.client.workflow_service.get_workflow_execution_history(
                GetWorkflowExecutionHistoryRequest(
                    namespace=namespace, execution=info.execution,
                    history_event_filter_type=HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)),
                f"history {case_reference}")
        except RPCError as err:
            if _not_found(err):
                return False
            raise
        for event in closing.history.events:
            if event.HasField("workflow_execution_failed_event_attributes"):
                failure = event.workflow_execution_failed_event_attributes.failure
                return failure.application_failure_info.type in UNUSABLE_START
        return False

    async def record_activity(self, case_reference: str, event: ActivityEvent) -> None:
        """What an activity source sends: signal-with-start of `record_activity`. Raises
        CertificateClosed when the certificate's review has ended. A transient failure is
        retried: an event delivered twice is recorded once (the ledger is keyed by event id).
        A run that ended on a start it could not use (UNUSABLE_START) is not a closed review:
        the event starts the real one over it."""
        async def signal_with_start(reuse: WorkflowIDReusePolicy) -> None:
            await retry_transient(lambda: self.client.start_workflow(
                CertificateWorkflow.run, CertificateInput(case_reference=case_reference),
                id=workflow_id_for(case_reference), task_queue=self.task_queue,
                # An activity source knows no firm; a new review here is of an unregistered one.
                static_summary=static_summary(case_reference, None),
                static_details=static_details(case_reference, None),
                start_signal=CertificateWorkflow.record_activity.__name__, start_signal_args=[event],
                # REJECT_DUPLICATE first: a closed certificate stays closed.
                id_reuse_policy=reuse,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING), f"record_activity {case_reference}")

        try:
            await signal_with_start(WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            if not await self.ended_on_an_unusable_start(case_reference):
                raise CertificateClosed(case_reference) from None
            try:
                await signal_with_start(WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
            except WorkflowAlreadyStartedError:
                raise CertificateClosed(case_reference) from None

    # --- signals -------------------------------------------------------------------------

    async def _signal(self, case_reference: str, signal: Any, *args: Any) -> bool:
        """Signal a running certificate; False when none is running. A transient failure is
        retried: every signal the engine sends is harmless twice (the `*_changed` and
        `registration_updated` signals only make the certificate read the registry again; a
        repeated `close_certificate` finds the certificate closed; a repeated `laa_decision`
        names a task that is no longer open, and is refused and audited)."""
        handle = self.handle(case_reference)
        attempts = 0

        async def send() -> None:
            nonlocal attempts
            attempts += 1
            await handle.signal(signal, *args)

        try:
            await retry_transient(send, f"signal {signal.__name__} {case_reference}")
        except RPCError as err:
            if _not_found(err):  # never started, or ended
                # After a failed attempt the server may have taken that one, and the certificate
                # may have ended by it (a close, a decision to close): delivered, as far as can be known.
                return attempts > 1
            raise
        return True

    async def registration_updated(self, case_reference: str) -> bool:
        """Tell a running certificate that its registry entry changed."""
        return await self._signal(case_reference, CertificateWorkflow.registration_updated)

    async def policy_changed(self, case_reference: str) -> bool:
        """Tell a running certificate that a policy version was added; False when none is running."""
        return await self._signal(case_reference, CertificateWorkflow.policy_changed)

    async def outages_changed(self, case_reference: str) -> bool:
        """Tell a running certificate that an outage was declared; False when none is running."""
        return await self._signal(case_reference, CertificateWorkflow.outages_changed)

    async def send_decision(self, case_reference: str, request: LaaDecisionRequest) -> None:
        """A caseworker's decision as the `laa_decision` signal (no answer; a refusal is audited)."""
        if not await self._signal(case_reference, CertificateWorkflow.laa_decision, request):
            raise CertificateNotFound(case_reference)

    async def close(self, case_reference: str, request: CloseCertificateRequest) -> None:
        """Closed elsewhere (discharged): the `close_certificate` signal."""
        if not await self._signal(case_reference, CertificateWorkflow.close_certificate, request):
            raise CertificateNotFound(case_reference)

    # --- updates -------------------------------------------------------------------------

    # A transient failure of an update is retried under the same update id: the server
    # takes an update id once per run, and a retry of one it has taken gets its first answer
    # (not a second response). A caller that retries after its own timeout or crash passes
    # the id it used before (the portal: its Idempotency-Key).

    async def respond(self, case_reference: str, request: RespondRequest, *,
                      update_id: str | None = None) -> RespondResult:
        """The provider's answer; a refusal raises MessageRefused with the rules' code."""
        result: RespondResult = await self._update(case_reference, CertificateWorkflow.respond, request, update_id)
        return result

    async def decide(self, case_reference: str, request: LaaDecisionRequest, *,
                     update_id: str | None = None) -> DecideResult:
        """A caseworker's decision as the `decide` update; a refusal raises MessageRefused."""
        decided: DecideResult = await self._update(case_reference, CertificateWorkflow.decide, request, update_id)
        return decided

    async def reassign(self, case_reference: str, request: ReassignContactRequest, *,
                       update_id: str | None = None) -> ReassignContactResult:
        """A Cross Office user points the certificate at another provider user."""
        result: ReassignContactResult = await self._update(case_reference, CertificateWorkflow.reassign_contact,
                                                           request, update_id)
        return result

    async def _update(self, case_reference: str, update: Any, request: Any, update_id: str | None) -> Any:
        """Run an update under `update_id` (a new one when None), retried under that same id
        after a transient failure; its refusal comes back as MessageRefused, an unknown
        certificate as CertificateNotFound. (`update` is Any: the SDK's stubs read an async
        update's coroutine as its result type.)"""
        handle = self.handle(case_reference)
        update_id = update_id or str(uuid.uuid4())
        try:
            return await retry_transient(lambda: handle.execute_update(update, request, id=update_id),
                                         f"update {update.__name__} {case_reference}")
        except WorkflowUpdateFailedError as err:
            raise _refused(err) from None
        except RPCError as err:
            if _not_found(err):
                raise CertificateNotFound(case_reference) from None
            raise

    # --- reading -------------------------------------------------------------------------

    async def worker_polling(self, within: timedelta = timedelta(seconds=90)) -> bool:
        """Whether a worker has polled the task queue for workflow tasks lately. A live worker
        polls again at least every minute; the server remembers a stopped one for minutes.
        True when the server will not say (then the query itself finds out)."""
        described = await self._describe_task_queue(report_stats=False)
        if described is None:
            return True
        since = datetime.now(UTC) - within
        return any(p.last_access_time.ToDatetime(UTC) >= since for p in described.pollers)

    async def backlog(self) -> int | None:
        """Workflow tasks waiting for a worker on the engine's task queue (the server's
        estimate); None when the server cannot say (the time-skipping test server)."""
        described = await self._describe_task_queue(report_stats=True)
        if described is None or not described.HasField("stats"):
            return None
        return int(described.stats.approximate_backlog_count)

    async def _describe_task_queue(self, *, report_stats: bool) -> DescribeTaskQueueResponse | None:
        """The engine's workflow task queue as the server sees it; None when the server will
        not say (no permission, or not implemented, as on the time-skipping test server)."""
        try:
            return await retry_transient(lambda: self.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(namespace=self.client.namespace, task_queue=TaskQueue(name=self.task_queue),
                                         task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                                         report_stats=report_stats)), "describe_task_queue")
        except RPCError as err:
            if err.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
                return None
            raise

    async def status(self, case_reference: str, rpc_timeout: timedelta | None = None) -> CertificateStatus:
        """The `status` query: the certificate's whole state. Raises NoWorker at once when no
        worker polls (a query would otherwise wait for one until it times out)."""
        # A query that met a stale run of the worker's cache (workflows/clock.py) failed
        # without harm, and the run it met is gone: asking again reads the real one.
        attempt = 0
        while True:
            try:
                return await self._status(case_reference, rpc_timeout)
            except WorkflowQueryFailedError as err:
                if STALE_CLOCK not in str(err) or attempt == STALE_QUERY_RETRIES:
                    raise RuntimeError(f"status of {case_reference} failed: {err}") from None
            attempt += 1
            await asyncio.sleep(0.1)

    async def _status(self, case_reference: str, rpc_timeout: timedelta | None) -> CertificateStatus:
        handle = self.handle(case_reference)

        async def ask() -> CertificateStatus:
            try:
                return await handle.query(CertificateWorkflow.status, rpc_timeout=rpc_timeout)
            except RPCError as err:
                # A query waits for a worker: its timeout is worth asking again only if one polls.
                if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED) \
                        and not await self.worker_polling():
                    raise NoWorker(self.task_queue) from None
                raise

        try:
            return await retry_transient(ask, f"query status {case_reference}")
        except RPCError as err:
            if _not_found(err):
                raise CertificateNotFound(case_reference) from None
            if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED) \
                    or "no poller" in str(err).lower() or "timeout" in str(err).lower():
                raise NoWorker(self.task_queue) from None
            raise

    async def list_certificates(self, stage: str | None = None, firm: str | None = None, *, running: bool = False,
                   limit: int | None = None) -> AsyncIterator[CertificateListing]:
        """Certificates by stage and firm, from Temporal visibility (eventually consistent)."""
        async for listing in self._listings(list_query(stage, firm, running=running), limit):
            yield listing

    async def _listings(self, query: str, limit: int | None) -> AsyncIterator[CertificateListing]:
        async for execution in self.client.list_workflows(query, limit=limit):
            attrs = execution.typed_search_attributes
            yield CertificateListing(
                case_reference=attrs.get(CASE_REFERENCE) or execution.id.removeprefix("certificate-"),
                stage=attrs.get(ICR_STAGE), provider_firm_id=attrs.get(PROVIDER_FIRM_ID),
                inactivity_deadline=attrs.get(INACTIVITY_DEADLINE),
                response_due_date=attrs.get(RESPONSE_DUE_DATE), open_task_kind=attrs.get(OPEN_TASK_KIND),
                notification_cycle=attrs.get(NOTIFICATION_CYCLE))


def _refused(err: WorkflowUpdateFailedError) -> MessageRefused:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return MessageRefused(cause.type or "refused", cause.message)
    return MessageRefused("refused", str(cause or err))


def stages_of(listings: Iterable[CertificateListing]) -> dict[str, list[str]]:
    """Case references grouped by stage, every stage present."""
    found: dict[str, list[str]] = {stage.value: [] for stage in IcrStage}
    for listing in listings:
        if listing.stage in found:
            found[listing.stage].append(listing.case_reference)
    return found

"""The one way in to a certificate's workflow: typed starts, messages, queries and lists.

Everything outside the workflow itself (the import, the CLI, the demo, the tests) reaches
`CertificateWorkflow` through `CertificateClient`, by the SDK's typed method references
(`CertificateWorkflow.respond`, ...) and typed results (`RespondResult`,
`CertificateStatus`). No other module names the workflow, its signals, its updates or its
query by string; only the contract tests do, on purpose, as an outside system would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from icr.models import (
    ActivityEvent,
    CertificateInput,
    CertificateStatus,
    CloseCertificateRequest,
    IcrStage,
    LaaDecisionRequest,
    ReassignContactRequest,
    ReassignContactResult,
    RespondRequest,
    RespondResult,
)
from icr.rules import workflow_id_for
from icr.search_attributes import (
    CASE_REFERENCE,
    ICR_STAGE,
    INACTIVITY_DEADLINE,
    PROVIDER_FIRM_ID,
    RESPONSE_DUE_DATE,
)
from workflows.certificate import CertificateWorkflow

CertificateHandle = WorkflowHandle[CertificateWorkflow, CertificateStatus]


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
    """A query found no worker to answer it."""

    def __init__(self, case_reference: str) -> None:
        super().__init__(f"no worker answered for certificate {case_reference}: is one running "
                         "(`./run worker`, or `./run demo`)?")
        self.case_reference = case_reference


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


def _not_found(err: RPCError) -> bool:
    return err.status == RPCStatusCode.NOT_FOUND


class CertificateClient:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    def handle(self, case_reference: str) -> CertificateHandle:
        return self.client.get_workflow_handle_for(CertificateWorkflow.run, workflow_id_for(case_reference))

    # --- starting ------------------------------------------------------------------------

    async def start(self, case_reference: str) -> bool:
        """Start the certificate's review unless one exists; False when one is running or
        has ended (REJECT_DUPLICATE: a closed certificate is never reopened)."""
        try:
            await self.client.start_workflow(
                CertificateWorkflow.run, CertificateInput(case_reference=case_reference),
                id=workflow_id_for(case_reference), task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
        except WorkflowAlreadyStartedError:
            return False
        return True

    async def record_activity(self, case_reference: str, event: ActivityEvent) -> None:
        """What an activity source sends: signal-with-start of `record_activity`. Raises
        CertificateClosed when the certificate's review has ended."""
        try:
            await self.client.start_workflow(
                CertificateWorkflow.run, CertificateInput(case_reference=case_reference),
                id=workflow_id_for(case_reference), task_queue=self.task_queue,
                start_signal=CertificateWorkflow.record_activity.__name__, start_signal_args=[event],
                # A closed certificate stays closed: never start a second review for it.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        except WorkflowAlreadyStartedError:
            raise CertificateClosed(case_reference) from None

    # --- signals -------------------------------------------------------------------------

    async def _signal(self, case_reference: str, signal: Any, *args: Any) -> bool:
        """Signal a running certificate; False when none is running."""
        try:
            await self.handle(case_reference).signal(signal, *args)
        except RPCError as err:
            if _not_found(err):  # never started, or ended
                return False
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

    async def decide(self, case_reference: str, request: LaaDecisionRequest) -> None:
        """A caseworker's decision, as the `laa_decision` signal."""
        if not await self._signal(case_reference, CertificateWorkflow.laa_decision, request):
            raise CertificateNotFound(case_reference)

    async def close(self, case_reference: str, request: CloseCertificateRequest) -> None:
        """Closed elsewhere (discharged): the `close_certificate` signal."""
        if not await self._signal(case_reference, CertificateWorkflow.close_certificate, request):
            raise CertificateNotFound(case_reference)

    # --- updates -------------------------------------------------------------------------

    async def respond(self, case_reference: str, request: RespondRequest) -> RespondResult:
        """The provider's answer; a refusal raises MessageRefused with the rules' code."""
        result: RespondResult = await self._update(case_reference, CertificateWorkflow.respond, request)
        return result

    async def reassign(self, case_reference: str, request: ReassignContactRequest) -> ReassignContactResult:
        """A Cross Office user points the certificate at another provider user."""
        result: ReassignContactResult = await self._update(case_reference, CertificateWorkflow.reassign_contact,
                                                           request)
        return result

    async def _update(self, case_reference: str, update: Any, request: Any) -> Any:
        """Run an update; its refusal comes back as MessageRefused, an unknown certificate as
        CertificateNotFound. (`update` is Any: the SDK's stubs read an async update's
        coroutine as its result type.)"""
        try:
            return await self.handle(case_reference).execute_update(update, request)
        except WorkflowUpdateFailedError as err:
            raise _refused(err) from None
        except RPCError as err:
            if _not_found(err):
                raise CertificateNotFound(case_reference) from None
            raise

    # --- reading -------------------------------------------------------------------------

    async def status(self, case_reference: str, rpc_timeout: timedelta | None = None) -> CertificateStatus:
        """The `status` query: the certificate's whole state."""
        try:
            return await self.handle(case_reference).query(CertificateWorkflow.status, rpc_timeout=rpc_timeout)
        except RPCError as err:
            if _not_found(err):
                raise CertificateNotFound(case_reference) from None
            if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED) \
                    or "no poller" in str(err).lower() or "timeout" in str(err).lower():
                raise NoWorker(case_reference) from None
            raise
        except WorkflowQueryFailedError as err:
            raise RuntimeError(f"status of {case_reference} failed: {err}") from None

    async def list_certificates(self, stage: str | None = None, firm: str | None = None, *, running: bool = False,
                   limit: int | None = None) -> AsyncIterator[CertificateListing]:
        """Certificates by stage and firm, from Temporal visibility (eventually consistent)."""
        async for execution in self.client.list_workflows(list_query(stage, firm, running=running), limit=limit):
            attrs = execution.typed_search_attributes
            yield CertificateListing(
                case_reference=attrs.get(CASE_REFERENCE) or execution.id.removeprefix("certificate-"),
                stage=attrs.get(ICR_STAGE), provider_firm_id=attrs.get(PROVIDER_FIRM_ID),
                inactivity_deadline=attrs.get(INACTIVITY_DEADLINE),
                response_due_date=attrs.get(RESPONSE_DUE_DATE))


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

"""A server's transient "not now" is asked again (icr/adapters/temporal/client.py `retry_transient`); anything
else, or a transient failure that does not pass, reaches the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from icr.adapters.temporal import client
from icr.adapters.temporal.client import TRANSIENT, TRANSIENT_RETRIES, CertificateClient, retry_transient


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "TRANSIENT_PAUSE", 0.0)


def failing(statuses: list[RPCStatusCode]) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that fails with each status in turn, then answers "done"; and its call count."""
    calls = [0]

    async def call() -> str:
        calls[0] += 1
        if calls[0] <= len(statuses):
            raise RPCError("operation was canceled", statuses[calls[0] - 1], b"")
        return "done"
    return call, calls


@pytest.mark.parametrize("status", sorted(TRANSIENT))
async def test_a_transient_failure_is_asked_again(status: RPCStatusCode) -> None:
    call, calls = failing([status, status])
    assert await retry_transient(call, "test") == "done"
    assert calls[0] == 3


async def test_a_transient_failure_that_lasts_is_raised_after_the_retries() -> None:
    call, calls = failing([RPCStatusCode.CANCELLED] * (TRANSIENT_RETRIES + 1))
    with pytest.raises(RPCError) as caught:
        await retry_transient(call, "test")
    assert caught.value.status == RPCStatusCode.CANCELLED
    assert calls[0] == TRANSIENT_RETRIES + 1


@pytest.mark.parametrize("status", [RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.NOT_FOUND,
                                    RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.ALREADY_EXISTS])
async def test_any_other_failure_is_raised_at_once(status: RPCStatusCode) -> None:
    call, calls = failing([status])
    with pytest.raises(RPCError) as caught:
        await retry_transient(call, "test")
    assert caught.value.status == status
    assert calls[0] == 1


class RunningReview:
    """The server's description of the certificate's review: running."""

    async def describe_workflow_execution(self, request: object) -> DescribeWorkflowExecutionResponse:
        return DescribeWorkflowExecutionResponse(workflow_execution_info=WorkflowExecutionInfo(
            status=WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING))


class FlakyTemporal:
    """Stands in for the Temporal client: its first start fails as a busy server's did, after
    the server had in fact started the workflow; the second finds it running."""

    namespace = "default"
    workflow_service = RunningReview()

    def __init__(self) -> None:
        self.starts = 0

    async def start_workflow(self, *args: object, **kwargs: object) -> None:
        self.starts += 1
        if self.starts == 1:
            raise RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")
        raise WorkflowAlreadyStartedError(str(kwargs["id"]), "CertificateWorkflow")


async def test_an_import_start_that_failed_transiently_is_asked_again() -> None:
    temporal = FlakyTemporal()
    certificates = CertificateClient(temporal, "q")  # type: ignore[arg-type]
    assert await certificates.start("300001416143") is False  # running: the first call had started it
    assert temporal.starts == 2

"""A real Temporal client whose next calls of one kind fail as a busy server's do: before the
server took the call, or after it (the answer lost on the way back). Everything else goes to
the real server unchanged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    SignalWorkflowInput,
    StartWorkflowUpdateInput,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

Kind = Literal["signal", "update", "query"]
T = TypeVar("T")


@dataclass
class Fault:
    status: RPCStatusCode
    after: bool  # the server took the call; only its answer is lost


@dataclass
class Faults(Interceptor):
    planned: dict[str, list[Fault]] = field(default_factory=lambda: {"signal": [], "update": [], "query": []})
    calls: Counter[str] = field(default_factory=Counter)
    update_ids: list[str | None] = field(default_factory=list)  # as each update call sent it

    def fail(self, kind: Kind, status: RPCStatusCode, *, after: bool = False, times: int = 1) -> None:
        self.planned[kind].extend(Fault(status, after) for _ in range(times))

    def client(self, client: Client) -> Client:
        """`client` with these faults in front of it."""
        config = client.config()
        config["interceptors"] = [*config["interceptors"], self]
        return Client(**config)

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Faulty(next, self)

    async def call(self, kind: Kind, call: Callable[[], Awaitable[T]]) -> T:
        self.calls[kind] += 1
        fault = self.planned[kind].pop(0) if self.planned[kind] else None
        if fault is None:
            return await call()
        if fault.after:
            await call()
        error = RPCError(f"injected {fault.status.name}", fault.status, b"")
        if kind == "update" and fault.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise WorkflowUpdateRPCTimeoutOrCancelledError() from error  # as the SDK reports these
        raise error


class _Faulty(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, faults: Faults) -> None:
        super().__init__(next)
        self.faults = faults

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        await self.faults.call("signal", lambda: super(_Faulty, self).signal_workflow(input))

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        return await self.faults.call("query", lambda: super(_Faulty, self).query_workflow(input))

    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> WorkflowUpdateHandle[Any]:
        self.faults.update_ids.append(input.update_id)
        return await self.faults.call("update", lambda: super(_Faulty, self).start_workflow_update(input))

"""A worker that "dies" once between a step and the end of its workflow task.

`CrashAfterStep("record_activity_events")` fails the workflow task right after that step
returned to the workflow, once per workflow: what a SIGKILL of the worker does after the
step's write committed and before the task completed. The server then retries the task,
which replays the history: a local activity (no record in the history yet) runs again, with
a new `workflow.now()`; a regular activity (recorded) is not run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)


class WorkerDied(RuntimeError):
    """Not a Temporal failure: raised in workflow code, it fails the workflow task."""


class CrashAfterStep(Interceptor):
    def __init__(self, step: str) -> None:
        self.step = step
        self.crashed: set[str] = set()  # workflow ids whose task was failed
        self.calls = 0  # times the step returned to a workflow (attempts included)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        crash = self

        class Outbound(WorkflowOutboundInterceptor):
            def start_activity(self, input: StartActivityInput) -> Any:
                return crash.wrap(input.activity, super().start_activity(input))

            def start_local_activity(self, input: StartLocalActivityInput) -> Any:
                return crash.wrap(input.activity, super().start_local_activity(input))

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(Outbound(outbound))

        return Inbound

    def wrap(self, name: str, handle: Awaitable[Any]) -> Awaitable[Any]:
        if name != self.step:
            return handle

        async def then_crash() -> Any:
            result = await handle
            self.calls += 1
            workflow_id = workflow.info().workflow_id
            if workflow_id not in self.crashed:
                self.crashed.add(workflow_id)
                raise WorkerDied(f"the worker died after {name}")
            return result

        return asyncio.ensure_future(then_crash())

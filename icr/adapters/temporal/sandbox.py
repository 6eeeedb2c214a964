"""The sandbox the engine's workflows run in, asked each payload's serialization context once.

The SDK (temporalio 1.35) asks a workflow which serialization context applies to a payload
(the workflow's own, or an activity's) for every payload of every activation and completion,
in each of its passes over them (external storage, codec, references), and for a sandboxed
workflow every question compiles and runs a line of code inside the sandbox: about a fifth of
the worker's Python time per onboarding and per event (profiled; docs/operations.md).

The SDK's answer is the workflow's own context for every payload but those of four kinds of
command (an activity, a child workflow, a signal to another workflow, a Nexus operation), and
for those it depends only on the workflow's pending commands, which change only while workflow
code runs, that is inside `activate`. So `ContextCachingRunner` gives the workflow's own context
at once for the other payloads, and asks the sandbox about those four kinds once per command
between two activations. The engine's codec depends on the answer (lenient for what outside
callers send, strict for activity results), so it must be the SDK's own answer: a test compares
every answer with the sandbox's (tests/workflow/test_sandbox_contexts.py), and
ICR_SANDBOX_CONTEXT_CACHE=false turns this off should an SDK upgrade answer otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.api.enums.v1 import CommandType
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import WorkflowSerializationContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# The commands whose payloads may take another context than the workflow's own (temporalio
# 1.35's `get_serialization_context`).
_OTHER_CONTEXTS = frozenset({
    CommandType.COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK,
    CommandType.COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION,
    CommandType.COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION,
    CommandType.COMMAND_TYPE_SCHEDULE_NEXUS_OPERATION,
})


class _ContextCachingInstance(WorkflowInstance):
    def __init__(self, inner: WorkflowInstance) -> None:
        self._inner = inner
        info = inner.get_info()
        self._own = WorkflowSerializationContext(namespace=info.namespace, workflow_id=info.workflow_id)
        self._contexts: dict[Any, Any] = {}
        self._store_contexts: dict[Any, Any] = {}

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        self._forget()
        try:
            return self._inner.activate(act)
        finally:
            self._forget()  # workflow code ran: pending commands may have changed

    def _forget(self) -> None:
        self._contexts.clear()
        self._store_contexts.clear()

    def get_serialization_context(self, command_info: Any) -> Any:
        if command_info is None or command_info.command_type not in _OTHER_CONTEXTS:
            return self._own
        if command_info not in self._contexts:
            self._contexts[command_info] = self._inner.get_serialization_context(command_info)
        return self._contexts[command_info]

    def get_external_store_context(self, command_info: Any) -> Any:
        if command_info not in self._store_contexts:
            self._store_contexts[command_info] = self._inner.get_external_store_context(command_info)
        return self._store_contexts[command_info]

    def get_info(self) -> Any:
        return self._inner.get_info()

    def get_thread_id(self) -> int | None:
        return self._inner.get_thread_id()


class ContextCachingRunner(WorkflowRunner):
    """`inner`'s workflows, asked a payload's serialization context only where the answer can
    be another than the workflow's own, and then once per command between activations."""

    def __init__(self, inner: WorkflowRunner) -> None:
        self._inner = inner

    def prepare_workflow(self, defn: Any) -> None:
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _ContextCachingInstance(self._inner.create_instance(det))

    def set_worker_level_failure_exception_types(self, types: Sequence[type[BaseException]]) -> None:
        self._inner.set_worker_level_failure_exception_types(types)


def engine_workflow_runner(cache_contexts: bool = True) -> WorkflowRunner:
    """The sandbox the engine's workflows run in, on a worker and in a replayer. The workflow
    modules are passed through: the sandbox would otherwise import them afresh for every
    workflow it creates, and with no sticky cache that is every workflow task (about half the
    worker's CPU per onboarding, measured). Their module state is constants only; determinism
    rests on the rules taking `now` as an argument and on the replay tests."""
    sandboxed = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows"))
    return ContextCachingRunner(sandboxed) if cache_contexts else sandboxed

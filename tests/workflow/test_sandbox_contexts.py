"""The worker asks each workflow's sandbox a payload's serialization context once per command
between activations (icr/adapters/temporal/sandbox.py), and every remembered answer is the one
the sandbox would give at that moment."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from icr.adapters.db.store import Store
from icr.adapters.temporal import sandbox
from icr.runtime import engine as engine_module
from tests.conftest import running_engine
from tests.workflow_helpers import due_certificate, respond, status


class Asked:
    """Every question the worker asked, and every time the sandbox itself was asked."""

    def __init__(self) -> None:
        self.by_worker = 0
        self.of_sandbox = 0
        self.wrong: list[str] = []


class _CountingInstance(WorkflowInstance):
    def __init__(self, inner: WorkflowInstance, asked: Asked) -> None:
        self._inner, self._asked = inner, asked

    def activate(self, act: Any) -> Any:
        return self._inner.activate(act)

    def get_serialization_context(self, command_info: Any) -> Any:
        self._asked.of_sandbox += 1
        return self._inner.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self._inner.get_external_store_context(command_info)

    def get_info(self) -> Any:
        return self._inner.get_info()


class _CheckingInstance(WorkflowInstance):
    """Outermost: compares each remembered answer with a fresh one from the sandbox."""

    def __init__(self, caching: WorkflowInstance, sandboxed: WorkflowInstance, asked: Asked) -> None:
        self._caching, self._sandboxed, self._asked = caching, sandboxed, asked

    def activate(self, act: Any) -> Any:
        return self._caching.activate(act)

    def get_serialization_context(self, command_info: Any) -> Any:
        self._asked.by_worker += 1
        remembered = self._caching.get_serialization_context(command_info)
        fresh = self._sandboxed.get_serialization_context(command_info)
        self._asked.of_sandbox -= 1  # the check's own question does not count
        if remembered != fresh:
            self._asked.wrong.append(f"{command_info}: remembered {remembered}, the sandbox says {fresh}")
        return remembered

    def get_external_store_context(self, command_info: Any) -> Any:
        return self._caching.get_external_store_context(command_info)

    def get_info(self) -> Any:
        return self._caching.get_info()


class _CheckingRunner(WorkflowRunner):
    def __init__(self, asked: Asked) -> None:
        self._inner = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows"))
        self._asked = asked

    def prepare_workflow(self, defn: Any) -> None:
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        counted = _CountingInstance(self._inner.create_instance(det), self._asked)
        caching = sandbox.ContextCachingRunner(_Given(counted)).create_instance(det)
        return _CheckingInstance(caching, counted, self._asked)

    def set_worker_level_failure_exception_types(self, types: Any) -> None:
        self._inner.set_worker_level_failure_exception_types(types)


class _Given(WorkflowRunner):
    """A runner whose one instance is already made."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance

    def prepare_workflow(self, defn: Any) -> None:
        pass

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return self._instance

    def set_worker_level_failure_exception_types(self, types: Any) -> None:
        pass


async def test_each_context_is_asked_once_per_command_and_always_right(
        time_env: WorkflowEnvironment, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = Asked()
    monkeypatch.setattr(engine_module, "workflow_runner", lambda cache_contexts: _CheckingRunner(asked))
    async with running_engine(time_env, store) as engine:
        handle = await due_certificate(engine)
        s = await status(handle)
        assert s.open_notification is not None
        await respond(handle, "case_ongoing")
        assert (await status(handle)).open_notification is None
    assert asked.wrong == []
    # Activity results (strict) and the start, updates and queries (lenient) were all asked about.
    assert asked.by_worker > 0
    assert asked.of_sandbox * 2 <= asked.by_worker, (asked.of_sandbox, asked.by_worker)

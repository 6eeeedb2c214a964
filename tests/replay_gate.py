"""The upgrade gate: a committed history replays against the current code, and every activity
it scheduled and every timer it started is issued again with the same input and duration.

Temporal's replay compares commands by type (and activity type and id), not by what they
carry: a change to how a rule forms an id, a date or an amount replays green, while every
running certificate then holds ids and dates the database does not have. So the replay here
runs through a workflow runner that records each command the workflow issues, and compares
them with the history's ActivityTaskScheduled and TimerStarted events, matched by activity
id and timer id (the SDK's per-run sequence numbers). A command the history does not have
(one issued after the history ends, or started and cancelled within one task, which the
server never sees) is left to Temporal's own check. A local step (a read, or the ledger's
idempotent write) leaves only its result in the history, as a marker the replay adopts: its
input is not recorded, so there is nothing to compare, and nothing it wrote can differ from
what the workflow holds (workflows/certificate.py says which steps are local, and why).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_commands import ScheduleActivity, StartTimer
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

SHOWN_CHARS = 120


@dataclass
class Issued:
    """Every activity scheduled and timer started by one replay, by id."""

    activities: dict[str, ScheduleActivity] = field(default_factory=dict)
    timers: dict[str, StartTimer] = field(default_factory=dict)

    def record(self, completion: WorkflowActivationCompletion) -> None:
        for command in completion.successful.commands:
            if command.HasField("schedule_activity"):
                self.activities[command.schedule_activity.activity_id] = command.schedule_activity
            elif command.HasField("start_timer"):
                self.timers[str(command.start_timer.seq)] = command.start_timer


class _RecordingInstance(WorkflowInstance):
    def __init__(self, inner: WorkflowInstance, issued: Issued) -> None:
        self._inner = inner
        self._issued = issued

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        completion = self._inner.activate(act)
        self._issued.record(completion)
        return completion

    def get_serialization_context(self, command_info: Any) -> Any:
        return self._inner.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self._inner.get_external_store_context(command_info)

    def get_info(self) -> Any:
        return self._inner.get_info()

    def get_thread_id(self) -> int | None:
        return self._inner.get_thread_id()


class RecordingRunner(WorkflowRunner):
    """The sandboxed runner, recording the commands of every activation."""

    def __init__(self, inner: WorkflowRunner | None = None) -> None:
        self._inner = inner or SandboxedWorkflowRunner()
        self.issued = Issued()

    def prepare_workflow(self, defn: Any) -> None:
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _RecordingInstance(self._inner.create_instance(det), self.issued)

    def set_worker_level_failure_exception_types(self, types: Sequence[type[BaseException]]) -> None:
        self._inner.set_worker_level_failure_exception_types(types)


def _values(payloads: Sequence[Payload]) -> list[Any]:
    """Payloads as values: JSON decoded (so that formatting does not count), others as bytes.
    The committed histories are recorded unencrypted (tests/histories/record.py)."""
    values: list[Any] = []
    for payload in payloads:
        encoding = payload.metadata.get("encoding", b"")
        values.append(json.loads(payload.data) if encoding == b"json/plain" else (encoding, payload.data))
    return values


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _differences(recorded: Any, replayed: Any, path: str = "input") -> list[str]:
    """Where two decoded inputs differ, by path (at most a few)."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        found: list[str] = []
        for key in sorted(set(recorded) | set(replayed)):
            found += _differences(recorded.get(key), replayed.get(key), f"{path}.{key}")
        return found
    if isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        found = []
        for n, (a, b) in enumerate(zip(recorded, replayed, strict=True)):
            found += _differences(a, b, f"{path}[{n}]")
        return found
    return [] if recorded == replayed else [f"{path}: recorded {_shown(recorded)}, now {_shown(replayed)}"]


def compare(history: WorkflowHistory, issued: Issued) -> list[str]:
    """Each scheduled activity's input and each timer's duration in `history` that the replay
    issued otherwise, in words; empty when all match."""
    problems: list[str] = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            activity = issued.activities.get(scheduled.activity_id)
            if activity is None:
                problems.append(f"event {event.event_id}: activity {scheduled.activity_type.name} "
                                f"(id {scheduled.activity_id}) was not scheduled again")
                continue
            found = _differences(_values(scheduled.input.payloads), _values(activity.arguments))
            if activity.activity_type != scheduled.activity_type.name:
                found.insert(0, f"type: recorded {scheduled.activity_type.name}, now {activity.activity_type}")
            problems += [f"event {event.event_id}: activity {scheduled.activity_type.name} "
                         f"(id {scheduled.activity_id}) {d}" for d in found[:5]]
        elif event.HasField("timer_started_event_attributes"):
            started = event.timer_started_event_attributes
            timer = issued.timers.get(started.timer_id)
            if timer is None:
                problems.append(f"event {event.event_id}: timer {started.timer_id} was not started again")
                continue
            recorded, now = started.start_to_fire_timeout.ToTimedelta(), timer.start_to_fire_timeout.ToTimedelta()
            if recorded != now:
                problems.append(f"event {event.event_id}: timer {started.timer_id} duration: recorded {recorded}, "
                                f"now {now}")
    return problems


async def replay_failures(history: WorkflowHistory, workflow: type, *, check_inputs: bool = True) -> list[str]:
    """What stops `history` replaying against `workflow` as it is now: Temporal's own replay
    failure, and (with `check_inputs`) each activity input and timer duration that changed."""
    runner = RecordingRunner()
    replayer = Replayer(workflows=[workflow], data_converter=pydantic_data_converter, workflow_runner=runner)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    problems = [] if result.replay_failure is None else [f"replay failed: {result.replay_failure}"]
    return problems + compare(history, runner.issued) if check_inputs else problems

"""The protocol a workflow spent, counted from its history: round trips (workflow tasks,
activity tasks), timers, messages, and how much history it wrote. Pure: it reads history
events (temporalio.api.history.v1.HistoryEvent) and never calls a server, so the benchmark
can fetch the histories and these counts can be unit-tested on hand-made ones.

A rate is noisy on a shared machine; these counts are not: a change that adds a round trip
per event shows here even when the rates hide it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

# The marker the SDK's core records for each local activity (LOCAL_ACTIVITY_MARKER_NAME in
# sdk-core); other markers (patches, side effects) are not local activities.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


@dataclass(frozen=True)
class Protocol:
    """Counts over a stretch of history. `workflow_tasks` are the completed ones: each is a
    round trip of the worker; failed and timed-out ones are counted apart (each was a round
    trip that bought nothing)."""

    workflow_tasks: int = 0
    workflow_tasks_failed: int = 0
    workflow_tasks_timed_out: int = 0
    activity_tasks: int = 0
    local_activities: int = 0
    timers_started: int = 0
    timers_fired: int = 0
    timers_cancelled: int = 0
    signals: int = 0
    updates: int = 0
    history_events: int = 0
    history_bytes: int = 0


_COUNTED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_tasks",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "workflow_tasks_failed",
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "workflow_tasks_timed_out",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity_tasks",
    EventType.EVENT_TYPE_TIMER_STARTED: "timers_started",
    EventType.EVENT_TYPE_TIMER_FIRED: "timers_fired",
    EventType.EVENT_TYPE_TIMER_CANCELED: "timers_cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    # An update the validator rejected leaves no event; an accepted one leaves one of these.
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates",
}


def count(events: Iterable[HistoryEvent]) -> Protocol:
    """The protocol of these events."""
    counts = dict.fromkeys((f.name for f in fields(Protocol)), 0)
    for event in events:
        counts["history_events"] += 1
        counts["history_bytes"] += event.ByteSize()
        name = _COUNTED.get(event.event_type)
        if name is not None:
            counts[name] += 1
        elif (event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
              and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER):
            counts["local_activities"] += 1
    return Protocol(**counts)


def signals_named(events: Iterable[HistoryEvent], name: str) -> int:
    """How many of these events are the signal `name`."""
    return sum(1 for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
               and e.workflow_execution_signaled_event_attributes.signal_name == name)


def continued_as(events: Sequence[HistoryEvent]) -> str | None:
    """The run id this run continued as, if its history ends by continuing as new."""
    if events and events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        return events[-1].workflow_execution_continued_as_new_event_attributes.new_execution_run_id or None
    return None


def per_item(protocols: Sequence[Protocol], items: int) -> dict[str, float]:
    """The protocols summed and divided by the items they served (certificates onboarded,
    events applied): the cost of one item, on average over the sample."""
    if items <= 0:
        raise ValueError(f"per_item needs at least one item, got {items}")
    totals = dict.fromkeys((f.name for f in fields(Protocol)), 0)
    for p in protocols:
        for name, value in asdict(p).items():
            totals[name] += value
    return {name: round(value / items, 2) for name, value in totals.items()}

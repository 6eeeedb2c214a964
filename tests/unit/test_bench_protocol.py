"""The benchmark's protocol counts (benchmarks/protocol.py), on small hand-made histories."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from benchmarks.protocol import Protocol, continued_as, count, per_item, signals_named

T = EventType


def event(kind: int, **attributes: Any) -> HistoryEvent:
    """One event of this type; `attributes` names its one attributes field and its value."""
    e = HistoryEvent(event_type=kind)  # type: ignore[arg-type]
    for name, value in attributes.items():
        getattr(e, name).CopyFrom(value)
    return e


def workflow_task(outcome: int = T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) -> list[HistoryEvent]:
    return [event(T.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED), event(T.EVENT_TYPE_WORKFLOW_TASK_STARTED), event(outcome)]


def marker(name: str) -> HistoryEvent:
    e = HistoryEvent(event_type=T.EVENT_TYPE_MARKER_RECORDED)
    e.marker_recorded_event_attributes.marker_name = name
    return e


def signal(name: str, payload: bytes = b"") -> HistoryEvent:
    e = HistoryEvent(event_type=T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    e.workflow_execution_signaled_event_attributes.signal_name = name
    if payload:
        e.workflow_execution_signaled_event_attributes.input.CopyFrom(Payloads(payloads=[Payload(data=payload)]))
    return e


def onboarding() -> list[HistoryEvent]:
    """A start, a task that ran two local activities (and recorded a patch marker, which is not
    one), wrote a search attribute, scheduled an activity and started a timer."""
    return [event(T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED), *workflow_task(),
            marker("core_local_activity"), marker("core_local_activity"), marker("core_patch"),
            event(T.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES), event(T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
            event(T.EVENT_TYPE_ACTIVITY_TASK_STARTED), event(T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
            *workflow_task(), event(T.EVENT_TYPE_TIMER_STARTED)]


def one_event() -> list[HistoryEvent]:
    """A signal whose first task failed and second timed out before the third completed; the
    timer restarted; two updates accepted, one of them completed so far; a second timer ran out."""
    return [signal("record_activity", b"{}"), *workflow_task(T.EVENT_TYPE_WORKFLOW_TASK_FAILED),
            *workflow_task(T.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT), *workflow_task(),
            event(T.EVENT_TYPE_TIMER_CANCELED), event(T.EVENT_TYPE_TIMER_STARTED),
            event(T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
            event(T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED),
            event(T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
            event(T.EVENT_TYPE_TIMER_FIRED), *workflow_task()]


def test_an_onboarding_is_counted_by_kind() -> None:
    history = onboarding()
    assert count(history) == Protocol(
        workflow_tasks=2, activity_tasks=1, local_activities=2, timers_started=1,
        history_events=15, history_bytes=sum(e.ByteSize() for e in history))


def test_failed_and_timed_out_tasks_are_counted_apart_from_completed_ones() -> None:
    history = one_event()
    assert count(history) == Protocol(
        workflow_tasks=2, workflow_tasks_failed=1, workflow_tasks_timed_out=1,
        timers_started=1, timers_fired=1, timers_cancelled=1, signals=1, updates=2,
        history_events=19, history_bytes=sum(e.ByteSize() for e in history))


def test_history_bytes_are_the_serialized_events() -> None:
    small, large = signal("record_activity", b"x"), signal("record_activity", b"x" * 1000)
    assert count([small]).history_bytes == len(small.SerializeToString())
    assert count([large]).history_bytes == len(large.SerializeToString())
    assert count([small, large]).history_bytes == count([small]).history_bytes + count([large]).history_bytes
    assert count([large]).history_bytes > count([small]).history_bytes + 999
    assert count([]) == Protocol()


def test_signals_are_told_apart_by_name() -> None:
    history = [*one_event(), signal("close_certificate"), signal("record_activity")]
    assert signals_named(history, "record_activity") == 2
    assert signals_named(history, "close_certificate") == 1
    assert signals_named(onboarding(), "record_activity") == 0


def test_a_run_that_continued_as_new_names_the_next_run() -> None:
    ended = event(T.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)
    ended.workflow_execution_continued_as_new_event_attributes.new_execution_run_id = "run-2"
    assert continued_as([*onboarding(), ended]) == "run-2"
    assert continued_as(onboarding()) is None
    assert continued_as([]) is None


def test_per_item_divides_the_sample_by_the_items_it_served() -> None:
    a, b = count(onboarding()), count(one_event())
    got = per_item([a, b], 4)
    assert got["workflow_tasks"] == 1.0  # (2 + 2) / 4
    assert got["local_activities"] == 0.5
    assert got["workflow_tasks_failed"] == 0.25
    assert got["history_events"] == 8.5  # (15 + 19) / 4
    assert got["history_bytes"] == round((a.history_bytes + b.history_bytes) / 4, 2)
    with pytest.raises(ValueError, match="at least one item"):
        per_item([a], 0)

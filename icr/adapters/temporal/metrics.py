"""The engine's own counters, exported beside the SDK's metrics on the worker's Prometheus
endpoint (both go through the Temporal runtime's meter, so one port serves them all).

Counted where the side effect is written. A step repeated after a crash (an activity retried
after its worker died before reporting) writes nothing the second time but may count again:
these are operational rates, not the record; the database is the record.
"""

from __future__ import annotations

from temporalio.common import MetricCounter, MetricMeter


class EngineMetrics:
    def __init__(self, meter: MetricMeter | None = None) -> None:
        meter = meter or MetricMeter.noop
        self.events_recorded: MetricCounter = meter.create_counter(
            "icr_events_recorded", "activity events recorded (new ones; duplicates are not counted)")
        self.notifications_raised: MetricCounter = meter.create_counter(
            "icr_notifications_raised", "inactivity notifications raised")
        self.tasks_raised: MetricCounter = meter.create_counter(
            "icr_tasks_raised", "LAA tasks raised")
        self.recoupments: MetricCounter = meter.create_counter(
            "icr_recoupments", "payments on account recouped at closing")
        self.refusals: MetricCounter = meter.create_counter(
            "icr_refusals", "messages refused by the rules (audited)")

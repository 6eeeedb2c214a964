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
        # The daily digest's mailing passes: e-mails sent by a pass; and, as each pass finds the
        # day's outbox, those failed for good (a 5xx answer, an unusable address) and those left
        # for a retry (server down, a 4xx answer, a claim held). A message that stays failed or
        # waiting counts again at every pass: alert on any increase, don't sum them as messages.
        self.digests_sent: MetricCounter = meter.create_counter(
            "icr_digests_sent", "daily digest e-mails sent")
        self.digests_failed: MetricCounter = meter.create_counter(
            "icr_digests_failed", "the day's digests failed for good, as each mailing pass finds them")
        self.digests_deferred: MetricCounter = meter.create_counter(
            "icr_digests_deferred", "the day's digests waiting for a retry, as each mailing pass finds them")

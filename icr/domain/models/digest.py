"""The daily digest's inputs and results."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from icr.domain.models.base import Model


class QueueDailyDigests(Model):
    """Queue today's "outstanding actions" e-mails: one per provider user."""

    digest_date: date
    at: datetime


class DailyDigestResult(Model):
    digest_date: date
    queued: int
    # The day's outbox after this run's mailing (absent from runs before the mailer existed).
    sent: int = 0  # by this run
    already_sent: int = 0  # by an earlier run of the same day
    failed: list[str] = Field(default_factory=list)  # login ids whose digest failed for good
    without_address: list[str] = Field(default_factory=list)  # login ids with no e-mail address


class SendDailyDigests(Model):
    """Send the day's queued digests from the outbox."""

    digest_date: date
    at: datetime
    # The digest run (its workflow run id): what this run sent is told apart from earlier runs'.
    run_key: str


class DigestMailResult(Model):
    """The day's outbox after one mailing pass."""

    sent: int = 0  # by this run
    already_sent: int = 0  # by earlier runs
    failed: list[str] = Field(default_factory=list)
    without_address: list[str] = Field(default_factory=list)
    # Not sent yet but worth retrying: a server that was down, a 4xx answer, a claim still
    # held by another (perhaps crashed) sender until its lease ends.
    pending: list[str] = Field(default_factory=list)

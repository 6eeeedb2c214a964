"""What the provider portal reads: notifications as the engine's database holds them, the
filters of a firm's list, and a user's counts (shaped like the LAA's notifications API)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from icr.domain.models.base import Model


class NotificationSort(StrEnum):
    """The fields a list may be sorted by (the API's `sort=FIELD,asc|desc`)."""

    ASSIGN_DATE = "assign_date"
    DUE_DATE = "due_date"
    CASE_REFERENCE_NUMBER = "case_reference_number"


class NotificationQuery(Model):
    """One page of a firm's notifications, filtered as the API's query parameters say."""

    provider_firm_id: str
    case_reference: str | None = None
    assigned_to: str | None = None
    include_closed: bool = True
    # On the assign date, UK calendar days, both ends included.
    date_from: date | None = None
    date_to: date | None = None
    sort: NotificationSort = NotificationSort.ASSIGN_DATE
    descending: bool = True
    page: int = 0
    size: int = 20


class NotificationRow(Model):
    """One notification as the `notifications` table holds it."""

    notification_id: str
    case_reference: str
    provider_firm_id: str | None
    assigned_to: str | None
    subject: str
    cycle: int
    date_assigned: datetime
    due_date: datetime
    return_date: datetime
    status: str  # the engine's NotificationStatus value
    is_open: bool
    letter: str
    response: str | None = None
    message: str | None = None
    responded_by: str | None = None
    responded_at: datetime | None = None
    closed_at: datetime | None = None


class NotificationPage(Model):
    rows: list[NotificationRow]
    total: int


class NotificationCounts(Model):
    """A user's open notifications: all, those not yet overdue, and the overdue ones."""

    open: int
    standard: int
    overdue: int

"""A notification row as the API and the pages show it, for one signed-in user at one moment."""

from __future__ import annotations

from datetime import datetime

from icr.domain import rules
from icr.domain.models import RESPONSE_LABELS, NotificationRow, NotificationStatus, Response, User
from icr.portal.schema import (
    Note,
    NotificationDetail,
    NotificationInfo,
    NotificationStatusValue,
    UserRef,
)

_CLOSED_STATUS: dict[str, NotificationStatusValue] = {
    NotificationStatus.RESPONDED.value: "responded",
    NotificationStatus.ACTIVITY_RECORDED.value: "activity_recorded",
    NotificationStatus.NO_RESPONSE.value: "no_response",
}


def is_overdue(row: NotificationRow, now: datetime) -> bool:
    """Open and past its due date (the engine marks it at that moment; this does not wait for it)."""
    return row.is_open and (row.status == NotificationStatus.OVERDUE.value or now >= row.due_date)


def status_of(row: NotificationRow, now: datetime) -> NotificationStatusValue:
    if row.is_open:
        return "overdue" if is_overdue(row, now) else "open"
    return _CLOSED_STATUS.get(row.status, "closed")


def uk(at: datetime) -> datetime:
    return at.astimezone(rules.UK)


def uk_date(at: datetime) -> str:
    """A date as GOV.UK writes one: 3 December 2026 (UK time)."""
    return uk(at).strftime("%-d %B %Y")


def info(row: NotificationRow, now: datetime) -> NotificationInfo:
    return NotificationInfo(
        notification_id=row.notification_id, case_reference_number=row.case_reference,
        provider_firm_id=row.provider_firm_id, user=UserRef(login_id=row.assigned_to), subject=row.subject,
        assign_date=uk(row.date_assigned).date(), due_date=uk(row.due_date).date(),
        return_date=uk(row.return_date).date(), due_at=row.due_date, status=status_of(row, now),
        notification_open_indicator=row.is_open)


def available(row: NotificationRow, user: User, now: datetime) -> list[Response]:
    """What `user` may answer now: the engine's own rules (icr.domain.rules.available_responses)."""
    return rules.available_responses(row.provider_firm_id, row.assigned_to, row.is_open, row.return_date, user, now)


def why_not(row: NotificationRow, user: User, now: datetime) -> str | None:
    """Why `user` cannot answer this notification now, in the rules' words; None when they can."""
    if not row.is_open:
        return "This notification is closed."
    if now >= row.return_date:
        return "This notification was returned to the LAA with no response; it can no longer be answered."
    try:
        rules.authorize_responder(row.provider_firm_id, row.assigned_to, user, user.login_id)
    except rules.Refused as refused:
        return refused.message
    return None


def detail(row: NotificationRow, user: User, now: datetime) -> NotificationDetail:
    notes = []
    if row.responded_at is not None and row.message:
        notes.append(Note(user=UserRef(login_id=row.responded_by), date=row.responded_at, message=row.message))
    return NotificationDetail(**info(row, now).model_dump(), message=row.letter, notes=notes,
                              response=row.response, available_responses=[r.value for r in available(row, user, now)])


def label(response: str | None) -> str:
    try:
        return RESPONSE_LABELS[Response(response or "")]
    except ValueError:
        return response or ""

"""The JSON the provider API answers with, shaped like the LAA's notifications API
(`laa-ccms-data-api`): snake_case fields, kebab-case query parameters, a page as
`{content, number, size, total_elements, total_pages}`. The OpenAPI document is built from
these models (icr/portal/openapi.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

NotificationStatusValue = Literal["open", "overdue", "responded", "activity_recorded", "no_response", "closed"]


class UserRef(BaseModel):
    login_id: str | None = Field(description="the CCMS login id the notification is assigned to")


class NotificationInfo(BaseModel):
    notification_id: str
    case_reference_number: str
    provider_firm_id: str | None
    user: UserRef
    subject: str
    notification_type: Literal["ICR"] = "ICR"
    assign_date: date = Field(description="UK date the notification was raised")
    due_date: date = Field(description="UK date the response is due; overdue after it")
    return_date: date = Field(description="UK date it returns to the LAA if still unanswered")
    due_at: datetime = Field(description="the exact moment the response falls due")
    status: NotificationStatusValue
    notification_open_indicator: bool
    evidence_allowed: bool = False


class Note(BaseModel):
    user: UserRef
    date: datetime
    message: str


class NotificationDetail(NotificationInfo):
    message: str = Field(description="the letter sent with the notification")
    notes: list[Note] = Field(description="the provider's response message, once answered")
    response: str | None = Field(description="the response given, once answered")
    available_responses: list[str] = Field(
        description="the responses the signed-in user may give now (none when they may not respond)")


class NotificationEnvelope(BaseModel):
    notification: NotificationDetail


class NotificationsPage(BaseModel):
    content: list[NotificationInfo]
    number: int = Field(description="this page's number, from 0")
    size: int
    total_elements: int
    total_pages: int


class NotificationSummary(BaseModel):
    notifications: int = Field(description="open notifications assigned to the user")
    standard_actions: int = Field(description="of those, the ones not yet overdue")
    overdue_actions: int = Field(description="of those, the overdue ones")


class ResponseBody(BaseModel):
    response: str = Field(description="case_ongoing, complete_to_be_billed, complete_costs_negotiated, "
                                      "complete_court_assessment or complete_no_bill_due")
    message: str | None = Field(default=None, description="at most 2,000 characters")


class ResponseAnswer(BaseModel):
    notification_id: str
    response: str
    outcome: str
    stage: str


class Problem(BaseModel):
    code: str = Field(description="a stable code: the engine's refusal code, or the API's own")
    message: str

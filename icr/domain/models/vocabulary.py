"""The engine's vocabulary: stages, kinds, responses, roles, and the actors it writes as."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class IcrStage(StrEnum):
    ACTIVE = "Active"
    AWAITING_RESPONSE = "AwaitingResponse"
    OVERDUE = "Overdue"
    LAA_REVIEW = "LaaReview"
    ESCALATED = "Escalated"
    CLOSED = "Closed"


class ActivityKind(StrEnum):
    APPLICATION = "application"
    AMENDMENT = "amendment"
    CASE_OUTCOME = "case_outcome"
    BILL = "bill"
    PRIOR_AUTHORITY = "prior_authority"
    COUNSEL_ALLOCATION = "counsel_allocation"
    PROVIDER_TRANSFER = "provider_transfer"
    CASE_PLAN = "case_plan"
    ICR_ONGOING_RESPONSE = "icr_ongoing_response"


class Response(StrEnum):
    CASE_ONGOING = "case_ongoing"
    COMPLETE_TO_BE_BILLED = "complete_to_be_billed"
    COMPLETE_COSTS_NEGOTIATED = "complete_costs_negotiated"
    COMPLETE_COURT_ASSESSMENT = "complete_court_assessment"
    COMPLETE_NO_BILL_DUE = "complete_no_bill_due"


RESPONSE_LABELS: dict[Response, str] = {
    Response.CASE_ONGOING: "Case Ongoing",
    Response.COMPLETE_TO_BE_BILLED: "Case Complete to be Billed",
    Response.COMPLETE_COSTS_NEGOTIATED: "Case Complete Costs Negotiated",
    Response.COMPLETE_COURT_ASSESSMENT: "Case Complete Court Assessment",
    Response.COMPLETE_NO_BILL_DUE: "Case Complete No Bill Due",
}


class Decision(StrEnum):
    CLOSE = "close"
    KEEP_OPEN = "keep_open"


class TaskKind(StrEnum):
    REVIEW = "review"
    NO_RESPONSE = "no_response"
    ESCALATION = "escalation"
    FOLLOW_UP = "follow_up"
    REGISTRATION_MISSING = "registration_missing"


class Role(StrEnum):
    CASE_MANAGEMENT = "case_management"
    CASE_MANAGEMENT_SUPERVISOR = "case_management_supervisor"
    BILL_PREPARATION = "bill_preparation"
    BILL_SUPERVISOR = "bill_supervisor"
    OFFICE_MANAGER = "office_manager"
    CROSS_OFFICE = "cross_office"


class NotificationStatus(StrEnum):
    OPEN = "Open"
    OVERDUE = "Overdue"
    RESPONDED = "Responded"
    NO_RESPONSE = "No Response"
    ACTIVITY_RECORDED = "Activity Recorded"
    WITHDRAWN = "Withdrawn"
    CERTIFICATE_CLOSED = "Certificate Closed"


EXERCISE_ACTOR = "LAA (exercise)"
ENGINE_ACTOR = "engine"
# The activities' error type for a value the database refuses (never fixed by retrying).
INVALID_DATA = "invalid_data"
# The refusals of what a worker could not decode or use (see icr/adapters/temporal/codec.py):
# an update's payload, a start's input, a start with more than its one input.
UNDECODABLE_MESSAGE = "undecodable_message"
UNDECODABLE_START = "undecodable_start"
INVALID_START = "invalid_start"



def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"

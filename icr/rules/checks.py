"""Input checks and authorisation: what the rules refuse before anything changes.

Each check raises `Refused` with a stable code and a message for people, or returns the
validated value. They read the state but never change it.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from icr.models import (
    ActivityEvent,
    ActivityKind,
    CertificateState,
    CloseCertificateRequest,
    Decision,
    IcrStage,
    LaaDecisionRequest,
    ReassignContactRequest,
    RespondRequest,
    Response,
    Role,
    User,
)

CASE_REFERENCE = re.compile(r"3000[0-9]{8}")
FUTURE_TOLERANCE = timedelta(minutes=5)
MESSAGE_MAX_CHARS = 2000
EVENT_ID_MAX_CHARS = 200
# Bounds on everything a message carries into PostgreSQL or a payload: PostgreSQL text
# refuses NUL, a lone surrogate cannot be encoded, and asyncpg cannot store a year-1 time with
# an offset; a step that fails on such a value would fail for ever.
LOGIN_MAX_CHARS = 100
SOURCE_MAX_CHARS = 100
REASON_MAX_CHARS = 2000
EARLIEST_YEAR = 1900
LATEST_YEAR = 2200
RESPONDING_ROLES = frozenset({Role.CASE_MANAGEMENT, Role.CASE_MANAGEMENT_SUPERVISOR})


class Refused(Exception):
    """A message the rules refuse; `code` is stable for callers, the text is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bad_character(value: str, multiline: bool) -> str | None:
    """The first character that must not be stored: a control character (line breaks and
    tabs allowed in free text) or a lone surrogate."""
    for char in value:
        if multiline and char in "\n\r\t":
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            return char
    return None


def shown(value: object, max_chars: int = 50) -> str:
    """A value quoted in a refusal: control characters escaped, long text cut."""
    text = value if isinstance(value, str) else str(value)
    cut = text[:max_chars]
    return repr(cut) + ("..." if len(text) > max_chars else "")


def printable(value: str, max_chars: int) -> str:
    """Text safe to record however bad the input: control characters and lone surrogates
    escaped, cut to `max_chars`."""
    out = "".join(char if _bad_character(char, multiline=False) is None
                  else char.encode("unicode_escape", "backslashreplace").decode("ascii")
                  for char in value[:max_chars])
    return out[:max_chars]


def check_text(field: str, value: str | None, max_chars: int, *, required: bool = False,
               multiline: bool = False, code: str | None = None) -> None:
    """Text that PostgreSQL can store and a person can read: no control characters (line
    breaks and tabs allowed in free text), at most `max_chars` characters."""
    if value is None or not value.strip():
        if required:
            raise Refused(code or f"missing_{field}", f"{field} is required")
        return
    if len(value) > max_chars:
        raise Refused(code or f"{field}_too_long",
                      f"{field} is {len(value)} characters; at most {max_chars} are allowed")
    bad = _bad_character(value, multiline)
    if bad is not None:
        raise Refused(code or f"invalid_{field}",
                      f"{field} contains the control character {bad!r}; only printable text is accepted")


def check_time(field: str, value: datetime | None) -> None:
    """A time PostgreSQL can store and the engine can trust: with a timezone, 1900 to 2200."""
    if value is None:
        raise Refused("missing_time", f"{field} is required (ISO 8601 with a timezone)")
    if value.tzinfo is None or value.utcoffset() is None:
        raise Refused("naive_time", f"{field} must carry a timezone, e.g. 2026-05-17T09:30:00+01:00")
    # The local year: converting year 1 with an offset to UTC would itself overflow.
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise Refused("time_out_of_range",
                      f"{field} {value.isoformat()} is outside the years {EARLIEST_YEAR} to {LATEST_YEAR}")


def _bounded(value: str | None, max_chars: int) -> str | None:
    # One character over the limit is kept, so the check still refuses it as too long.
    return None if value is None else value[:max_chars + 1]


def bound_event(event: ActivityEvent) -> ActivityEvent:
    """What a pending event keeps, whatever its size: a megabyte of text waits in the
    workflow's memory and its continue-as-new input as no more than the limit plus one."""
    return event.model_copy(update={
        "event_id": _bounded(event.event_id, EVENT_ID_MAX_CHARS),
        "kind": _bounded(event.kind, 100),
        "source": _bounded(event.source, SOURCE_MAX_CHARS)})


def bound_decision(request: LaaDecisionRequest) -> LaaDecisionRequest:
    """As `bound_event`, for a pending decision."""
    return request.model_copy(update={
        "caseworker": _bounded(request.caseworker, LOGIN_MAX_CHARS),
        "decision": _bounded(request.decision, 100),
        "reason": _bounded(request.reason, REASON_MAX_CHARS)})


def bound_close(request: CloseCertificateRequest) -> CloseCertificateRequest:
    """As `bound_event`, for a pending close."""
    return request.model_copy(update={"reason": _bounded(request.reason, REASON_MAX_CHARS)})


def check_case_reference(value: object) -> str:
    """A certificate is named by its LAA case reference: 12 digits starting 3000."""
    if not isinstance(value, str) or not CASE_REFERENCE.fullmatch(value):
        raise Refused(
            "invalid_case_reference",
            f"case reference {shown(value)} is not valid: it must be 12 digits starting 3000, "
            "e.g. 300001416143",
        )
    return value


def workflow_id_for(case_reference: str) -> str:
    """Each certificate has exactly one review, named after its case reference."""
    return f"certificate-{case_reference}"


def check_event(event: ActivityEvent, now: datetime) -> None:
    """Only qualifying activity with an id and a trustworthy time (not in the future) counts."""
    if not event.event_id.strip() or len(event.event_id) > EVENT_ID_MAX_CHARS:
        raise Refused(
            "invalid_event_id",
            f"event_id must be 1 to {EVENT_ID_MAX_CHARS} characters",
        )
    check_text("event_id", event.event_id, EVENT_ID_MAX_CHARS, code="invalid_event_id")
    accepted = [k.value for k in ActivityKind]
    if event.kind not in accepted:
        raise Refused(
            "unknown_activity_kind",
            f"{shown(event.kind)} is not qualifying activity; accepted kinds: {', '.join(accepted)}",
        )
    check_text("source", event.source, SOURCE_MAX_CHARS, code="invalid_source")
    check_time("occurred_at", event.occurred_at)
    assert event.occurred_at is not None  # checked just above
    if event.occurred_at > now + FUTURE_TOLERANCE:
        raise Refused(
            "future_event",
            f"occurred_at {event.occurred_at.isoformat()} is more than 5 minutes in the future",
        )


def check_close(request: CloseCertificateRequest) -> None:
    """A close names a readable reason and a storable time."""
    check_text("reason", request.reason, REASON_MAX_CHARS, required=True, multiline=True)
    check_time("occurred_at", request.occurred_at)


def check_response(state: CertificateState, request: RespondRequest) -> Response:
    """A response names a user and one of the five responses, and answers an open notification."""
    # Only what can be refused without the user directory: this runs in the update validator.
    if not request.user_login_id.strip():
        raise Refused("missing_user", "user_login_id is required")
    check_text("user_login_id", request.user_login_id, LOGIN_MAX_CHARS, code="invalid_user")
    values = [r.value for r in Response]
    if not request.response:
        raise Refused("missing_response", f"response is required; use one of: {', '.join(values)}")
    if request.response not in values:
        raise Refused(
            "unknown_response",
            f"{shown(request.response)} is not a response; use one of: {', '.join(values)}",
        )
    if request.message is not None and len(request.message) > MESSAGE_MAX_CHARS:
        raise Refused(
            "message_too_long",
            f"message is {len(request.message)} characters; at most {MESSAGE_MAX_CHARS} are allowed",
        )
    check_text("message", request.message, MESSAGE_MAX_CHARS, multiline=True, code="invalid_message")
    _check_open(state)
    if state.notification is None:
        raise Refused(
            "no_open_notification",
            f"certificate {state.case_reference} has no open notification to respond to",
        )
    return Response(request.response)


def can_respond(user: User) -> bool:
    """Only case management roles carry the permission to submit notification responses."""
    return bool(RESPONDING_ROLES.intersection(user.roles))


def _firm_user(state: CertificateState, user: User | None, who: str) -> User:
    """The user, known to the directory and of the certificate's own provider firm."""
    if user is None:
        raise Refused("unknown_user", f"{who} is not in the user directory")
    firm = state.registration.provider_firm_id if state.registration else None
    if user.provider_firm_id != firm:
        raise Refused("wrong_firm", f"{who} is not a user of the certificate's provider firm")
    return user


def _check_open(state: CertificateState) -> None:
    if state.stage == IcrStage.CLOSED:
        raise Refused("certificate_closed", f"certificate {state.case_reference} is closed")


def authorize_response(state: CertificateState, user: User | None, login_id: str) -> None:
    """The assigned user, or any Cross Office user, of the certificate's firm answers, if a role lets them."""
    user = _firm_user(state, user, f"user {login_id!r}")
    if not can_respond(user):
        raise Refused(
            "not_permitted",
            f"user {login_id!r} holds no role that may submit notification responses "
            f"(roles: {', '.join(user.roles) or 'none'}); an Office Manager can view "
            "notifications but not respond",
        )
    assigned = state.notification.assigned_to if state.notification else None
    if assigned != user.login_id and Role.CROSS_OFFICE not in user.roles:
        raise Refused(
            "not_assigned",
            f"the notification is assigned to {assigned!r}; only that user or a Cross Office "
            "user of the firm may respond",
        )


def check_decision(state: CertificateState, request: LaaDecisionRequest) -> Decision:
    """A caseworker decides close or keep open, and only on an open certificate's open task."""
    values = [d.value for d in Decision]
    if request.decision not in values:
        raise Refused(
            "unknown_decision",
            f"{shown(request.decision)} is not a decision; use one of: {', '.join(values)}",
        )
    if not request.caseworker.strip():
        raise Refused("missing_caseworker", "caseworker is required")
    check_text("caseworker", request.caseworker, LOGIN_MAX_CHARS, code="invalid_caseworker")
    check_text("reason", request.reason, REASON_MAX_CHARS, multiline=True, code="invalid_reason")
    _check_open(state)
    if state.task is None:
        raise Refused(
            "no_open_task",
            f"certificate {state.case_reference} has no open LAA task to decide",
        )
    return Decision(request.decision)


def check_reassign(state: CertificateState, request: ReassignContactRequest) -> None:
    """A reassignment names both users and applies to an open, registered certificate."""
    if not request.user_login_id.strip() or not request.new_contact_login_id.strip():
        raise Refused("missing_user", "user_login_id and new_contact_login_id are required")
    check_text("user_login_id", request.user_login_id, LOGIN_MAX_CHARS, code="invalid_user")
    check_text("new_contact_login_id", request.new_contact_login_id, LOGIN_MAX_CHARS, code="invalid_user")
    _check_open(state)
    if state.registration is None:
        raise Refused(
            "not_registered",
            f"certificate {state.case_reference} is not registered, so it has no provider contact",
        )


def authorize_reassign(
    state: CertificateState,
    request: ReassignContactRequest,
    user: User | None,
    new_contact: User | None,
) -> None:
    """A Cross Office user who may respond may hand the certificate to a firm user who can respond."""
    user = _firm_user(state, user, f"user {request.user_login_id!r}")
    if Role.CROSS_OFFICE not in user.roles or not can_respond(user):
        raise Refused(
            "not_permitted",
            f"user {request.user_login_id!r} is not a Cross Office user who may respond, "
            "so may not reassign the provider contact",
        )
    new_contact = _firm_user(state, new_contact, f"new contact {request.new_contact_login_id!r}")
    if new_contact.pre_silas or not can_respond(new_contact):
        raise Refused(
            "contact_cannot_respond",
            f"new contact {request.new_contact_login_id!r} cannot respond to notifications "
            "(a pre-SiLAS username, or no case management role)",
        )

"""Input checks and authorisation: what the rules refuse before anything changes.

Each check raises `Refused` with a stable code and a message for people, or returns the
validated value. They read the state but never change it.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from icr.domain.models import (
    ActivityEvent,
    ActivityKind,
    Caseworker,
    CertificateState,
    CloseCertificateRequest,
    Decision,
    IcrStage,
    LaaDecisionRequest,
    OutageDeclaration,
    PolicyChange,
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
# Longer than any task id the engine makes (`TASK-<ref>-<n>`): a longer one names no task.
TASK_ID_MAX_CHARS = 100
EARLIEST_YEAR = 1900
LATEST_YEAR = 2200
RESPONDING_ROLES = frozenset({Role.CASE_MANAGEMENT, Role.CASE_MANAGEMENT_SUPERVISOR})
# A policy version may be dated a little in the past (written up after a decision taken
# yesterday), never further: certificates would have fallen due under it already.
POLICY_BACKDATING = timedelta(days=1)


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
        "reason": _bounded(request.reason, REASON_MAX_CHARS),
        "task_id": _bounded(request.task_id, TASK_ID_MAX_CHARS)})


def bound_close(request: CloseCertificateRequest) -> CloseCertificateRequest:
    """As `bound_event`, for a pending close."""
    return request.model_copy(update={"reason": _bounded(request.reason, REASON_MAX_CHARS),
                                      "system": _bounded(request.system, LOGIN_MAX_CHARS)})


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


def check_response(state: CertificateState, request: RespondRequest, now: datetime) -> Response:
    """A response names a user and one of the five responses, and answers an open notification
    before its return date."""
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
    if request.notification_id is not None and request.notification_id != state.notification.notification_id:
        raise Refused(
            "stale_notification",
            f"notification {shown(request.notification_id)} is not the open notification of certificate "
            f"{state.case_reference} (the open one is {state.notification.notification_id}); nothing was answered",
        )
    # Refused here, not left to whether the return was processed first: at the return date
    # the notification has gone to the LAA as unanswered.
    if now >= state.notification.return_date:
        raise Refused(
            "notification_returned",
            f"notification {state.notification.notification_id} was returned to the LAA on "
            f"{state.notification.return_date.isoformat()} with no response; it can no longer be answered",
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
    firm = state.registration.provider_firm_id if state.registration else None
    assigned = state.notification.assigned_to if state.notification else None
    authorize_responder(firm, assigned, user, login_id)


def authorize_responder(firm: str | None, assigned: str | None, user: User | None, login_id: str) -> None:
    """`authorize_response` on what a notification row holds (its firm and assignee), for
    readers that have no workflow state: the provider portal's available responses."""
    if user is None:
        raise Refused("unknown_user", f"user {login_id!r} is not in the user directory")
    if user.provider_firm_id != firm:
        raise Refused("wrong_firm", f"user {login_id!r} is not a user of the certificate's provider firm")
    if user.pre_silas:
        raise Refused(
            "pre_silas_login",
            f"user {login_id!r} is a pre-SiLAS username, which never responds itself; a Cross "
            "Office user of the firm responds for it",
        )
    if not can_respond(user):
        raise Refused(
            "not_permitted",
            f"user {login_id!r} holds no role that may submit notification responses "
            f"(roles: {', '.join(user.roles) or 'none'}); an Office Manager can view "
            "notifications but not respond",
        )
    if assigned != user.login_id and Role.CROSS_OFFICE not in user.roles:
        raise Refused(
            "not_assigned",
            f"the notification is assigned to {assigned!r}; only that user or a Cross Office "
            "user of the firm may respond",
        )


def available_responses(firm: str | None, assigned: str | None, is_open: bool, return_date: datetime,
                        user: User | None, now: datetime) -> list[Response]:
    """The responses `user` may give now to a notification of `firm` assigned to `assigned`:
    all five while it is open, before its return date, and `authorize_responder` allows them;
    none otherwise (an Office Manager, a pre-SiLAS login, another firm's user, a closed or
    returned notification). The same rules as the `respond` update, never a copy of them."""
    if not is_open or now >= return_date or user is None:
        return []
    try:
        authorize_responder(firm, assigned, user, user.login_id)
    except Refused:
        return []
    return list(Response)


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
    if request.task_id is not None and request.task_id != state.task.task_id:
        raise Refused(
            "stale_task",
            f"task {request.task_id!r} is not the open task of certificate {state.case_reference} "
            f"(the open task is {state.task.task_id}, {state.task.kind.value}); nothing was decided",
        )
    return Decision(request.decision)


def authorize_decision(request: LaaDecisionRequest, caseworker: Caseworker | None) -> str:
    """Only a caseworker of the LAA's directory, still active, decides; returns the name
    decided under, as the directory has it."""
    if caseworker is None:
        raise Refused("unknown_caseworker", f"caseworker {request.caseworker[:100]!r} is not in the LAA "
                                            "caseworker directory; nothing was decided")
    if not caseworker.active:
        raise Refused("inactive_caseworker", f"caseworker {request.caseworker[:100]!r} is no longer active "
                                             "in the LAA caseworker directory; nothing was decided")
    return caseworker.caseworker_id


def check_close(request: CloseCertificateRequest) -> datetime:
    """A close names why and when, with a timezone: a bare signal closes nothing."""
    if not request.reason.strip():
        raise Refused("missing_reason", "reason is required (why the certificate was closed elsewhere)")
    if request.occurred_at is None:
        raise Refused("missing_time", "occurred_at is required (ISO 8601 with a timezone)")
    if request.occurred_at.tzinfo is None or request.occurred_at.utcoffset() is None:
        raise Refused("naive_time", "occurred_at must carry a timezone, e.g. 2026-05-17T09:30:00+01:00")
    check_text("reason", request.reason, REASON_MAX_CHARS, required=True, multiline=True)
    check_time("occurred_at", request.occurred_at)
    if request.system is not None:
        check_text("system", request.system, LOGIN_MAX_CHARS, code="invalid_system")
    return request.occurred_at


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
    """A Cross Office user holding another CCMS role may hand the certificate to a firm user who can respond."""
    user = _firm_user(state, user, f"user {request.user_login_id!r}")
    # Cross Office extends "a user who already holds a CCMS role": any other role will do.
    other_roles = set(user.roles) - {Role.CROSS_OFFICE}
    if Role.CROSS_OFFICE not in user.roles or not other_roles or user.pre_silas:
        raise Refused(
            "not_permitted",
            f"user {request.user_login_id!r} is not a Cross Office user holding another CCMS role "
            "(or is a pre-SiLAS username, which no person signs in with), so may not reassign the "
            "provider contact",
        )
    new_contact = _firm_user(state, new_contact, f"new contact {request.new_contact_login_id!r}")
    if new_contact.pre_silas or not can_respond(new_contact):
        raise Refused(
            "contact_cannot_respond",
            f"new contact {request.new_contact_login_id!r} cannot respond to notifications "
            "(a pre-SiLAS username, or no case management role)",
        )


def _days(period: timedelta) -> str:
    whole = period / timedelta(days=1)
    return f"{whole:g} days" if whole >= 1 else str(period)


def _check_who_and_why(reason: str, actor: str) -> None:
    if not reason.strip():
        raise Refused("missing_reason", "a reason is required (--reason): it goes in the audit log")
    if not actor.strip():
        raise Refused("missing_actor", "who is making the change is required (--actor): it goes in the audit log")


def check_policy_change(change: PolicyChange, now: datetime) -> None:
    """Every period of a policy version is positive, the return comes after the due date, it
    takes effect no more than a day in the past, and it names who and why."""
    for name, days in [("inactivity days", change.inactivity_days),
                       ("maximum unanswered cycles", change.max_unanswered_cycles)]:
        if days <= 0:
            raise Refused("not_positive", f"{name} must be more than 0 (got {days})")
    for name, period in [("response days", change.response_due), ("return days", change.return_after)]:
        if period <= timedelta(0):
            raise Refused("not_positive", f"{name} must be more than 0 (got {_days(period)})")
    if change.return_after <= change.response_due:
        raise Refused("return_not_after_due",
                      f"the return ({_days(change.return_after)}) must come after the due date "
                      f"({_days(change.response_due)})")
    if change.effective_from.tzinfo is None or change.effective_from.utcoffset() is None:
        raise Refused("naive_time", "the effective date must carry a timezone, e.g. 2026-09-01T00:00:00+01:00")
    if change.effective_from < now - POLICY_BACKDATING:
        raise Refused("effective_too_early",
                      f"the effective date {change.effective_from.isoformat()} is more than a day in "
                      "the past; a version takes effect from now or later (at most a day back)")
    _check_who_and_why(change.reason, change.actor)


def check_outage(declaration: OutageDeclaration) -> None:
    """An outage window ends after it starts, with timezones, and names who and why."""
    for name, at in [("--from", declaration.starts_at), ("--to", declaration.ends_at)]:
        if at.tzinfo is None or at.utcoffset() is None:
            raise Refused("naive_time", f"{name} must carry a timezone, e.g. 2026-06-05T00:00:00+01:00")
    if declaration.ends_at <= declaration.starts_at:
        raise Refused("outage_not_after_start",
                      f"the outage must end after it starts ({declaration.starts_at.isoformat()} to "
                      f"{declaration.ends_at.isoformat()})")
    _check_who_and_why(declaration.reason, declaration.actor)

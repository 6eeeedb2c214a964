"""The provider API, shaped like the LAA's notifications API (see icr/portal/schema.py and the
committed OpenAPI document, icr/portal/openapi.json)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from datetime import date

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from icr.adapters.temporal.client import CertificateNotFound, MessageRefused, NoWorker
from icr.domain import rules
from icr.domain.models import NotificationQuery, NotificationRow, NotificationSort, RespondRequest, User
from icr.portal import views
from icr.portal.app import portal_of, session_of
from icr.portal.openapi import openapi_document
from icr.portal.schema import (
    NotificationEnvelope,
    NotificationsPage,
    NotificationSummary,
    Problem,
    ResponseAnswer,
    ResponseBody,
)

log = structlog.get_logger(__name__)

MAX_PAGE_SIZE = 100
IDEMPOTENCY_KEY_MAX_CHARS = 200
# The engine's refusals of what was sent (422); every other refusal is about the notification's
# state or who may answer it (409).
INPUT_REFUSALS = frozenset({"missing_response", "unknown_response", "message_too_long", "invalid_message",
                            "missing_user", "invalid_user"})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def problem(status: int, code: str, message: str) -> web.Response:
    return json_response(Problem(code=code, message=message), status)


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


async def api_user(request: web.Request) -> User:
    """The caller: a bearer token's user, or the session's; their firm and roles from the directory."""
    portal = portal_of(request)
    header = request.headers.get("Authorization", "")
    login_id: str | None
    if header.lower().startswith("bearer "):
        login_id = await portal.sign_in.bearer_login(header[7:].strip())
        if login_id is None:
            raise ApiError(401, "unauthenticated", "the bearer token was not accepted by the OpenID provider")
    else:
        login_id = session_of(request).login_id
        if login_id is None:
            raise ApiError(401, "unauthenticated", "sign in first: a bearer token or the portal's session")
        if request.method == "POST" and not session_of(request).csrf_matches(request.headers.get("X-CSRF-Token")):
            raise ApiError(403, "csrf", "a request made with the portal's session must carry its X-CSRF-Token")
    user = await portal.store.user(login_id)
    if user is None:
        raise ApiError(403, "unknown_user", f"login {login_id!r} is not in the engine's user directory")
    return user


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _date(request: web.Request, name: str) -> date | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be a date, YYYY-MM-DD") from None


def _bool(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise ApiError(400, "invalid_parameter", f"{name} must be true or false")
    return raw.lower() == "true"


def _sort(raw: str | None) -> tuple[NotificationSort, bool]:
    """`FIELD` or `FIELD,asc|desc` (the data API's form); assign date, newest first by default."""
    if raw is None:
        return NotificationSort.ASSIGN_DATE, True
    field, _, direction = raw.partition(",")
    fields = [s.value for s in NotificationSort]
    if field not in fields or direction.lower() not in ("", "asc", "desc"):
        raise ApiError(400, "invalid_parameter", f"sort must be FIELD or FIELD,asc|desc with FIELD one of {fields}")
    return NotificationSort(field), direction.lower() != "asc"


def list_query(request: web.Request, user: User) -> NotificationQuery:
    firm = request.query.get("provider-id")
    if not firm:
        raise ApiError(400, "missing_parameter", "provider-id is required (your provider firm id)")
    if firm != user.provider_firm_id:
        raise ApiError(403, "wrong_firm", f"provider {firm[:20]!r} is not your firm")
    case_reference = request.query.get("case-reference-number")
    if case_reference is not None:
        try:
            rules.check_case_reference(case_reference)
        except rules.Refused as refused:
            raise ApiError(400, "invalid_parameter", refused.message) from None
    assigned = request.query.get("assigned-to-user-id")
    if assigned is not None and not 0 < len(assigned) <= rules.LOGIN_MAX_CHARS:
        raise ApiError(400, "invalid_parameter", f"assigned-to-user-id must be 1 to {rules.LOGIN_MAX_CHARS} characters")
    sort, descending = _sort(request.query.get("sort"))
    query = NotificationQuery(
        provider_firm_id=firm, case_reference=case_reference, assigned_to=assigned,
        include_closed=_bool(request, "include-closed", True), date_from=_date(request, "date-from"),
        date_to=_date(request, "date-to"), sort=sort, descending=descending,
        page=_int(request, "page", 0, 0, 1_000_000), size=_int(request, "size", 20, 1, MAX_PAGE_SIZE))
    return query


async def firm_notification(request: web.Request, user: User, notification_id: str) -> NotificationRow:
    """The notification, when it is the user's firm's: 404 for none, 403 for another firm's."""
    row = await portal_of(request).store.notification(notification_id)
    if row is None:
        raise ApiError(404, "not_found", f"no notification {notification_id[:60]!r}")
    if row.provider_firm_id != user.provider_firm_id:
        raise ApiError(403, "wrong_firm", "this notification belongs to another provider firm")
    return row


def update_id(row: NotificationRow, user: User, key: str) -> str:
    """The `respond` update's id: the same key from the same user for the same notification is
    the same update, so the engine answers a retry with the first answer."""
    digest = hashlib.sha256(f"{user.login_id}\0{key}".encode()).hexdigest()[:32]
    return f"portal-{row.notification_id}-{digest}"


async def answer(request: web.Request, user: User, row: NotificationRow, body: ResponseBody,
                 key: str) -> ResponseAnswer:
    """Answer through the engine's `respond` update; a refusal raises ApiError with its code."""
    portal = portal_of(request)
    respond = RespondRequest(user_login_id=user.login_id, response=body.response, message=body.message or None,
                             notification_id=row.notification_id)
    try:
        result = await portal.certificates.respond(row.case_reference, respond, update_id=update_id(row, user, key))
    except MessageRefused as refused:
        log.info("portal_response_refused", notification_id=row.notification_id, code=refused.code)
        raise ApiError(422 if refused.code in INPUT_REFUSALS else 409, refused.code, refused.message) from None
    except (CertificateNotFound, NoWorker, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
        fresh = await portal.store.notification(row.notification_id)
        if fresh is not None and not fresh.is_open:
            raise ApiError(409, "notification_closed",
                           f"notification {row.notification_id} is closed ({fresh.status}); nothing was answered") from None
        log.warning("portal_engine_unavailable", notification_id=row.notification_id, error=type(err).__name__)
        raise ApiError(503, "engine_unavailable", "the engine did not answer in time; send the same request "
                                                  "again with the same Idempotency-Key") from None
    log.info("portal_response_accepted", notification_id=row.notification_id, response=result.response.value)
    return ResponseAnswer(notification_id=result.notification_id, response=result.response.value,
                          outcome=result.outcome, stage=result.stage.value)


def handles_errors(handler: Callable[[web.Request], Awaitable[web.Response]]) -> \
        Callable[[web.Request], Awaitable[web.Response]]:
    """An API handler whose ApiError becomes its problem answer."""
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ApiError as err:
            return problem(err.status, err.code, err.message)
    return wrapped


@handles_errors
async def list_notifications(request: web.Request) -> web.Response:
    user = await api_user(request)
    query = list_query(request, user)
    page = await portal_of(request).store.firm_notifications(query)
    now = portal_of(request).now()
    return json_response(NotificationsPage(
        content=[views.info(row, now) for row in page.rows], number=query.page, size=query.size,
        total_elements=page.total, total_pages=math.ceil(page.total / query.size)))


@handles_errors
async def get_notification(request: web.Request) -> web.Response:
    user = await api_user(request)
    row = await firm_notification(request, user, request.match_info["notification_id"])
    return json_response(NotificationEnvelope(notification=views.detail(row, user, portal_of(request).now())))


@handles_errors
async def user_summary(request: web.Request) -> web.Response:
    user = await api_user(request)
    login_id = request.match_info["login_id"]
    other = user if login_id == user.login_id else await portal_of(request).store.user(login_id)
    if other is None or other.provider_firm_id != user.provider_firm_id:
        raise ApiError(403, "wrong_firm", f"user {login_id[:60]!r} is not a user of your firm")
    counts = await portal_of(request).store.open_notification_counts(login_id, portal_of(request).now())
    return json_response(NotificationSummary(notifications=counts.open, standard_actions=counts.standard,
                                             overdue_actions=counts.overdue))


@handles_errors
async def respond(request: web.Request) -> web.Response:
    user = await api_user(request)
    key = request.headers.get("Idempotency-Key", "")
    if not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        raise ApiError(400, "missing_idempotency_key", f"an Idempotency-Key header of 1 to "
                                                       f"{IDEMPOTENCY_KEY_MAX_CHARS} characters is required")
    try:
        body = ResponseBody.model_validate(json.loads(await request.text()))
    except (ValueError, ValidationError):
        raise ApiError(400, "invalid_body", 'expected a JSON object: {"response": "...", "message": "..."}') from None
    row = await firm_notification(request, user, request.match_info["notification_id"])
    return json_response(await answer(request, user, row, body, key))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/notifications", list_notifications)
    app.router.add_get("/notifications/{notification_id}", get_notification)
    app.router.add_post("/notifications/{notification_id}/response", respond)
    app.router.add_get("/users/{login_id}/notifications/summary", user_summary)
    app.router.add_get("/openapi.json", openapi)

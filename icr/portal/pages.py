"""The provider's pages (GOV.UK Design System): the user's and the firm's open reviews, one
notification with its letter and the five responses, the confirmation, and sign-in."""

from __future__ import annotations

import math
import uuid

import structlog
from aiohttp import web

from icr.domain.models import RESPONSE_LABELS, NotificationQuery, NotificationSort, Response
from icr.portal import views
from icr.portal.api import ApiError, answer, firm_notification
from icr.portal.app import page_user, portal_of, render, safe_next, session_of
from icr.portal.auth import DemoSignIn, OidcSignIn, SignInFailed
from icr.portal.schema import ResponseBody

log = structlog.get_logger(__name__)
PAGE_SIZE = 25
DONE = "answered"  # the session's record of the answer just given, for the confirmation page
# Where each of the engine's refusals points on the form (the error summary links to it).
FIELD_OF = {"missing_response": "response", "unknown_response": "response", "message_too_long": "message",
            "invalid_message": "message"}
FRIENDLY = {"missing_response": "Select a response"}
# What happens next, for the confirmation page (docs/rules.md: the five responses).
_LAA_REVIEWS = "The LAA will review your response and decide whether to close the case or keep it open."
NEXT_STEPS = {
    Response.CASE_ONGOING.value: "The case stays open. Your response counts as activity on the case, so its "
                                 "inactivity clock restarts today.",
    Response.COMPLETE_TO_BE_BILLED.value: _LAA_REVIEWS,
    Response.COMPLETE_COSTS_NEGOTIATED.value: _LAA_REVIEWS,
    Response.COMPLETE_COURT_ASSESSMENT.value: _LAA_REVIEWS,
    Response.COMPLETE_NO_BILL_DUE.value: "The case is closed, and any outstanding payment on account will be "
                                         "recouped.",
}


def _check_csrf(request: web.Request, form: dict[str, str]) -> None:
    if not session_of(request).csrf_matches(form.get("csrf_token")):
        raise web.HTTPForbidden(text=render(request, "error.html", 403, title="Your session has expired",
                                            message="The form was not sent from this session. Go back, "
                                                    "reload the page and try again.").text,
                                content_type="text/html")


async def home(request: web.Request) -> web.Response:
    """The signed-in user's open reviews (the daily digest links here), or the whole firm's."""
    user = await page_user(request)
    portal = portal_of(request)
    firm_wide = request.query.get("show") == "firm"
    raw_page = request.query.get("page", "0")
    page = min(int(raw_page), 1_000_000) if raw_page.isdigit() else 0
    query = NotificationQuery(provider_firm_id=user.provider_firm_id,
                              assigned_to=None if firm_wide else user.login_id, include_closed=False,
                              sort=NotificationSort.DUE_DATE, descending=False, page=page, size=PAGE_SIZE)
    found = await portal.store.firm_notifications(query)
    counts = await portal.store.open_notification_counts(user.login_id, portal.now())
    now = portal.now()
    rows = [{"row": row, "overdue": views.is_overdue(row, now), "assigned": row.assigned_to,
             "date_assigned": views.uk_date(row.date_assigned), "due": views.uk_date(row.due_date)}
            for row in found.rows]
    return render(request, "list.html", title="Your firm's inactive case reviews" if firm_wide
                  else "Your inactive case reviews", rows=rows, firm_wide=firm_wide, user=user, counts=counts,
                  total=found.total, page=page, pages=max(math.ceil(found.total / PAGE_SIZE), 1))


async def _notification_page(request: web.Request, notification_id: str, *, status: int = 200,
                             errors: dict[str, str] | None = None, chosen: str | None = None,
                             message: str = "") -> web.Response:
    user = await page_user(request)
    portal = portal_of(request)
    try:
        row = await firm_notification(request, user, notification_id)
    except ApiError as err:
        return render(request, "error.html", err.status, title="Page not found" if err.status == 404
                      else "You cannot see this notification", message=err.message)
    now = portal.now()
    choices = views.available(row, user, now)
    return render(
        request, "notification.html", status, row=row, user=user, overdue=views.is_overdue(row, now),
        status_text=views.status_of(row, now).replace("_", " ").capitalize(),
        date_assigned=views.uk_date(row.date_assigned), due=views.uk_date(row.due_date),
        returned=views.uk_date(row.return_date), responses=choices,
        response_items=[{"value": r.value, "text": RESPONSE_LABELS[r], "checked": r.value == chosen} for r in choices],
        why_not=None if choices else views.why_not(row, user, now), answered_label=views.label(row.response),
        errors=errors or {}, chosen=chosen, message=message, idempotency_key=uuid.uuid4().hex)


async def notification(request: web.Request) -> web.Response:
    return await _notification_page(request, request.match_info["notification_id"])


async def respond(request: web.Request) -> web.StreamResponse:
    user = await page_user(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    _check_csrf(request, form)
    notification_id = request.match_info["notification_id"]
    chosen, message = form.get("response", ""), form.get("message", "")
    try:
        row = await firm_notification(request, user, notification_id)
        result = await answer(request, user, row, ResponseBody(response=chosen, message=message or None),
                              form.get("idempotency_key") or uuid.uuid4().hex)
    except ApiError as err:
        if err.status in (403, 404):
            return render(request, "error.html", err.status, title="You cannot answer this notification",
                          message=err.message)
        field = FIELD_OF.get(err.code, "response")
        return await _notification_page(request, notification_id, status=err.status,
                                        errors={field: FRIENDLY.get(err.code, err.message)},
                                        chosen=chosen, message=message)
    session_of(request).set(DONE, {"notification_id": result.notification_id, "case_reference": row.case_reference,
                                   "response": result.response, "outcome": result.outcome})
    raise web.HTTPSeeOther(f"/reviews/{result.notification_id}/confirmation")


async def confirmation(request: web.Request) -> web.Response:
    await page_user(request)
    done = session_of(request).data.get(DONE)
    if not isinstance(done, dict) or done.get("notification_id") != request.match_info["notification_id"]:
        raise web.HTTPFound(f"/reviews/{request.match_info['notification_id']}")
    return render(request, "confirmation.html", done=done, label=views.label(done.get("response")),
                  next_step=NEXT_STEPS.get(str(done.get("response")), done.get("outcome")))


async def sign_in(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    next_path = safe_next(request.query.get("next"))
    if isinstance(portal.sign_in, OidcSignIn):
        try:
            raise web.HTTPFound(await portal.sign_in.start(session_of(request), next_path))
        except SignInFailed as err:
            return render(request, "error.html", 503, title="Sign-in is not available", message=str(err))
    return render(request, "sign_in.html", user_items=await _demo_users(request), next_path=next_path, error=None)


async def _demo_users(request: web.Request) -> list[dict[str, object]]:
    """The demo's users as radio items, each with its firm and roles."""
    portal = portal_of(request)
    assert isinstance(portal.sign_in, DemoSignIn)
    users = sorted(await portal.store.load_users(portal.sign_in.login_ids),
                   key=lambda u: (u.provider_firm_id, u.login_id))
    return [{"value": u.login_id, "text": u.login_id,
             "hint": {"text": f"firm {u.provider_firm_id}; " + (", ".join(r.replace("_", " ") for r in u.roles) or "no roles")
                      + ("; a pre-SiLAS login" if u.pre_silas else "")}} for u in users]


async def demo_sign_in(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not isinstance(portal.sign_in, DemoSignIn):
        raise web.HTTPNotFound()
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    _check_csrf(request, form)
    login_id = form.get("login_id", "")
    if login_id not in portal.sign_in.login_ids:
        return render(request, "sign_in.html", 422, user_items=await _demo_users(request),
                      next_path=safe_next(form.get("next")), error="Select the demo user to sign in as")
    session_of(request).sign_in(login_id)
    log.info("portal_signed_in", how="demo")  # no login id: logs hold no personal data
    raise web.HTTPSeeOther(safe_next(form.get("next")))


async def oidc_callback(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not isinstance(portal.sign_in, OidcSignIn):
        raise web.HTTPNotFound()
    try:
        login_id, next_path = await portal.sign_in.finish(session_of(request), dict(request.query))
    except SignInFailed as err:
        log.warning("portal_sign_in_failed", reason=str(err))
        return render(request, "error.html", 403, title="You could not be signed in", message=str(err))
    session_of(request).sign_in(login_id)
    log.info("portal_signed_in", how="oidc")  # no login id: logs hold no personal data
    raise web.HTTPFound(safe_next(next_path))


async def sign_out(request: web.Request) -> web.StreamResponse:
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    _check_csrf(request, form)
    session_of(request).sign_out()
    raise web.HTTPSeeOther("/signed-out")


async def signed_out(request: web.Request) -> web.Response:
    return render(request, "error.html", title="You have signed out", message="Sign in again to answer reviews.")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/reviews/{notification_id}", notification)
    app.router.add_post("/reviews/{notification_id}/response", respond)
    app.router.add_get("/reviews/{notification_id}/confirmation", confirmation)
    app.router.add_get("/sign-in", sign_in)
    app.router.add_post("/sign-in/demo", demo_sign_in)
    app.router.add_get("/auth/callback", oidc_callback)
    app.router.add_post("/sign-out", sign_out)
    app.router.add_get("/signed-out", signed_out)
    app.router.add_get("/health", health)

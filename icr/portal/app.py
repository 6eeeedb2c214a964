"""The provider portal's web application (aiohttp): the JSON API, the GOV.UK pages, sign-in,
sessions and the vendored GOV.UK Frontend assets.

Every request is made for a signed-in user: a bearer token the OpenID provider vouches for
(API callers) or the portal's signed session cookie (the pages, and the API from them). The
user's firm and roles come from the engine's user directory, never from the request.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import jinja2
import structlog
from aiohttp import web

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient
from icr.domain.models import User
from icr.portal.assets import GOVUK_DIR, STATIC
from icr.portal.auth import SignIn
from icr.portal.sessions import COOKIE, Session, SessionSigner

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION = web.RequestKey("session", Session)
NONCE = web.RequestKey("csp_nonce", str)


@dataclass
class Portal:
    store: Store
    certificates: CertificateClient
    sign_in: SignIn
    signer: SessionSigner
    templates: jinja2.Environment
    secure_cookies: bool
    clock: Callable[[], datetime]

    def now(self) -> datetime:
        return self.clock()


PORTAL = web.AppKey("portal", Portal)


def portal_of(request: web.Request) -> Portal:
    return request.app[PORTAL]


def session_of(request: web.Request) -> Session:
    return request[SESSION]


def templates() -> jinja2.Environment:
    """The portal's templates over GOV.UK Frontend's own macros (govuk-frontend-jinja)."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([
            jinja2.PackageLoader("icr.portal", "templates"),
            jinja2.PrefixLoader({"govuk_frontend_jinja": jinja2.PackageLoader("govuk_frontend_jinja")}),
        ]),
        autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    return env


def render(request: web.Request, template: str, status: int = 200, **context: object) -> web.Response:
    portal = portal_of(request)
    session = session_of(request)
    html = portal.templates.get_template(template).render(
        cspNonce=request[NONCE], csrf_token=session.csrf_token, signed_in=session.login_id,
        demo=portal.sign_in.demo, **context)
    return web.Response(text=html, status=status, content_type="text/html")


def safe_next(path: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    parts = urlsplit(path)
    return path if not parts.scheme and not parts.netloc else "/"


def sign_in_redirect(request: web.Request) -> web.HTTPFound:
    return web.HTTPFound(f"/sign-in?next={quote(request.path_qs, safe='')}")


async def page_user(request: web.Request) -> User:
    """The signed-in user of a page; off to sign in when there is none."""
    login_id = session_of(request).login_id
    if login_id is None:
        raise sign_in_redirect(request)
    user = await portal_of(request).store.user(login_id)
    if user is None:
        raise web.HTTPForbidden(text=render(request, "error.html", 403, title="You cannot use this service",
                                            message=f"Your login {login_id} is not in the engine's user "
                                                    "directory. Ask the LAA to register it.").text,
                                content_type="text/html")
    return user


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    portal = portal_of(request)
    session = portal.signer.loads(request.cookies.get(COOKIE))
    request[SESSION] = session
    request[NONCE] = secrets.token_urlsafe(16)
    try:
        response = await handler(request)
    except web.HTTPException as err:
        response = err
        _finish(request, portal, session, response)
        raise
    _finish(request, portal, session, response)
    return response


def _finish(request: web.Request, portal: Portal, session: Session, response: web.StreamResponse) -> None:
    if session.changed:
        response.set_cookie(COOKIE, portal.signer.dumps(session), httponly=True, samesite="Lax",
                            secure=portal.secure_cookies, path="/", max_age=portal.signer.lifetime_s)
    if not request.path.startswith(("/assets/", "/govuk-frontend/", "/portal-assets/")):
        response.headers["Cache-Control"] = "no-store"
    # The GOV.UK template's one inline script carries this request's nonce; nothing else runs.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' 'nonce-{request[NONCE]}'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"


def build_app(store: Store, certificates: CertificateClient, sign_in: SignIn, session_secret: str, *,
              secure_cookies: bool, clock: Callable[[], datetime] | None = None) -> web.Application:
    """The portal. `clock`: what "now" is for due, overdue and return dates (the wall clock)."""
    from icr.portal import api, pages

    app = web.Application(middlewares=[sessions], client_max_size=64 * 1024)
    app[PORTAL] = Portal(store=store, certificates=certificates, sign_in=sign_in,
                         signer=SessionSigner(session_secret), templates=templates(),
                         secure_cookies=secure_cookies, clock=clock or (lambda: datetime.now(UTC)))
    api.add_routes(app)
    pages.add_routes(app)
    # GOV.UK Frontend: its stylesheet asks for /assets/fonts/... and /assets/images/...
    app.router.add_static("/assets", GOVUK_DIR / "assets")
    app.router.add_static("/govuk-frontend", GOVUK_DIR)
    app.router.add_static("/portal-assets", STATIC / "portal")

    async def close_sign_in(app: web.Application) -> None:
        await app[PORTAL].sign_in.close()

    app.on_cleanup.append(close_sign_in)
    return app

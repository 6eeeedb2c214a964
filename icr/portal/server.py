"""Serving the portal: `python -m icr.portal` in production (OpenID Connect sign-in), and the
pieces `./run demo` uses to serve it beside the engine (the demo's pick-a-user sign-in)."""

from __future__ import annotations

import secrets
import sys

import structlog
from aiohttp import web

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient
from icr.portal.app import build_app
from icr.portal.auth import DemoSignIn, OidcConfig, OidcSignIn, SignIn
from icr.portal.sessions import MIN_SECRET_CHARS
from icr.runtime.http import serve, until_stopped
from icr.runtime.keyring import ConfigurationError
from icr.runtime.settings import Settings

log = structlog.get_logger(__name__)


def public_url(settings: Settings) -> str:
    return (settings.portal_public_url or f"http://{settings.portal_host}:{settings.portal_port}").rstrip("/")


def oidc_sign_in(settings: Settings) -> OidcSignIn:
    """Production's sign-in, from settings; refuses to go on with any part missing."""
    missing = [name for name, value in [("ICR_OIDC_ISSUER", settings.oidc_issuer),
                                        ("ICR_OIDC_CLIENT_ID", settings.oidc_client_id),
                                        ("ICR_OIDC_CLIENT_SECRET", settings.oidc_client_secret)] if not value]
    if missing:
        raise ConfigurationError(f"the portal signs users in with OpenID Connect: set {', '.join(missing)}")
    assert settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret
    return OidcSignIn(OidcConfig(
        issuer=settings.oidc_issuer, client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret.get_secret_value(),
        redirect_uri=f"{public_url(settings)}/auth/callback", login_claim=settings.oidc_login_claim))


def session_secret(settings: Settings) -> str:
    secret = settings.portal_session_secret.get_secret_value() if settings.portal_session_secret else ""
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigurationError(f"set ICR_PORTAL_SESSION_SECRET to a random value of at least {MIN_SECRET_CHARS} "
                                 "characters (it signs the portal's session cookies)")
    return secret


def portal_app(settings: Settings, store: Store, certificates: CertificateClient, sign_in: SignIn,
               secret: str | None = None) -> web.Application:
    return build_app(store, certificates, sign_in, secret or session_secret(settings),
                     secure_cookies=public_url(settings).startswith("https://"))


def demo_portal_app(settings: Settings, store: Store, certificates: CertificateClient,
                    login_ids: list[str]) -> web.Application:
    """The demo's portal: pick one of these users to sign in; a session secret of its own."""
    return portal_app(settings, store, certificates, DemoSignIn(login_ids), secret=secrets.token_urlsafe(48))


async def _main() -> int:
    from icr.runtime.engine import connected
    from icr.runtime.logs import configure_logging
    from icr.runtime.servers import announce_on_stderr

    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    try:
        sign_in = oidc_sign_in(settings)
        secret = session_secret(settings)
    except ConfigurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        async with connected(settings, announce=announce_on_stderr(settings.temporal_namespace)) as rt:
            runner = await serve(portal_app(settings, rt.store, rt.certificates, sign_in, secret),
                                 settings.portal_host, settings.portal_port)
            log.info("portal_running", address=public_url(settings), issuer=settings.oidc_issuer)
            await until_stopped()
            await runner.cleanup()
    except ConfigurationError as err:  # a partial configuration, a namespace without the attributes
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0

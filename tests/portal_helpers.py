"""Helpers for the provider portal's tests: a portal on a test server, signed-in sessions,
and notifications seeded straight into the engine's database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient
from icr.domain.models import CloseNotification, NotificationStatus, RaiseNotification
from icr.domain.rules import NOTIFICATION_SUBJECT
from icr.portal.app import build_app
from icr.portal.auth import SignIn
from icr.portal.sessions import COOKIE, Session, SessionSigner

SECRET = "a-test-secret-of-more-than-thirty-two-characters"
CSRF = "test-csrf-token"


def session_cookie(login_id: str, csrf: str = CSRF) -> dict[str, str]:
    """A signed session cookie, as the portal writes one after sign-in."""
    return {COOKIE: SessionSigner(SECRET).dumps(Session({"login_id": login_id, "csrf": csrf}))}


async def portal_client(store: Store, certificates: CertificateClient, sign_in: SignIn,
                        clock: Callable[[], datetime] | None = None) -> TestClient[web.Request, web.Application]:
    app = build_app(store, certificates, sign_in, SECRET, secure_cookies=False, clock=clock)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def seed_notification(store: Store, case_reference: str, firm: str, assigned_to: str, assigned: datetime,
                            *, cycle: int = 1, closed: NotificationStatus | None = None) -> str:
    """A notification raised at `assigned` (due 14 days on, returned at 21), closed if asked."""
    notification_id = f"ICR-{case_reference}-{cycle:03d}"
    await store.raise_notification(RaiseNotification(
        case_reference=case_reference, notification_id=notification_id, cycle=cycle, provider_firm_id=firm,
        assigned_to=assigned_to, date_assigned=assigned, due_date=assigned + timedelta(days=14),
        return_date=assigned + timedelta(days=21), subject=NOTIFICATION_SUBJECT,
        letter=f"Dear provider,\n\nCase {case_reference} has had no activity."))
    if closed is not None:
        await store.close_notification(CloseNotification(case_reference=case_reference,
                                                         notification_id=notification_id, status=closed,
                                                         at=assigned + timedelta(days=2)))
    return notification_id

"""Signed session cookies and CSRF tokens.

The session is a small JSON object in a cookie, signed with HMAC-SHA256 under the portal's
secret and dated: a cookie that was altered, signed under another secret, or is older than
the session's lifetime reads as no session at all. It holds the signed-in login id, the CSRF
token every form and cookie-authenticated API call must echo, and the state of a sign-in
under way (OpenID Connect `state`, `nonce` and PKCE verifier). Nothing in it is secret from
its holder; nothing in it is trusted unless the signature holds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

COOKIE = "icr_portal_session"
LIFETIME_S = 8 * 3600  # a working day; then the user signs in again
MIN_SECRET_CHARS = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Session:
    """What the cookie carries. `changed` says whether it must be written back."""

    data: dict[str, Any] = field(default_factory=dict)
    changed: bool = False

    @property
    def login_id(self) -> str | None:
        value = self.data.get("login_id")
        return value if isinstance(value, str) else None

    @property
    def csrf_token(self) -> str:
        """This session's CSRF token, made on first use."""
        token = self.data.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            self.set("csrf", token)
        return token

    def csrf_matches(self, presented: str | None) -> bool:
        token = self.data.get("csrf")
        return isinstance(token, str) and bool(presented) and hmac.compare_digest(token, presented or "")

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.changed = True

    def pop(self, key: str) -> Any:
        self.changed = self.changed or key in self.data
        return self.data.pop(key, None)

    def sign_in(self, login_id: str) -> None:
        """A new session for this user: a fresh CSRF token, nothing of the one before."""
        self.data = {"login_id": login_id, "csrf": secrets.token_urlsafe(32)}
        self.changed = True

    def sign_out(self) -> None:
        self.data = {}
        self.changed = True


class SessionSigner:
    def __init__(self, secret: str, lifetime_s: int = LIFETIME_S) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the portal's session secret must be at least {MIN_SECRET_CHARS} characters "
                             "(ICR_PORTAL_SESSION_SECRET)")
        self._key = hashlib.sha256(b"icr-portal-session\0" + secret.encode()).digest()
        self.lifetime_s = lifetime_s

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def dumps(self, session: Session, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        body = _b64(json.dumps({"at": issued, "data": session.data}, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def loads(self, cookie: str | None, now: float | None = None) -> Session:
        """The session the cookie carries; an empty one for a missing, altered or expired cookie."""
        if not cookie or "." not in cookie:
            return Session()
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return Session()
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return Session()
        issued = payload.get("at") if isinstance(payload, dict) else None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(issued, int) or not isinstance(data, dict):
            return Session()
        if (time.time() if now is None else now) - issued > self.lifetime_s:
            return Session()
        return Session(data)

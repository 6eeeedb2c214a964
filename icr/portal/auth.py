"""Who the portal's user is: OpenID Connect in production, a pick list in the demo only.

`OidcSignIn` runs the authorization code flow with PKCE, `state` and `nonce` against the
configured provider, verifies the ID token (signature from the provider's JWKS, issuer,
audience, expiry, nonce) and takes the login id from one claim of it; API callers present the
provider's access token as a bearer token, which the provider's userinfo endpoint vouches for.
`DemoSignIn` lets a person pick one of the directory's users: `./run demo` builds it, and
nothing in production can (no setting turns it on).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from icr.portal.sessions import Session

log = structlog.get_logger(__name__)

# How long the provider's discovery document and keys, and a bearer token's userinfo answer,
# are reused before asking again.
DISCOVERY_TTL_S = 3600
BEARER_TTL_S = 60
SIGN_IN_KEY = "oidc"


class SignInFailed(Exception):
    """The sign-in could not be completed; the message says why, for the person and the log."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    login_claim: str = "sub"
    scopes: str = "openid profile email"


def _pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OidcSignIn:
    """Sign-in through an OpenID provider (authorization code flow with PKCE)."""

    demo = False

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._discovery: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._bearers: dict[str, tuple[float, str | None]] = {}
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._http

    async def _metadata(self) -> dict[str, Any]:
        if self._discovery is None or time.monotonic() - self._fetched_at > DISCOVERY_TTL_S:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            async with self._client().get(url) as response:
                if response.status != 200:
                    raise SignInFailed(f"the OpenID provider's discovery document answered {response.status}")
                discovery = await response.json()
            async with self._client().get(discovery["jwks_uri"]) as response:
                keys = KeySet.import_key_set(await response.json())
            self._discovery, self._keys, self._fetched_at = discovery, keys, time.monotonic()
        return self._discovery

    async def start(self, session: Session, next_path: str) -> str:
        """Where to send the browser to sign in; what the callback must match goes in the session."""
        metadata = await self._metadata()
        state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
        session.set(SIGN_IN_KEY, {"state": state, "nonce": nonce, "verifier": verifier, "next": next_path})
        query = urlencode({
            "response_type": "code", "client_id": self.config.client_id, "redirect_uri": self.config.redirect_uri,
            "scope": self.config.scopes, "state": state, "nonce": nonce,
            "code_challenge": _pkce_challenge(verifier), "code_challenge_method": "S256"})
        return f"{metadata['authorization_endpoint']}?{query}"

    async def finish(self, session: Session, params: dict[str, str]) -> tuple[str, str]:
        """The login id from the provider's answer, and where the user was going."""
        pending = session.pop(SIGN_IN_KEY)
        if not isinstance(pending, dict):
            raise SignInFailed("no sign-in was started in this browser (or it was already completed)")
        if "error" in params:
            raise SignInFailed(f"the OpenID provider refused the sign-in: {params['error'][:100]}")
        if not secrets.compare_digest(params.get("state", ""), pending["state"]):
            raise SignInFailed("the sign-in's state does not match the one this browser started")
        code = params.get("code")
        if not code:
            raise SignInFailed("the OpenID provider's answer has no authorization code")
        metadata = await self._metadata()
        async with self._client().post(metadata["token_endpoint"], data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": self.config.redirect_uri,
                "code_verifier": pending["verifier"]},
                auth=aiohttp.BasicAuth(self.config.client_id, self.config.client_secret)) as response:
            tokens = await response.json(content_type=None)
            if response.status != 200 or "id_token" not in tokens:
                raise SignInFailed(f"the OpenID provider's token endpoint answered {response.status}")
        claims = self._verified_claims(tokens["id_token"], pending["nonce"], metadata)
        login_id = claims.get(self.config.login_claim)
        if not isinstance(login_id, str) or not login_id:
            raise SignInFailed(f"the ID token has no {self.config.login_claim!r} claim to take the login id from")
        return login_id, pending.get("next") or "/"

    def _verified_claims(self, id_token: str, nonce: str, metadata: dict[str, Any]) -> dict[str, Any]:
        assert self._keys is not None
        try:
            token = jwt.decode(id_token, self._keys, algorithms=metadata.get("id_token_signing_alg_values_supported"))
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": metadata["issuer"]},
                aud={"essential": True, "value": self.config.client_id},
                exp={"essential": True}, nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as err:
            raise SignInFailed(f"the ID token did not verify: {type(err).__name__}") from None
        return dict(token.claims)

    async def bearer_login(self, token: str) -> str | None:
        """The login id an access token stands for, as the provider's userinfo endpoint says;
        None when the provider does not accept it."""
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._bearers.get(key)
        if cached is not None and time.monotonic() - cached[0] < BEARER_TTL_S:
            return cached[1]
        metadata = await self._metadata()
        async with self._client().get(metadata["userinfo_endpoint"],
                                      headers={"Authorization": f"Bearer {token}"}) as response:
            claims = await response.json(content_type=None) if response.status == 200 else {}
        login_id = claims.get(self.config.login_claim) if isinstance(claims, dict) else None
        found = login_id if isinstance(login_id, str) and login_id else None
        if len(self._bearers) > 10_000:
            self._bearers.clear()
        self._bearers[key] = (time.monotonic(), found)
        return found


class DemoSignIn:
    """The demo's sign-in: pick a user of the directory. Built only by `./run demo`."""

    demo = True

    def __init__(self, login_ids: list[str]) -> None:
        self.login_ids = list(login_ids)

    async def close(self) -> None:
        return None

    async def bearer_login(self, token: str) -> str | None:
        return None  # the demo has no tokens: its API is used with the browser's session


SignIn = OidcSignIn | DemoSignIn

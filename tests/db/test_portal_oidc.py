"""Signing in to the portal with OpenID Connect, against a local OpenID provider started by
the test (oidc-provider-mock): the authorization code flow with PKCE, state and nonce, the
login id taken from the verified ID token, and bearer tokens for the API."""

from __future__ import annotations

import socket
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from icr.adapters.db.store import Store
from icr.adapters.temporal.client import CertificateClient
from icr.portal.app import build_app
from icr.portal.auth import OidcConfig, OidcSignIn
from tests.conftest import FIRM, add_user
from tests.portal_helpers import SECRET

CLIENT_ID, CLIENT_SECRET = "icr-portal", "portal-client-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    # Imported here: the mock provider's own imports warn about its dependencies' deprecations,
    # which are nothing of ours and would show in every run that merely collects this module.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import oidc_provider_mock
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
async def portal(store: Store, issuer: str) -> AsyncIterator[TestClient[Any, Any]]:
    await add_user(store, "JSMITH", ["case_management"])
    await add_user(store, "AJONES", ["case_management", "cross_office"])
    port = free_port()
    sign_in = OidcSignIn(OidcConfig(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                    redirect_uri=f"http://127.0.0.1:{port}/auth/callback"))
    app = build_app(store, CertificateClient(None, "unused"), sign_in, SECRET,  # type: ignore[arg-type]
                    secure_cookies=False)
    client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    yield client
    await client.close()


async def authorize(url: str, sub: str) -> str:
    """The person signs in at the provider as `sub`; where the provider sends the browser back."""
    async with aiohttp.ClientSession() as browser:
        async with browser.post(url, data={"sub": sub}, allow_redirects=False) as response:
            assert response.status in (302, 303), await response.text()
            return response.headers["Location"]


async def test_sign_in_takes_the_login_id_from_the_verified_id_token(portal: TestClient[Any, Any],
                                                                     issuer: str) -> None:
    response = await portal.get("/sign-in?next=/notifications?provider-id=" + FIRM, allow_redirects=False)
    assert response.status == 302
    authorize_url = response.headers["Location"]
    assert authorize_url.startswith(f"{issuer}/oauth2/authorize?")
    asked = parse_qs(urlsplit(authorize_url).query)
    assert asked["code_challenge_method"] == ["S256"] and asked["nonce"] and asked["state"]
    assert asked["client_id"] == [CLIENT_ID] and "openid" in asked["scope"][0]
    back = urlsplit(await authorize(authorize_url, "JSMITH"))
    response = await portal.get(f"{back.path}?{back.query}", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == f"/notifications?provider-id={FIRM}"
    listed = await portal.get(f"/notifications?provider-id={FIRM}")
    assert listed.status == 200, await listed.text()
    summary = await portal.get("/users/JSMITH/notifications/summary")
    assert summary.status == 200
    page = await (await portal.get("/")).text()
    assert "Signed in as <strong>JSMITH</strong>" in page
    # The callback is used once: replayed, it signs nobody in.
    response = await portal.get(f"{back.path}?{back.query}", allow_redirects=False)
    assert response.status == 403 and "no sign-in was started" in await response.text()


async def test_a_callback_whose_state_does_not_match_signs_nobody_in(portal: TestClient[Any, Any]) -> None:
    response = await portal.get("/sign-in", allow_redirects=False)
    back = urlsplit(await authorize(response.headers["Location"], "JSMITH"))
    query = {k: v[0] for k, v in parse_qs(back.query).items()} | {"state": "forged"}
    response = await portal.get(back.path, params=query, allow_redirects=False)
    assert response.status == 403 and "state does not match" in await response.text()
    assert (await portal.get(f"/notifications?provider-id={FIRM}")).status == 401


async def test_a_user_the_provider_knows_but_the_directory_does_not_is_refused(portal: TestClient[Any, Any]) -> None:
    response = await portal.get("/sign-in", allow_redirects=False)
    back = urlsplit(await authorize(response.headers["Location"], "STRANGER"))
    await portal.get(f"{back.path}?{back.query}", allow_redirects=False)
    response = await portal.get(f"/notifications?provider-id={FIRM}")
    assert response.status == 403 and (await response.json())["code"] == "unknown_user"
    assert (await portal.get("/")).status == 403


async def test_an_api_caller_presents_the_providers_access_token(portal: TestClient[Any, Any], issuer: str) -> None:
    redirect = "http://127.0.0.1/elsewhere"
    async with aiohttp.ClientSession() as http:
        query = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect, "scope": "openid",
                 "state": "s1"}
        async with http.post(f"{issuer}/oauth2/authorize", params=query, data={"sub": "AJONES"},
                             allow_redirects=False) as response:
            code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
        async with http.post(f"{issuer}/oauth2/token", data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
                auth=aiohttp.BasicAuth(CLIENT_ID, CLIENT_SECRET)) as response:
            token = (await response.json())["access_token"]
    response = await portal.get(f"/notifications?provider-id={FIRM}", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200, await response.text()
    response = await portal.get("/users/AJONES/notifications/summary", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    response = await portal.get(f"/notifications?provider-id={FIRM}", headers={"Authorization": "Bearer forged"})
    assert response.status == 401 and (await response.json())["code"] == "unauthenticated"

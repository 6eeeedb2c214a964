"""What the portal ships: the committed OpenAPI document is the one it serves, and the
vendored GOV.UK Frontend is the pinned release (the version the Jinja macros are tested against)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from icr.portal import assets
from icr.portal.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "icr" / "portal" / "openapi.json"


def test_the_committed_openapi_document_is_the_one_the_portal_serves() -> None:
    assert json.loads(COMMITTED.read_text()) == openapi_document(), \
        "icr/portal/openapi.json is stale: .venv/bin/python -m icr.portal.openapi > icr/portal/openapi.json"


def test_the_openapi_document_names_every_path_of_the_contract() -> None:
    assert set(openapi_document()["paths"]) == {
        "/notifications", "/notifications/{notification-id}", "/notifications/{notification-id}/response",
        "/users/{login-id}/notifications/summary"}


def test_the_vendored_govuk_frontend_is_the_pinned_version() -> None:
    assert assets.vendored_version() == assets.GOVUK_FRONTEND_VERSION
    css = (assets.GOVUK_DIR / "govuk-frontend.min.css").read_text()
    js = (assets.GOVUK_DIR / "govuk-frontend.min.js").read_text()
    assert f'--govuk-frontend-version:"{assets.GOVUK_FRONTEND_VERSION}"' in css
    assert js.startswith(f'const version="{assets.GOVUK_FRONTEND_VERSION}"')
    # Every font and image the stylesheet asks for is vendored beside it.
    for url in set(re.findall(r"url\(/assets/([^)]+)\)", css)):
        assert (assets.GOVUK_DIR / "assets" / url).is_file(), url


def test_the_pinned_version_is_the_one_the_jinja_macros_support() -> None:
    # govuk-frontend-jinja 4.1.0 is tested against GOV.UK Frontend 6.3.0: change them together.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "govuk-frontend-jinja==4.1.0" in project["dependencies"]
    assert assets.GOVUK_FRONTEND_VERSION == "6.3.0"

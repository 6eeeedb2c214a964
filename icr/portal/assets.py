"""The GOV.UK Frontend release the portal's pages are built with, vendored into
icr/portal/static/govuk-frontend/ by `python tools/vendor_govuk_frontend.py` (from the npm
registry; npm is needed neither to run nor to test the portal).

The version is the one the Jinja port of its macros (`govuk-frontend-jinja`, pinned in
pyproject.toml) is tested against: the macros' HTML and the stylesheet must agree.
"""

from __future__ import annotations

from pathlib import Path

GOVUK_FRONTEND_VERSION = "6.3.0"
# The registry's integrity value for that tarball: the vendoring script refuses any other bytes.
GOVUK_FRONTEND_INTEGRITY = (
    "sha512-cXIQxm5PHCsbic47GXZrVBZhAeeshTLRL6ZBKilLsR6rMCjJuWb7Fruq0VUNMBJFlJk/srsRj/q8d5bM9cgKoA==")
STATIC = Path(__file__).resolve().parent / "static"
GOVUK_DIR = STATIC / "govuk-frontend"
# Served under this path; the stylesheet finds its fonts and images beside it (assets/...).
GOVUK_URL = "/assets/govuk-frontend"


def vendored_version() -> str | None:
    """The version recorded when the assets were vendored; None when they are missing."""
    marker = GOVUK_DIR / "VERSION"
    return marker.read_text().strip() if marker.exists() else None

"""Vendor GOV.UK Frontend's built assets into the portal at the pinned version.

    .venv/bin/python tools/vendor_govuk_frontend.py

Downloads the pinned `govuk-frontend` tarball from the npm registry (the version and its
integrity value are in icr/portal/assets.py), checks its sha512 against the registry's
integrity value, and replaces icr/portal/static/govuk-frontend/ with the package's
dist/govuk/ stylesheet, script, fonts and images, plus a VERSION file. Commit the result; the
suite checks that the vendored version is the pinned one. npm itself is not needed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from icr.portal.assets import GOVUK_DIR, GOVUK_FRONTEND_INTEGRITY, GOVUK_FRONTEND_VERSION  # noqa: E402

REGISTRY = "https://registry.npmjs.org"
# What the pages use from the package's dist/govuk/ folder.
KEEP = ("govuk-frontend.min.css", "govuk-frontend.min.js", "assets/")


def main() -> int:
    url = f"{REGISTRY}/govuk-frontend/-/govuk-frontend-{GOVUK_FRONTEND_VERSION}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    algorithm, _, expected = GOVUK_FRONTEND_INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        print(f"error: {url} does not match the pinned integrity value", file=sys.stderr)
        return 1
    prefix = "package/dist/govuk/"
    if GOVUK_DIR.exists():
        shutil.rmtree(GOVUK_DIR)
    written = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix(prefix)
            if not member.isfile() or not member.name.startswith(prefix) or not name.startswith(KEEP):
                continue
            if name.endswith((".map", ".scss")) or ".." in Path(name).parts:
                continue
            target = GOVUK_DIR / name
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = archive.extractfile(member)
            assert extracted is not None
            target.write_bytes(extracted.read())
            written += 1
    (GOVUK_DIR / "VERSION").write_text(GOVUK_FRONTEND_VERSION + "\n")
    print(f"vendored govuk-frontend {GOVUK_FRONTEND_VERSION}: {written} files in {GOVUK_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

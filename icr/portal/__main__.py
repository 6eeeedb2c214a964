"""`python -m icr.portal`: the provider portal, signing users in with OpenID Connect."""

import asyncio
import os
import sys

from icr.portal.server import _main

if __name__ == "__main__":
    code = asyncio.run(_main())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as worker.py: skip the SDK's fragile interpreter teardown

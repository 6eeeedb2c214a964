"""The codec server: lets the Temporal Web UI show encrypted payloads to the people allowed
to see them, and nobody else.

`POST /encode` and `POST /decode` take and return `{"payloads": [...]}` in protobuf JSON, as
the Web UI sends them. Every request must carry the server's token, either as
`Authorization: Bearer <token>` or as the first path segment (`/<token>/decode`: the Web UI's
codec endpoint setting can carry it, where the UI cannot add a header), and browsers may call
it only from the Web UI's own origin (CORS).

    python -m icr.runtime.codec_server      # reads the engine's settings (ICR_PAYLOAD_KEYS, ICR_CODEC_*)
"""

from __future__ import annotations

import asyncio
import hmac
import os
import sys
from collections.abc import Awaitable, Callable, Iterable

import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from icr.runtime.http import serve, until_stopped

log = structlog.get_logger(__name__)

_ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def codec_app(codec: PayloadCodec, token: str, origins: Iterable[str]) -> web.Application:
    allowed = frozenset(o.rstrip("/") for o in origins)
    expected = token.encode()

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    def authorised(request: web.Request) -> bool:
        presented = request.match_info.get("token", "")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            presented = header[7:].strip()
        return bool(presented) and hmac.compare_digest(presented.encode(), expected)

    def handler(transform: Callable[[list], Awaitable[list]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            if origin is not None and origin.rstrip("/") not in allowed:
                log.warning("codec_request_refused", reason="origin not allowed", origin=origin[:200])
                return web.json_response({"error": "origin not allowed"}, status=403)
            if not authorised(request):
                log.warning("codec_request_refused", reason="missing or wrong token")
                return cors(request, web.json_response({"error": "missing or wrong token"}, status=401))
            try:
                payloads = json_format.Parse(await request.text(), Payloads())
            except json_format.ParseError:
                return cors(request, web.json_response({"error": 'expected {"payloads": [...]}'}, status=400))
            try:
                result = Payloads(payloads=await transform(list(payloads.payloads)))
            except ValueError as err:  # an unknown or retired key, a tampered payload
                return cors(request, web.json_response({"error": str(err)}, status=422))
            return cors(request, web.Response(text=json_format.MessageToJson(result),
                                              content_type="application/json"))
        return handle

    async def preflight(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Origin", "").rstrip("/") not in allowed:
            return web.Response(status=403)
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = _ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        return cors(request, response)

    app = web.Application(client_max_size=4 * 1024 * 1024)
    for prefix in ("", "/{token}"):
        app.router.add_post(f"{prefix}/encode", handler(codec.encode))
        app.router.add_post(f"{prefix}/decode", handler(codec.decode))
        app.router.add_route("OPTIONS", f"{prefix}/encode", preflight)
        app.router.add_route("OPTIONS", f"{prefix}/decode", preflight)
    return app


async def _main() -> int:
    # The edges: settings, and the keys and token as the engine resolves them.
    from icr.runtime.keyring import codec_settings
    from icr.runtime.logs import configure_logging
    from icr.runtime.settings import Settings

    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    # Beside the embedded dev server only where embedded servers are allowed (never in the image).
    embedded = settings.temporal_address is None and settings.embedded_allowed
    codec, token, origins = codec_settings(settings, embedded=embedded)
    if codec is None:
        print("error: payload encryption is off (ICR_PAYLOAD_ENCRYPTION=false): nothing to decode",
              file=sys.stderr)
        return 2
    host = os.environ.get("ICR_CODEC_HOST", "127.0.0.1")
    runner = await serve(codec_app(codec, token, origins), host, settings.codec_server_port)
    log.info("codec_server_running", address=f"http://{host}:{settings.codec_server_port}", origins=sorted(origins))
    await until_stopped()
    await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))

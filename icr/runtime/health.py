"""The worker's health endpoints and its patience with servers that are not there yet.

`GET /livez` answers 200 while the process's event loop runs: an orchestrator restarts a
worker only when it is wedged, never because PostgreSQL or Temporal is away (a restart cannot
bring them back, and repeated restarts turn into a crash-loop back-off that outlasts them).
`GET /readyz` answers 200 only while the worker polls its task queue and can reach its
database and Temporal's frontend, else 503; both answer a small JSON body saying why.

A worker started while a server is unreachable waits for it (reporting not ready) instead of
exiting: `until_connected` retries the connection with a capped backoff until it succeeds or
the worker is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import structlog
from temporalio.service import RPCError

from icr.runtime.keyring import ConfigurationError

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Each readiness check gets this long: a probe must answer well inside the orchestrator's
# own timeout (the manifests give it 5 s).
CHECK_TIMEOUT_SECONDS = 2.0
# What an unreachable server looks like from here: refused or timed-out connections (OSError),
# the Temporal client's "Failed client connect" (RuntimeError), a server answering
# UNAVAILABLE (RPCError), PostgreSQL starting up or shutting down (PostgresError).
UNREACHABLE: tuple[type[BaseException], ...] = (OSError, RuntimeError, RPCError, asyncpg.PostgresError)


@dataclass
class Health:
    """What the probes answer. The worker sets `polling` once it polls and clears it when it
    stops; `checks` are the servers' reachability, asked at each readiness probe."""

    polling: bool = False
    stopping: bool = False
    checks: dict[str, Callable[[], Awaitable[object]]] = field(default_factory=dict)

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        report: dict[str, object] = {"polling": self.polling, "stopping": self.stopping}
        ready = self.polling and not self.stopping
        for name, check in self.checks.items():
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
                report[name] = "reachable"
            except UNREACHABLE as err:  # TimeoutError is an OSError
                report[name] = f"unreachable ({type(err).__name__})"
                ready = False
        report["ready"] = ready
        return ready, report


async def _answer(health: Health, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One HTTP/1.0 request, one answer (probes send nothing more)."""
    try:
        request_line = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1")
        while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
            pass  # headers: nothing in them matters here
        parts = request_line.split()
        body: dict[str, object]
        path = parts[1].split("?")[0] if len(parts) >= 2 else ""
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            status, body = 405, {"error": "only GET /livez and GET /readyz"}
        elif path == "/livez":
            status, body = 200, {"live": True}
        elif path == "/readyz":
            ready, body = await health.readiness()
            status = 200 if ready else 503
        else:
            status, body = 404, {"error": "only GET /livez and GET /readyz"}
        payload = json.dumps(body).encode()
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass  # a probe that hung up or said nothing: nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def health_server(health: Health, host: str, port: int | None) -> AsyncIterator[str | None]:
    """Serves /livez and /readyz on host:port while inside; yields the base URL (None, and
    nothing served, when port is None or 0)."""
    if not port:
        yield None
        return
    server = await asyncio.start_server(lambda r, w: _answer(health, r, w), host, port)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        yield f"http://{shown}:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def until_connected(connect: Callable[[], Awaitable[T]], stop: asyncio.Event, *,
                          first_delay: float = 1.0, max_delay: float = 10.0) -> T | None:
    """`connect()` until it succeeds (its result) or `stop` is set (None). Between attempts it
    waits 1 s, doubling to `max_delay`, and logs each failure by its type, not its text (a
    database URL in an error would carry its password)."""
    delay = first_delay
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            return await connect()
        except UNREACHABLE as err:
            if isinstance(err, ConfigurationError):
                raise  # a setting to fix, not a server to wait for
            log.warning("servers_unreachable", attempt=attempt, error_type=type(err).__name__,
                        retry_in_seconds=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, max_delay)
    return None

"""Serving an aiohttp application (the codec server, the provider portal) until the process is
told to stop, and finding a free port for a server the engine starts itself."""

from __future__ import annotations

import asyncio
import signal
import socket

from aiohttp import web


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port until the returned runner is cleaned up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def free_port(host: str, first: int, setting: str) -> int:
    """The first port from `first` (of 100) free on `host`; refused naming the setting that fixes one."""
    for port in range(first, first + 100):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}..{first + 99}: set {setting}")


async def until_stopped() -> None:
    """Return once the process is sent SIGINT (Ctrl-C) or SIGTERM (docker stop, a pod's end)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

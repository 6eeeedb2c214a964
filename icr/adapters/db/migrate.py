"""Numbered, append-only SQL migrations, applied in order, each once, in its own transaction."""

from __future__ import annotations

import re
from importlib import resources

import structlog

from icr.adapters.db import AnyConnection

log = structlog.get_logger(__name__)

_NAME = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")
# Any fixed number: serialises concurrent migrators (several workers starting at once).
_LOCK_KEY = 0x1C2_0001


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL), in version order."""
    found = []
    for entry in resources.files("icr.adapters.db").joinpath("migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


async def migrate(conn: AnyConnection) -> list[int]:
    """Apply what is missing; returns the versions applied now."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied_now.append(version)
            log.info("migration_applied", version=version, name=name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now

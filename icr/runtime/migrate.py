"""`python -m icr.runtime.migrate`: brings the engine's database (DATABASE_URL) up to date and
exits, for a deployment's migration Job that runs before new workers start. Workers and the
command line apply the same migrations at start-up (serialised by an advisory lock), so
running it twice, or beside them, is harmless."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import structlog

from icr.adapters.db.migrate import migrate
from icr.runtime.logs import configure_logging
from icr.runtime.settings import Settings

log = structlog.get_logger("migrate")


async def run(settings: Settings) -> int:
    if settings.database_url is None:
        print("error: DATABASE_URL is not set: the migration Job migrates a real database only",
              file=sys.stderr)
        return 2
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    log.info("database_migrated", applied=applied)
    return 0


def main() -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    return asyncio.run(run(settings))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

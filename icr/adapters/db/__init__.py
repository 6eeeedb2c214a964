"""The engine's PostgreSQL schema (migrations) and SQL (the Store)."""

from typing import TypeAlias

import asyncpg

# A connection as the helpers take it: a plain one, or one acquired from a pool (a proxy
# that forwards to its connection, but is not a Connection subclass).
AnyConnection: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

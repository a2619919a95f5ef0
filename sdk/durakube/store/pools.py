"""Connections to Postgres: the asyncpg pool every store function takes.

`connect(dsn)` is called once per process (the worker at start, the operator at
start-up, kept in kopf's memo). Nothing here relies on session state surviving
between transactions (no SET, no session advisory locks, no LISTEN), so a
PgBouncer in transaction mode may sit in front; pass `statement_cache_size=0`
when it does.

`connection(db)` and `transaction(db)` let every public store function accept
either a pool or a connection already in a transaction, so callers can compose
several store calls in one transaction.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

# A pool or a connection: what public store functions accept.
Database = Any

# Errors worth retrying a connection after: Postgres restarting, or not listening yet.
TRANSIENT_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


# Errors that mean the connection to Postgres was lost (Postgres restarting, an
# administrator ending sessions, the network): the platform's trouble, never a task's.
# asyncpg reports a session the server ended while idle as an InternalClientError
# ("cannot switch to state ...") on the next statement: the connection is as good as lost.
CONNECTION_LOST_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError)


async def discard(pool: Any, connection: Any) -> None:
    """Gives back to `pool` a connection that lost its server: closed at once, so the pool
    opens a new one instead of resetting this one (which would fail on the dead session)."""
    # Either may find the pool took it back already, when it saw the server go.
    with contextlib.suppress(asyncpg.InterfaceError, asyncpg.InternalClientError):
        connection.terminate()
        await pool.release(connection)


def encode_json(value: Any) -> str:
    # NaN and Infinity are refused here rather than by Postgres, with a clearer error.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


async def set_json_codecs(conn: Any) -> None:
    """Python values in and out of json/jsonb columns (dicts in, dicts out)."""
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(type_name, encoder=encode_json, decoder=json.loads,
                                  schema="pg_catalog")


async def connect(dsn: str, *, min_size: int = 1, max_size: int = 10,
                  statement_cache_size: int | None = None,
                  init: Callable[[Any], Awaitable[None]] | None = None, **kwargs: Any) -> Any:
    """An asyncpg pool with the JSON codecs installed on every connection, and `init`
    run on each new connection after them.

    `statement_cache_size=0` makes it safe behind PgBouncer in transaction mode
    (at the price of one more round trip per statement).
    """
    if statement_cache_size is not None:
        kwargs["statement_cache_size"] = statement_cache_size
    kwargs.setdefault("reset", skip_session_reset)

    async def initialize(conn: Any) -> None:
        await set_json_codecs(conn)
        if init is not None:
            await init(conn)

    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                     init=initialize, **kwargs)


async def skip_session_reset(conn: Any) -> None:
    """Returns a connection to the pool without asyncpg's reset query.

    asyncpg's default runs `RESET ALL; UNLISTEN *; ...` on every release: a round
    trip per acquire, which would double the cost of a step checkpoint. Durakube
    keeps no session state (the PgBouncer rule above), so there is nothing to
    reset; asyncpg still rolls back a transaction left open before calling this.
    """


def is_pool(db: Database) -> bool:
    """Whether `db` is a pool (else a single connection, usable by one caller at a time)."""
    return isinstance(db, asyncpg.Pool)


@asynccontextmanager
async def connection(db: Database) -> AsyncIterator[Any]:
    """A connection from `db`: acquired from a pool, or `db` itself."""
    if is_pool(db):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


@asynccontextmanager
async def transaction(db: Database) -> AsyncIterator[Any]:
    """A connection inside a transaction (a savepoint when `db` already is in one)."""
    async with connection(db) as conn, conn.transaction():
        yield conn

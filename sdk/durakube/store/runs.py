"""Runs: one row per TaskRun, holding its payload, state, output and error.

The operator registers a run (`register_run`) before it starts the first pod and
moves its `status` (`set_run_status`); the worker loads it (`load_run`), and the
outcome of each attempt updates `state`, `output` and `error` (see `attempts`).
While an attempt runs, the run's latest state is that of its latest step (`steps`).
Functions take a pool or a connection; none commits on behalf of a caller's
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from durakube.store import attempts, pools

# Phases after which a run changes no more (finished_at is set on entering one).
TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Canceled", "TimedOut", "Expired"})


@dataclass(frozen=True)
class Run:
    run_id: str
    namespace: str
    name: str
    task_id: str
    queue: str | None
    payload: dict[str, Any]
    status: str
    attempt: int
    state: dict[str, Any]
    output: Any
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_record(cls, record: Any) -> Run:
        return cls(**dict(record))


async def register_run(db: pools.Database, *, run_id: str, namespace: str, name: str,
                       task_id: str, payload: dict[str, Any], queue: str | None = None,
                       status: str = "Pending") -> Run:
    """Creates the run's row, or returns the existing one unchanged (idempotent)."""
    async with pools.transaction(db) as conn:
        return await register_run_txn(conn, run_id, namespace, name, task_id, payload,
                                      queue, status)


async def register_run_txn(conn: pools.Database, run_id: str, namespace: str, name: str,
                           task_id: str, payload: dict[str, Any], queue: str | None = None,
                           status: str = "Pending") -> Run:
    """`register_run` inside the caller's transaction."""
    record = await conn.fetchrow("""
        INSERT INTO durakube.runs (run_id, namespace, name, task_id, queue, payload, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (run_id) DO NOTHING
        RETURNING *""", run_id, namespace, name, task_id, queue, payload, status)
    if record is None:
        # Registered before (a handler running again): the first registration stands.
        record = await conn.fetchrow("SELECT * FROM durakube.runs WHERE run_id = $1", run_id)
    return Run.from_record(record)


async def register_debounce_txn(conn: pools.Database, run_id: str, namespace: str, task: str,
                                key: str, created_at: datetime, created_version: int | None) -> None:
    """Records the run among those with its debounce key, in the order of its creation
    (idempotent)."""
    await conn.execute("""
        INSERT INTO durakube.run_debounce (run_id, namespace, task, key, created_at, created_version)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (run_id) DO NOTHING""", run_id, namespace, task, key, created_at, created_version)


async def newer_debounced_run(db: pools.Database, run_id: str) -> str | None:
    """The name of the newest run created after `run_id` with the same Task and debounce
    key (None: it is the newest, or gave no key)."""
    async with pools.connection(db) as conn:
        name = await conn.fetchval("""
            SELECT r.name FROM durakube.run_debounce mine
            JOIN durakube.run_debounce later
              ON (later.namespace, later.task, later.key) = (mine.namespace, mine.task, mine.key)
             AND (later.created_at, coalesce(later.created_version, 0), later.registered_at)
                 > (mine.created_at, coalesce(mine.created_version, 0), mine.registered_at)
            JOIN durakube.runs r ON r.run_id = later.run_id
            WHERE mine.run_id = $1
            ORDER BY later.created_at DESC, later.created_version DESC NULLS LAST,
                     later.registered_at DESC
            LIMIT 1""", run_id)
    return None if name is None else str(name)


async def register_tags_txn(conn: pools.Database, run_id: str, tags: list[str]) -> None:
    """Records the run's tags (idempotent)."""
    await conn.execute("""
        INSERT INTO durakube.run_tags (run_id, tag) SELECT $1, unnest($2::text[])
        ON CONFLICT DO NOTHING""", run_id, tags)


async def load_run(db: pools.Database, run_id: str) -> Run | None:
    """The run's row, or None when no run has this id."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow("SELECT * FROM durakube.runs WHERE run_id = $1", run_id)
    return None if record is None else Run.from_record(record)


async def set_run_status(db: pools.Database, run_id: str, status: str) -> Run | None:
    """Moves the run to `status` (stamping finished_at on a terminal one); None if absent."""
    async with pools.transaction(db) as conn:
        return await _set_run_status_txn(conn, run_id, status)


async def _set_run_status_txn(conn: pools.Database, run_id: str, status: str) -> Run | None:
    if status in TERMINAL_STATUSES:
        await attempts.fence_txn(conn, run_id)
    record = await conn.fetchrow("""
        UPDATE durakube.runs
        SET status = $2, updated_at = now(),
            finished_at = CASE WHEN $3 THEN coalesce(finished_at, now()) END
        WHERE run_id = $1
        RETURNING *""", run_id, status, status in TERMINAL_STATUSES)
    if status in TERMINAL_STATUSES:
        # A finished run has no live attempt: whatever credential is left is revoked.
        await conn.execute("""
            UPDATE durakube.attempts SET secret_hash = NULL
            WHERE run_id = $1 AND secret_hash IS NOT NULL""", run_id)
    return None if record is None else Run.from_record(record)

"""Run history: the client's reads of Postgres, and their merge with the live TaskRuns.

The store's modules serve the operator and the worker, keyed by run id; the client
also looks runs up by (namespace, name) and lists them, which the store has no
function for, so that SQL lives here (read-only, over `durakube.runs`, `steps` and
`attempts`). `merge_runs` puts live TaskRuns (first, newest first) and history rows
of runs whose TaskRun is gone into one list, as `AsyncClient.list` reports it.
`open_pool` turns every connection failure into `failures.DatabaseUnreachable`
naming host:port/database, never the password.

A run's phase in history: `runs.status` when it is final (the operator mirrors each
phase there); otherwise the outcome of its latest attempt, which covers rows of
operators that did not mirror phases yet; else `runs.status` as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from durakube.client import failures, handles, manifests
from durakube.store import pools

CONNECT_TIMEOUT_SECONDS = 10.0
# The most history rows one listing reads when it filters them by phase or has no limit.
HISTORY_ROWS_READ = 10_000

HISTORY_COLUMNS = """
    r.run_id, r.namespace, r.name, r.task_id, r.queue, r.attempt, r.output, r.error,
    r.created_at, r.finished_at,
    CASE WHEN r.status IN ('Succeeded', 'Failed', 'Canceled', 'TimedOut', 'Expired')
         THEN r.status
         ELSE coalesce((SELECT CASE a.outcome WHEN 'succeeded' THEN 'Succeeded'
                                              WHEN 'failed' THEN 'Failed' END
                        FROM durakube.attempts a WHERE a.run_id = r.run_id
                        ORDER BY a.attempt DESC LIMIT 1), r.status)
    END AS phase,
    (SELECT count(*) FROM durakube.steps s WHERE s.run_id = r.run_id) AS completed_steps,
    (SELECT s.name FROM durakube.steps s WHERE s.run_id = r.run_id
     ORDER BY s.seq DESC LIMIT 1) AS last_step,
    (SELECT m.metadata FROM durakube.run_metadata m WHERE m.run_id = r.run_id) AS metadata,
    ARRAY(SELECT t.tag FROM durakube.run_tags t WHERE t.run_id = r.run_id ORDER BY t.tag) AS tags
"""


def describe_target(dsn: str) -> str:
    """host:port/database of a DSN, without user or password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
        database = parts.path.lstrip("/") or "(default database)"
    except ValueError:
        return "(an unparsable DSN)"
    return f"{host}:{port}/{database}"


async def open_pool(dsn: str, *, max_size: int = 4) -> Any:
    """An asyncpg pool with the store's JSON codecs; raises `DatabaseUnreachable`."""
    target = describe_target(dsn)
    try:
        return await asyncio.wait_for(pools.connect(dsn, min_size=1, max_size=max_size),
                                      CONNECT_TIMEOUT_SECONDS)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        raise failures.DatabaseUnreachable(
            target, f"no answer within {CONNECT_TIMEOUT_SECONDS:g}s") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The error's text may quote the DSN; keep its class and a password-free message.
        detail = str(error)
        password = urlsplit(dsn).password
        if password:
            detail = detail.replace(password, "***")
        raise failures.DatabaseUnreachable(target, f"{type(error).__name__}: {detail}") from None


async def find_run(db: pools.Database, namespace: str, run: str) -> Any | None:
    """The newest history row whose name (in `namespace`) or run id is `run`."""
    async with pools.connection(db) as conn:
        return await conn.fetchrow(f"""
            SELECT {HISTORY_COLUMNS} FROM durakube.runs r
            WHERE (r.namespace = $1 AND r.name = $2) OR r.run_id = $2
            ORDER BY r.created_at DESC LIMIT 1""", namespace, run)


async def list_runs(db: pools.Database, namespace: str, *, task: str | None = None,
                    queue: str | None = None, exclude: list[str] | None = None,
                    tags: list[str] | None = None, limit: int = 100) -> list[Any]:
    """History rows of `namespace`, newest first, without the run ids in `exclude`, with
    every one of `tags`.

    `queue` is the queue's name as the TaskRun names it (rows store "<ns>/<queue>").
    Phases are filtered by the caller (the phase is derived, see the module notes).
    """
    async with pools.connection(db) as conn:
        return list(await conn.fetch(f"""
            SELECT {HISTORY_COLUMNS} FROM durakube.runs r
            WHERE r.namespace = $1
              AND ($2::text IS NULL OR r.task_id = $2)
              AND ($3::text IS NULL OR r.queue = $1 || '/' || $3)
              AND NOT (r.run_id = ANY($4::text[]))
              AND (SELECT count(*) FROM durakube.run_tags t
                   WHERE t.run_id = r.run_id AND t.tag = ANY($6::text[])) = cardinality($6::text[])
            ORDER BY r.created_at DESC LIMIT $5""",
            namespace, task, queue, exclude or [], limit, tags or []))


async def read_output(db: pools.Database, run_id: str) -> tuple[bool, Any]:
    """(found, output): the run's full output, from `runs.output` or its succeeded attempt."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow("""
            SELECT r.output AS output,
                   (SELECT a.output FROM durakube.attempts a
                    WHERE a.run_id = r.run_id AND a.outcome = 'succeeded'
                    ORDER BY a.attempt DESC LIMIT 1) AS attempt_output,
                   EXISTS (SELECT 1 FROM durakube.attempts a
                           WHERE a.run_id = r.run_id AND a.outcome = 'succeeded') AS succeeded
            FROM durakube.runs r WHERE r.run_id = $1""", run_id)
    if record is None or not record["succeeded"]:
        return False, None
    output = record["output"]
    return True, output if output is not None else record["attempt_output"]


async def read_payload(db: pools.Database, run_id: str) -> Any:
    """The payload the run was registered with (references already resolved)."""
    async with pools.connection(db) as conn:
        return await conn.fetchval("SELECT payload FROM durakube.runs WHERE run_id = $1", run_id)


async def merge_runs(open_db: Callable[[], Awaitable[pools.Database]] | None, namespace: str,
                     live_items: Iterable[dict[str, Any]], *, task: str | None = None,
                     queue: str | None = None, phase: str | None = None,
                     tags: list[str] | None = None,
                     limit: int | None = 100) -> list[handles.RunSummary]:
    """Live TaskRuns (`live_items`, filtered here) newest first, then history, newest first.

    `task` is the task id; `tags` must all be on a history row (live items were selected
    by them already). History fills what `limit` leaves, read from the pool `open_db`
    gives (opened only when needed); `open_db` None (no database) lists live runs only.
    """
    items = list(live_items)
    task_name = manifests.task_object_name(task) if task is not None else None
    live = [handles.summarize_taskrun(item) for item in items]
    live = [s for s in live
            if (task_name is None or s.task == task_name)
            and (queue is None or s.queue == queue)
            and (phase is None or _same_phase(s.phase, phase))]
    live.sort(key=lambda s: (s.created_at is not None, s.created_at), reverse=True)
    room = None if limit is None else limit - len(live)
    if open_db is None or (room is not None and room <= 0):
        return live if limit is None else live[:limit]
    db = await open_db()
    known = [str(item["metadata"]["uid"]) for item in items]
    # Phases are derived in SQL but filtered here: read enough rows to fill the room.
    rows = await list_runs(db, namespace, task=task, queue=queue, exclude=known, tags=tags,
                           limit=HISTORY_ROWS_READ if phase or room is None else room)
    old = [handles.summarize_history(row) for row in rows]
    if phase is not None:
        old = [s for s in old if _same_phase(s.phase, phase)]
    merged = live + old
    return merged if limit is None else merged[:limit]


def _same_phase(seen: str | None, wanted: str) -> bool:
    return (seen or "").lower() == wanted.lower()

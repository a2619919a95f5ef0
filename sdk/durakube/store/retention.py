"""Retention: when finished TaskRuns and their runs' history expire, and the clean-up.

The operator records, when a run reaches its final phase (`record_finish`), when its
TaskRun expires (finished + its TTL; NULL keeps it) and when its history may go
(finished + the history retention, never before the TaskRun; NULL keeps it). Its
retention loop then deletes expired TaskRuns (`taskruns_due`, then `mark_taskruns_gone`)
and, once a run's TaskRun is gone, removes the run's rows from every table that has
them (`purge_history`), and history that belongs to no run by age (`purge_events`,
`purge_payloads`, `purge_queue_keys`). A TaskRun deleted by anyone else is marked gone
too (`mark_taskruns_gone`, from the operator's watch).

Every scan is bounded (`limit`) and walks an index of migration 12, so a pass costs
the same with 100 or 10 million rows. The per-run tables are discovered from the
catalog (every table of the schema with a `run_id` column, and `child_runs` by its
parent), so a table added later is emptied with the others without a change here.

Functions take a pool or a connection; none commits on behalf of a caller's
transaction. Decides nothing: the TTLs and retention periods come from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from durakube.store import pools, schema

# Columns naming the run a row belongs to; `child_runs` names its parent.
RUN_COLUMNS = ("run_id", "parent_run_id")


@dataclass(frozen=True)
class DueTaskRun:
    """A TaskRun whose TTL has run out: deleted only if its uid is still `run_id`."""

    run_id: str
    namespace: str
    name: str


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


async def record_finish(db: pools.Database, *, run_id: str, namespace: str, name: str,
                        ttl_seconds: float | None, history_seconds: float | None,
                        finished_at: datetime | None = None, pod_name: str | None = None,
                        pod_seconds: float | None = None) -> None:
    """Records that the run finished at `finished_at` (default: now), with its TaskRun's
    TTL and its history's retention (None: kept), and when its last attempt's pod
    `pod_name` goes (`pod_seconds` after; None: with the TaskRun). The first record
    stands: a repeat changes nothing."""
    async with pools.connection(db) as conn:
        await conn.execute("""
            WITH finish AS (SELECT coalesce($6::timestamptz, now()) AS at)
            INSERT INTO durakube.run_retention
                (run_id, namespace, name, finished_at, taskrun_expires_at, history_expires_at,
                 pod_name, pod_expires_at)
            SELECT $1, $2, $3, at, at + $4::interval,
                   CASE WHEN $5::interval IS NOT NULL
                        THEN greatest(at + $5::interval, at + $4::interval) END,
                   $7::text, CASE WHEN $7::text IS NOT NULL THEN at + $8::interval END
            FROM finish
            ON CONFLICT (run_id) DO NOTHING""",
            run_id, namespace, name, _seconds(ttl_seconds), _seconds(history_seconds), finished_at,
            pod_name, _seconds(pod_seconds))


@dataclass(frozen=True)
class DuePod:
    """The last attempt's pod of a finished run, due for deletion if `run_id` owns it."""

    run_id: str
    namespace: str
    pod_name: str


async def pods_due(db: pools.Database, limit: int) -> list[DuePod]:
    """Pods of finished runs' last attempts whose time is up, soonest first."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT run_id, namespace, pod_name FROM durakube.run_retention
            WHERE pod_expires_at <= now() ORDER BY pod_expires_at LIMIT $1""", limit)
    return [DuePod(**dict(record)) for record in records]


async def mark_pods_gone(db: pools.Database, run_ids: list[str]) -> None:
    async with pools.connection(db) as conn:
        await conn.execute("""
            UPDATE durakube.run_retention SET pod_expires_at = NULL
            WHERE run_id = ANY($1::text[])""", run_ids)


async def mark_taskruns_gone(db: pools.Database, gone: list[DueTaskRun],
                             history_seconds: float | None) -> None:
    """Records that these runs' TaskRuns are gone (deleted by the loop or by anyone);
    a run that never finished gets its history's expiry from now."""
    if not gone:
        return
    async with pools.connection(db) as conn:
        await conn.execute("""
            INSERT INTO durakube.run_retention AS r
                (run_id, namespace, name, taskrun_gone_at, history_expires_at)
            SELECT run_id, namespace, name, now(), now() + $4::interval
            FROM unnest($1::text[], $2::text[], $3::text[]) AS t (run_id, namespace, name)
            ON CONFLICT (run_id) DO UPDATE SET
                taskrun_gone_at = coalesce(r.taskrun_gone_at, now()),
                history_expires_at = CASE WHEN r.finished_at IS NULL
                                          THEN EXCLUDED.history_expires_at
                                          ELSE r.history_expires_at END""",
            [g.run_id for g in gone], [g.namespace for g in gone], [g.name for g in gone],
            _seconds(history_seconds))


async def taskruns_due(db: pools.Database, limit: int) -> list[DueTaskRun]:
    """TaskRuns whose TTL has run out and that are not known gone, soonest first."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT run_id, namespace, name FROM durakube.run_retention
            WHERE taskrun_expires_at <= now() AND taskrun_gone_at IS NULL
            ORDER BY taskrun_expires_at LIMIT $1""", limit)
    return [DueTaskRun(**dict(record)) for record in records]


async def next_expiry(db: pools.Database) -> datetime | None:
    """When the next TaskRun or last attempt's pod expires (None: none will)."""
    async with pools.connection(db) as conn:
        value: datetime | None = await conn.fetchval("""
            SELECT least(
                (SELECT min(taskrun_expires_at) FROM durakube.run_retention
                 WHERE taskrun_expires_at IS NOT NULL AND taskrun_gone_at IS NULL),
                (SELECT min(pod_expires_at) FROM durakube.run_retention
                 WHERE pod_expires_at IS NOT NULL))""")
        return value


async def per_run_tables(db: pools.Database) -> list[tuple[str, str]]:
    """(table, column) of every table of the schema holding rows of a run, but `runs`."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT c.relname AS table_name, a.attname AS column_name
            FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
            WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0
              AND NOT a.attisdropped AND a.attname = ANY($2::text[]) AND c.relname <> 'runs'
            ORDER BY c.relname""", schema.SCHEMA, list(RUN_COLUMNS))
    return [(record["table_name"], record["column_name"]) for record in records]


async def purge_history(db: pools.Database, limit: int) -> list[str]:
    """Removes, in one transaction, every row of up to `limit` runs whose history has
    expired and whose TaskRun is gone; returns their run ids."""
    async with pools.transaction(db) as conn:
        run_ids = [record["run_id"] for record in await conn.fetch("""
            SELECT run_id FROM durakube.run_retention
            WHERE history_expires_at <= now() AND taskrun_gone_at IS NOT NULL
            ORDER BY history_expires_at LIMIT $1
            FOR UPDATE SKIP LOCKED""", limit)]
        if not run_ids:
            return []
        # Rows referring to a run first, the run last (every foreign key cascades, but
        # steps have none since migration 10, and a later table may have none either).
        for table, column in await per_run_tables(conn):
            if table == "run_retention":
                continue
            await conn.execute(
                f'DELETE FROM {schema.SCHEMA}."{table}" WHERE "{column}" = ANY($1::text[])',
                run_ids)
        await conn.execute("DELETE FROM durakube.runs WHERE run_id = ANY($1::text[])", run_ids)
        await conn.execute("DELETE FROM durakube.run_retention WHERE run_id = ANY($1::text[])",
                           run_ids)
    return run_ids


async def _purge_older(db: pools.Database, table: str, key: str, column: str,
                       cutoff: datetime, limit: int) -> int:
    async with pools.connection(db) as conn:
        status = await conn.execute(f"""
            DELETE FROM durakube.{table} WHERE {key} IN (
                SELECT {key} FROM durakube.{table} WHERE {column} < $1
                ORDER BY {column} LIMIT $2)""", cutoff, limit)
    return int(status.split()[-1])


async def purge_events(db: pools.Database, cutoff: datetime, limit: int) -> int:
    """Removes up to `limit` events that expired before `cutoff` (delivered, consumed or
    never taken: none can be taken any more); returns how many."""
    return await _purge_older(db, "events", "event_id", "expires_at", cutoff, limit)


async def purge_payloads(db: pools.Database, cutoff: datetime, limit: int) -> int:
    """Removes up to `limit` payloads stored by reference before `cutoff`: a run copies
    its payload into its own row when it is registered, at its first pass."""
    return await _purge_older(db, "payloads", "ref", "created_at", cutoff, limit)


async def purge_queue_keys(db: pools.Database, cutoff: datetime, limit: int) -> int:
    """Forgets up to `limit` concurrency keys last served before `cutoff` (a key not seen
    since is served as a new one)."""
    async with pools.connection(db) as conn:
        status = await conn.execute("""
            DELETE FROM durakube.queue_keys WHERE (queue, concurrency_key) IN (
                SELECT queue, concurrency_key FROM durakube.queue_keys
                WHERE last_admitted_at < $1 ORDER BY last_admitted_at LIMIT $2)""",
            cutoff, limit)
    return int(status.split()[-1])

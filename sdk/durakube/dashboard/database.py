"""The dashboard's reads of Postgres that neither the client nor the store offers.

Waits with their start times, the per-key counts of the queue ledger, and each
task's recent success rate and durations. Read-only SQL over the `durakube`
schema; every function is scoped by the caller to namespaces whose TaskRuns the
user could list through the Kubernetes API (`reading` asks the API first), since
the database itself knows nothing of RBAC.

A waitpoint token is a credential: `open_token` hands it to `acting` (which puts it
in a TaskEvent on the user's behalf) and nothing else; no page shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from durakube.dashboard import timelines
from durakube.store import pools, waitpoints

# The window of runs the tasks page's success rates and durations are computed over.
TASK_STATS_WINDOW = timedelta(days=7)


async def load_waits(db: pools.Database, run_id: str) -> list[timelines.WaitSpan]:
    """The run's waits, in sequence order."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT seq, kind, key, created_at, completed_at, timed_out
            FROM durakube.waitpoints WHERE run_id = $1 ORDER BY seq""", run_id)
    return [timelines.WaitSpan(seq=r["seq"], kind=r["kind"], key=r["key"],
                               started_at=r["created_at"], ended_at=r["completed_at"],
                               timed_out=bool(r["timed_out"])) for r in records]


async def open_token(db: pools.Database, run_id: str) -> str | None:
    """The token of the run's open token wait, if it has one (never shown on a page)."""
    async with pools.connection(db) as conn:
        token = await conn.fetchval("""
            SELECT token FROM durakube.waitpoints
            WHERE run_id = $1 AND kind = 'token' AND completed_at IS NULL
            ORDER BY seq DESC LIMIT 1""", run_id)
    return None if token is None else str(token)


def token_prefix(token: str) -> str:
    return waitpoints.shown_token(token)


@dataclass(frozen=True)
class KeyLoad:
    """One concurrency key of one queue: its slots in use and its line."""

    queue: str  # "<namespace>/<queue>"
    key: str  # "" for runs without a key
    running: int
    waiting: int
    oldest_waiting_since: datetime | None
    suspended: int = 0  # counted by the caller, from the TaskRuns (the ledger has no keys)


@dataclass(frozen=True)
class QueueLoad:
    queue: str  # "<namespace>/<queue>"
    limit: int  # 0 when paused
    limit_per_key: int | None
    paused: bool
    defined: bool  # False: no TaskQueue defines it (the default limit applies)
    running: int
    waiting: int
    suspended: int
    oldest_waiting_since: datetime | None


async def load_queues(db: pools.Database, namespaces: Sequence[str]) -> list[QueueLoad]:
    """The ledger's queues of `namespaces`, with their counts and oldest waiting run."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT q.queue, q.concurrency_limit, q.concurrency_limit_per_key, q.paused, q.defined,
                   (SELECT count(*) FROM durakube.queue_slots s WHERE s.queue = q.queue) AS running,
                   (SELECT count(*) FROM durakube.queue_waiting w WHERE w.queue = q.queue) AS waiting,
                   (SELECT min(w.enqueued_at) FROM durakube.queue_waiting w
                    WHERE w.queue = q.queue) AS oldest,
                   (SELECT count(*) FROM durakube.runs r
                    WHERE r.queue = q.queue AND r.status = 'Suspended') AS suspended
            FROM durakube.queues q
            WHERE split_part(q.queue, '/', 1) = ANY($1::text[])
            ORDER BY q.queue""", list(namespaces))
    return [QueueLoad(queue=r["queue"], limit=0 if r["paused"] else int(r["concurrency_limit"]),
                      limit_per_key=r["concurrency_limit_per_key"], paused=bool(r["paused"]),
                      defined=bool(r["defined"]), running=int(r["running"]),
                      waiting=int(r["waiting"]), suspended=int(r["suspended"]),
                      oldest_waiting_since=r["oldest"]) for r in records]


async def load_key_loads(db: pools.Database, namespaces: Sequence[str]) -> list[KeyLoad]:
    """Slots in use and runs waiting per (queue, concurrency key) of `namespaces`."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            WITH held AS (
                SELECT queue, coalesce(concurrency_key, '') AS key, count(*) AS running
                FROM durakube.queue_slots GROUP BY 1, 2
            ), line AS (
                SELECT queue, concurrency_key AS key, count(*) AS waiting,
                       min(enqueued_at) AS oldest
                FROM durakube.queue_waiting GROUP BY 1, 2
            )
            SELECT coalesce(held.queue, line.queue) AS queue,
                   coalesce(held.key, line.key) AS key,
                   coalesce(held.running, 0) AS running, coalesce(line.waiting, 0) AS waiting,
                   line.oldest
            FROM held FULL JOIN line ON held.queue = line.queue AND held.key = line.key
            WHERE split_part(coalesce(held.queue, line.queue), '/', 1) = ANY($1::text[])
            ORDER BY 1, 2""", list(namespaces))
    return [KeyLoad(queue=r["queue"], key=r["key"], running=int(r["running"]),
                    waiting=int(r["waiting"]), oldest_waiting_since=r["oldest"])
            for r in records]


async def load_run_queues(db: pools.Database, run_ids: Sequence[str]) -> dict[str, str]:
    """Run id -> the queue it uses ("<namespace>/<queue>", resolved by the operator)."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT run_id, queue FROM durakube.runs
            WHERE run_id = ANY($1::text[]) AND queue IS NOT NULL""", list(run_ids))
    return {r["run_id"]: r["queue"] for r in records}


@dataclass(frozen=True)
class TaskStats:
    namespace: str
    task_id: str
    finished: int
    succeeded: int
    active: int
    median_seconds: float | None
    p95_seconds: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.finished == 0 else self.succeeded / self.finished


async def load_task_stats(db: pools.Database, namespaces: Sequence[str]) -> list[TaskStats]:
    """Per task of `namespaces`: runs of the last `TASK_STATS_WINDOW`, how many succeeded,
    and the median and 95th percentile of finished runs' durations (created to finished)."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT namespace, task_id,
                   count(*) FILTER (WHERE finished_at IS NOT NULL) AS finished,
                   count(*) FILTER (WHERE status = 'Succeeded') AS succeeded,
                   count(*) FILTER (WHERE finished_at IS NULL) AS active,
                   percentile_cont(0.5) WITHIN GROUP (
                       ORDER BY extract(epoch FROM finished_at - created_at))
                       FILTER (WHERE finished_at IS NOT NULL) AS median,
                   percentile_cont(0.95) WITHIN GROUP (
                       ORDER BY extract(epoch FROM finished_at - created_at))
                       FILTER (WHERE finished_at IS NOT NULL) AS p95
            FROM durakube.runs
            WHERE namespace = ANY($1::text[]) AND created_at > now() - $2::interval
            GROUP BY namespace, task_id""", list(namespaces), TASK_STATS_WINDOW)
    return [TaskStats(namespace=r["namespace"], task_id=r["task_id"], finished=int(r["finished"]),
                      succeeded=int(r["succeeded"]), active=int(r["active"]),
                      median_seconds=None if r["median"] is None else float(r["median"]),
                      p95_seconds=None if r["p95"] is None else float(r["p95"]))
            for r in records]

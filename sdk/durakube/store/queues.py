"""Queues: their limits, the runs waiting in them, and the slot ledger.

A run waits in `queue_waiting` until the operator's admission pass grants it a row
in `queue_slots` (or takes one as it joins, when nobody waits and there is room:
`join_queue`); it holds that slot only while its attempt's pod exists. A grant
happens in the same transaction that counts the slots in use, under a row lock on
the queue (`lock_queue`), so a limit holds across operator restarts and even with
two operators briefly active: the ledger, not any memory, is the truth.

The choice of which waiting runs to admit is the operator's (`admitting`); this
module only reads and writes rows. Functions ending in `_txn` expect a connection
inside the caller's transaction; the others open their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from durakube.store import pools


@dataclass(frozen=True)
class Queue:
    queue: str  # "<namespace>/<name>"
    concurrency_limit: int
    concurrency_limit_per_key: int | None
    paused: bool
    defined: bool
    # Rate limits: at most `*_starts` admissions in any `*_seconds` (None: no limit).
    rate_starts: int | None = None
    rate_seconds: float | None = None
    key_rate_starts: int | None = None
    key_rate_seconds: float | None = None

    @property
    def rate_limited(self) -> bool:
        return self.rate_starts is not None or self.key_rate_starts is not None


@dataclass(frozen=True)
class RateRoom:
    """How many more runs the queue's rate limits admit now: in all (None: no limit) and
    per concurrency key (`key_starts` minus each key's admissions in its window)."""

    queue: int | None = None
    key_starts: int | None = None
    per_key: dict[str, int] | None = None

    def for_key(self, key: str) -> int | None:
        if self.key_starts is None or key == "":
            return None
        return self.key_starts - (self.per_key or {}).get(key, 0)


@dataclass(frozen=True)
class Waiting:
    run_id: str
    namespace: str
    name: str
    concurrency_key: str  # "" when the run has none
    priority: int
    created_at: datetime
    enqueued_at: datetime


@dataclass(frozen=True)
class Slot:
    run_id: str
    queue: str
    namespace: str | None
    name: str | None
    concurrency_key: str
    granted_at: datetime


async def define_queue(db: pools.Database, queue: str, *, concurrency_limit: int,
                       concurrency_limit_per_key: int | None, paused: bool,
                       rate: tuple[int, float] | None = None,
                       key_rate: tuple[int, float] | None = None) -> None:
    """Records a TaskQueue's settings (from its custom resource); `rate` and `key_rate`
    are (starts, seconds)."""
    rate_starts, rate_seconds = rate or (None, None)
    key_starts, key_seconds = key_rate or (None, None)
    async with pools.connection(db) as conn:
        await conn.execute("""
            INSERT INTO durakube.queues (queue, concurrency_limit, concurrency_limit_per_key,
                                         paused, defined, updated_at, rate_starts, rate_seconds,
                                         key_rate_starts, key_rate_seconds)
            VALUES ($1, $2, $3, $4, true, now(), $5, $6, $7, $8)
            ON CONFLICT (queue) DO UPDATE SET
                concurrency_limit = EXCLUDED.concurrency_limit,
                concurrency_limit_per_key = EXCLUDED.concurrency_limit_per_key,
                paused = EXCLUDED.paused, defined = true, updated_at = now(),
                rate_starts = EXCLUDED.rate_starts, rate_seconds = EXCLUDED.rate_seconds,
                key_rate_starts = EXCLUDED.key_rate_starts,
                key_rate_seconds = EXCLUDED.key_rate_seconds""",
            queue, concurrency_limit, concurrency_limit_per_key, paused, rate_starts, rate_seconds,
            key_starts, key_seconds)


async def undefine_queue(db: pools.Database, queue: str, default_limit: int) -> None:
    """The TaskQueue was deleted: its runs fall back to the default limit."""
    async with pools.connection(db) as conn:
        await conn.execute("""
            UPDATE durakube.queues SET concurrency_limit = $2, concurrency_limit_per_key = NULL,
                                       paused = false, defined = false, updated_at = now(),
                                       rate_starts = NULL, rate_seconds = NULL,
                                       key_rate_starts = NULL, key_rate_seconds = NULL
            WHERE queue = $1""", queue, default_limit)


# What joining a queue came to: a slot taken now, one the run held already (a pass cut
# short after its grant, done again), or a place in line.
Joined = Literal["granted", "held", "waiting"]


async def join_queue(db: pools.Database, *, run_id: str, queue: str, namespace: str, name: str,
                     concurrency_key: str | None, priority: int, created_at: datetime,
                     default_limit: int, task_id: str | None = None, payload: Any = None) -> Joined:
    """Puts a run in line for a slot, registering it first when `task_id` is given
    (`runs.register_run`, status Pending); or, when nobody waits in the queue and it has
    room, gives it a slot at once, as the next admission pass would have. A queue nobody
    defined yet is made with `default_limit`. One statement
    (`durakube.operator_join_queue`, under the admission passes' queue lock); idempotent:
    a run waits at most once, and not at all while it holds a slot."""
    async with pools.connection(db) as conn:
        return await join_queue_txn(conn, run_id=run_id, queue=queue, namespace=namespace,
                                    name=name, concurrency_key=concurrency_key, priority=priority,
                                    created_at=created_at, default_limit=default_limit,
                                    task_id=task_id, payload=payload)


async def join_queue_txn(conn: Any, *, run_id: str, queue: str, namespace: str, name: str,
                         concurrency_key: str | None, priority: int, created_at: datetime,
                         default_limit: int, task_id: str | None = None,
                         payload: Any = None) -> Joined:
    """`join_queue` inside the caller's transaction, which holds the queue's lock from
    then until it ends."""
    joined: Joined = await conn.fetchval(
        "SELECT durakube.operator_join_queue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        run_id, queue, namespace, name, concurrency_key or "", priority, created_at,
        default_limit, task_id, payload)
    return joined


async def release(db: pools.Database, run_id: str) -> bool:
    """Gives back the run's slot and takes it out of line; True if it held a slot."""
    async with pools.transaction(db) as conn:
        await conn.execute("DELETE FROM durakube.queue_waiting WHERE run_id = $1", run_id)
        status = await conn.execute("DELETE FROM durakube.queue_slots WHERE run_id = $1", run_id)
    return bool(status == "DELETE 1")


@dataclass(frozen=True)
class Place:
    """Where a run stands with its queue: holding a slot, in line, or neither."""

    holds_slot: bool
    # (1-based place in line, runs waiting in the queue), None when not in line.
    in_line: tuple[int, int] | None = None


async def place(db: pools.Database, run_id: str) -> Place:
    """The run's slot and place in line, read in one round trip."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow("""
            WITH me AS (SELECT queue, priority, created_at
                        FROM durakube.queue_waiting WHERE run_id = $1)
            SELECT EXISTS (SELECT 1 FROM durakube.queue_slots WHERE run_id = $1) AS holds,
                   (SELECT count(*) FROM durakube.queue_waiting w, me
                    WHERE w.queue = me.queue
                      AND (w.priority > me.priority
                           OR (w.priority = me.priority AND w.created_at < me.created_at))) + 1
                       AS place,
                   (SELECT count(*) FROM durakube.queue_waiting w, me WHERE w.queue = me.queue)
                       AS total,
                   EXISTS (SELECT 1 FROM me) AS waiting""", run_id)
    in_line = (int(record["place"]), int(record["total"])) if record["waiting"] else None
    return Place(holds_slot=bool(record["holds"]), in_line=in_line)


async def queues_with_waiting_runs(db: pools.Database) -> list[str]:
    async with pools.connection(db) as conn:
        return [r["queue"] for r in await conn.fetch(
            "SELECT DISTINCT queue FROM durakube.queue_waiting ORDER BY queue")]


@dataclass(frozen=True)
class Counts:
    running: int
    waiting: int
    suspended: int
    limit: int  # 0 when paused


async def counts(db: pools.Database) -> dict[str, Counts]:
    """Queue -> its counts, for every known queue."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT q.queue, q.concurrency_limit, q.paused,
                   (SELECT count(*) FROM durakube.queue_slots s WHERE s.queue = q.queue) AS running,
                   (SELECT count(*) FROM durakube.queue_waiting w WHERE w.queue = q.queue) AS waiting,
                   (SELECT count(*) FROM durakube.runs r
                    WHERE r.queue = q.queue AND r.status = 'Suspended') AS suspended
            FROM durakube.queues q""")
    return {r["queue"]: Counts(running=int(r["running"]), waiting=int(r["waiting"]),
                               suspended=int(r["suspended"]),
                               limit=0 if r["paused"] else int(r["concurrency_limit"]))
            for r in records}


async def load_slots(db: pools.Database) -> list[Slot]:
    async with pools.connection(db) as conn:
        records = await conn.fetch(
            "SELECT run_id, queue, namespace, name, coalesce(concurrency_key, '') AS concurrency_key,"
            " granted_at FROM durakube.queue_slots ORDER BY granted_at")
    return [Slot(**dict(r)) for r in records]


async def load_waiting(db: pools.Database) -> list[Waiting]:
    async with pools.connection(db) as conn:
        return await _load_waiting_txn(conn, None)


# --- the pieces of one admission transaction, composed by the operator ---------------


@dataclass(frozen=True)
class Held:
    """What an admission pass reads with the queue's lock: its settings, the slots in use
    per concurrency key ("" for none), when each key was last served, and the runs in
    line, highest priority first, then oldest first (none when no slot is free)."""

    settings: Queue
    running: dict[str, int]
    last_served: dict[str, datetime]
    waiting: list[Waiting]


# The columns of a waiting run, in `Waiting`'s order.
_WAITING = ("run_id", "namespace", "name", "concurrency_key", "priority", "created_at", "enqueued_at")


async def lock_and_read_txn(conn: Any, queue: str, limit: int = 10_000) -> Held | None:
    """Locks the queue's row until the transaction ends, then reads what choosing its next
    runs needs (at most `limit` of its line); None if the queue is unknown.

    Two statements: a statement that waited for the lock still reads with the snapshot
    it began with, so it would count the slots granted by the pass it waited for as free."""
    record = await conn.fetchrow("""
        SELECT queue, concurrency_limit, concurrency_limit_per_key, paused, defined,
               rate_starts, rate_seconds, key_rate_starts, key_rate_seconds
        FROM durakube.queues WHERE queue = $1 FOR UPDATE""", queue)
    if record is None:
        return None
    settings = Queue(**dict(record))
    in_line = ", ".join(f"(SELECT array_agg({column} ORDER BY priority DESC, created_at, run_id) "
                        f"FROM waiting) AS waiting_{column}" for column in _WAITING)
    read = await conn.fetchrow(f"""
        WITH running AS (
            SELECT coalesce(concurrency_key, '') AS key FROM durakube.queue_slots WHERE queue = $1
        ), waiting AS (
            SELECT {", ".join(_WAITING)} FROM durakube.queue_waiting
            WHERE queue = $1 AND (SELECT count(*) FROM running) < $2
            ORDER BY priority DESC, created_at, run_id LIMIT $3
        )
        SELECT (SELECT array_agg(key) FROM running) AS running_keys,
               (SELECT array_agg(concurrency_key ORDER BY concurrency_key)
                FROM durakube.queue_keys WHERE queue = $1) AS served_keys,
               (SELECT array_agg(last_admitted_at ORDER BY concurrency_key)
                FROM durakube.queue_keys WHERE queue = $1) AS served_at,
               {in_line}""", queue, settings.concurrency_limit, limit)
    running: dict[str, int] = {}
    for key in read["running_keys"] or []:
        running[key] = running.get(key, 0) + 1
    served = dict(zip(read["served_keys"] or [], read["served_at"] or [], strict=True))
    columns = [read[f"waiting_{column}"] or [] for column in _WAITING]
    waiting = [Waiting(*row) for row in zip(*columns, strict=True)]
    return Held(settings, running, served, waiting)


async def rate_room_txn(conn: Any, settings: Queue) -> RateRoom:
    """What the queue's rate limits leave to admit now, counting the admissions of their
    sliding windows; forgets admissions older than the longest window."""
    longest = max(settings.rate_seconds or 0.0, settings.key_rate_seconds or 0.0)
    await conn.execute("""
        DELETE FROM durakube.queue_admissions
        WHERE queue = $1 AND admitted_at < clock_timestamp() - make_interval(secs => $2)""",
        settings.queue, longest)
    room = RateRoom()
    if settings.rate_starts is not None and settings.rate_seconds is not None:
        recent = await conn.fetchval("""
            SELECT count(*) FROM durakube.queue_admissions
            WHERE queue = $1 AND admitted_at >= clock_timestamp() - make_interval(secs => $2)""",
            settings.queue, settings.rate_seconds)
        room = RateRoom(queue=max(0, settings.rate_starts - int(recent)))
    if settings.key_rate_starts is not None and settings.key_rate_seconds is not None:
        records = await conn.fetch("""
            SELECT concurrency_key, count(*) AS admitted FROM durakube.queue_admissions
            WHERE queue = $1 AND admitted_at >= clock_timestamp() - make_interval(secs => $2)
            GROUP BY 1""", settings.queue, settings.key_rate_seconds)
        room = RateRoom(queue=room.queue, key_starts=settings.key_rate_starts,
                        per_key={r["concurrency_key"]: int(r["admitted"]) for r in records})
    return room


async def _load_waiting_txn(conn: Any, queue: str | None, limit: int = 10_000) -> list[Waiting]:
    records = await conn.fetch("""
        SELECT run_id, namespace, name, concurrency_key, priority, created_at, enqueued_at
        FROM durakube.queue_waiting WHERE ($1::text IS NULL OR queue = $1)
        ORDER BY priority DESC, created_at, run_id LIMIT $2""", queue, limit)
    return [Waiting(**dict(r)) for r in records]


async def grant_slots_txn(conn: Any, queue: str, granted: list[Waiting],
                          rate_limited: bool = False) -> None:
    """Moves `granted` from the line into the ledger and notes when each key was served
    (and, for a rate-limited queue, each admission, which its windows count): one
    statement for all of them."""
    if not granted:
        return
    # Keys served later sort later: the n-th run granted is served n microseconds after
    # the first (one row per key, its last run's time).
    await conn.execute("""
        WITH granted AS (
            SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
                WITH ORDINALITY AS g(run_id, namespace, name, concurrency_key, n)
        ), slots AS (
            INSERT INTO durakube.queue_slots (queue, run_id, namespace, name, concurrency_key)
            SELECT $1, run_id, namespace, name, concurrency_key FROM granted
        ), gone AS (
            DELETE FROM durakube.queue_waiting WHERE run_id IN (SELECT run_id FROM granted)
        ), admissions AS (
            INSERT INTO durakube.queue_admissions (queue, concurrency_key, run_id)
            SELECT $1, concurrency_key, run_id FROM granted WHERE $6
        )
        INSERT INTO durakube.queue_keys (queue, concurrency_key, last_admitted_at)
        SELECT $1, concurrency_key, clock_timestamp() + make_interval(secs => max(n) / 1e6)
        FROM granted GROUP BY concurrency_key
        ON CONFLICT (queue, concurrency_key) DO UPDATE SET last_admitted_at = EXCLUDED.last_admitted_at""",
        queue, [w.run_id for w in granted], [w.namespace for w in granted],
        [w.name for w in granted], [w.concurrency_key for w in granted], rate_limited)

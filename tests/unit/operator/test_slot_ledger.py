"""The slot ledger in real Postgres: concurrent admission passes never exceed a limit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from durakube.store import pools, queues, runs, schema
from durakube_operator import admitting


async def _fill(db: pools.Database, queue: str, count: int, limit: int) -> list[str]:
    await schema.migrate(db)
    await queues.define_queue(db, queue, concurrency_limit=limit, concurrency_limit_per_key=None,
                              paused=False)
    ids = []
    for index in range(count):
        run_id = str(uuid.uuid4())
        await runs.register_run(db, run_id=run_id, namespace="ns", name=f"r{index}", task_id="t",
                                payload={}, queue=queue)
        await queues.enqueue_run(db, run_id=run_id, queue=queue, namespace="ns", name=f"r{index}",
                                 concurrency_key=None, priority=0, created_at=datetime.now(UTC),
                                 default_limit=100)
        ids.append(run_id)
    return ids


async def test_concurrent_admission_passes_never_exceed_the_limit(database_dsn: str) -> None:
    pool_a = await pools.connect(database_dsn, max_size=8)
    pool_b = await pools.connect(database_dsn, max_size=8)  # a second operator
    try:
        await _fill(pool_a, "ns/q", 40, limit=5)
        # Twenty passes at once from two "operators": the row lock serialises them.
        results = await asyncio.gather(*[admitting.admit_next_runs(pool, "ns/q")
                                         for pool in (pool_a, pool_b) * 10])
        assert sum(len(r) for r in results) == 5
        assert len(await queues.load_slots(pool_a)) == 5
    finally:
        await pool_a.close()
        await pool_b.close()


async def test_released_slots_admit_the_next_runs_in_order(database_dsn: str) -> None:
    pool = await pools.connect(database_dsn)
    try:
        ids = await _fill(pool, "ns/q", 6, limit=2)
        first = await admitting.admit_next_runs(pool, "ns/q")
        assert [w.run_id for w in first] == ids[:2]
        assert await admitting.admit_next_runs(pool, "ns/q") == []
        assert await queues.release(pool, ids[0])
        assert not await queues.release(pool, ids[0])  # releasing twice is harmless
        assert [w.run_id for w in await admitting.admit_next_runs(pool, "ns/q")] == [ids[2]]
        assert await queues.place(pool, ids[5]) == queues.Place(holds_slot=False, in_line=(3, 3))
        assert await queues.place(pool, ids[1]) == queues.Place(holds_slot=True, in_line=None)
        assert await queues.place(pool, ids[0]) == queues.Place(holds_slot=False, in_line=None)
    finally:
        await pool.close()


async def test_a_paused_queue_admits_nothing(database_dsn: str) -> None:
    pool = await pools.connect(database_dsn)
    try:
        await _fill(pool, "ns/q", 3, limit=2)
        await queues.define_queue(pool, "ns/q", concurrency_limit=2, concurrency_limit_per_key=None,
                                  paused=True)
        assert await admitting.admit_next_runs(pool, "ns/q") == []
        await queues.define_queue(pool, "ns/q", concurrency_limit=0, concurrency_limit_per_key=None,
                                  paused=False)
        assert await admitting.admit_next_runs(pool, "ns/q") == []
    finally:
        await pool.close()

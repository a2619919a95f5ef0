"""The slot ledger in real Postgres: concurrent admission passes never exceed a limit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from durakube.store import pools, queues, runs, schema
from durakube_operator import admitting


async def _fill(db: pools.Database, queue: str, count: int, limit: int) -> list[str]:
    """`count` runs waiting in line in `queue` (joined while it was paused, so none took a
    slot as it joined), for admission passes to grant."""
    await schema.migrate(db)
    await queues.define_queue(db, queue, concurrency_limit=limit, concurrency_limit_per_key=None,
                              paused=True)
    ids = []
    for index in range(count):
        run_id = str(uuid.uuid4())
        joined = await queues.join_queue(db, run_id=run_id, queue=queue, namespace="ns",
                                         name=f"r{index}", concurrency_key=None, priority=0,
                                         created_at=datetime.now(UTC), default_limit=100,
                                         task_id="t", payload={})
        assert joined == "waiting"
        ids.append(run_id)
    await queues.define_queue(db, queue, concurrency_limit=limit, concurrency_limit_per_key=None,
                              paused=False)
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


async def test_a_run_holding_a_slot_does_not_join_the_line_again(database_dsn: str) -> None:
    """A pass cut short after its run was admitted, before its status said so, registers
    and enqueues the run again on the next pass: the run keeps its slot, and no second
    one is taken for it."""
    pool = await pools.connect(database_dsn)
    try:
        (run_id,) = await _fill(pool, "ns/q", 1, limit=2)
        assert [w.run_id for w in await admitting.admit_next_runs(pool, "ns/q")] == [run_id]
        assert await queues.join_queue(
            pool, run_id=run_id, queue="ns/q", namespace="ns", name="r0", task_id="t", payload={},
            concurrency_key=None, priority=0, created_at=datetime.now(UTC), default_limit=100) == "held"
        assert await queues.place(pool, run_id) == queues.Place(holds_slot=True, in_line=None)
        assert await admitting.admit_next_runs(pool, "ns/q") == []
        assert len(await queues.load_slots(pool)) == 1
    finally:
        await pool.close()


async def _join(db: pools.Database, queue: str, name: str, *, key: str | None = None,
                priority: int = 0) -> tuple[str, queues.Joined]:
    run_id = str(uuid.uuid4())
    joined = await queues.join_queue(db, run_id=run_id, queue=queue, namespace="ns", name=name,
                                     concurrency_key=key, priority=priority,
                                     created_at=datetime.now(UTC), default_limit=3, task_id="t",
                                     payload={"n": name})
    return run_id, joined


async def test_a_run_joining_a_queue_nobody_waits_in_takes_a_free_slot(database_dsn: str) -> None:
    pool = await pools.connect(database_dsn)
    try:
        await schema.migrate(pool)
        queue = f"ns/{uuid.uuid4().hex[:8]}"  # not defined: made with the default limit, 3
        joined = [await _join(pool, queue, f"r{index}") for index in range(4)]
        assert [held for _, held in joined] == ["granted", "granted", "granted", "waiting"]
        slots = {slot.run_id for slot in await queues.load_slots(pool) if slot.queue == queue}
        assert slots == {run_id for run_id, _ in joined[:3]}
        assert await queues.place(pool, joined[3][0]) == queues.Place(holds_slot=False, in_line=(1, 1))
        registered = await runs.load_run(pool, joined[0][0])
        assert registered is not None and (registered.payload, registered.status) == ({"n": "r0"}, "Pending")
        # A slot comes free, but a run waits: a newcomer joins the line behind it.
        assert await queues.release(pool, joined[0][0])
        late, held = await _join(pool, queue, "late", priority=10)
        assert held == "waiting"
        assert [w.run_id for w in await admitting.admit_next_runs(pool, queue)] == [late]
        # Joining again changes nothing: a run that holds a slot keeps it, once.
        again = await queues.join_queue(
            pool, run_id=late, queue=queue, namespace="ns", name="late", concurrency_key=None,
            priority=10, created_at=datetime.now(UTC), default_limit=3)
        assert again == "held"
        assert len([s for s in await queues.load_slots(pool) if s.queue == queue]) == 3
    finally:
        await pool.close()


async def test_joining_takes_no_slot_a_limit_or_pause_withholds(database_dsn: str) -> None:
    pool = await pools.connect(database_dsn)
    try:
        await schema.migrate(pool)
        paused = f"ns/{uuid.uuid4().hex[:8]}"
        await queues.define_queue(pool, paused, concurrency_limit=5, concurrency_limit_per_key=None,
                                  paused=True)
        assert (await _join(pool, paused, "p"))[1] == "waiting"
        keyed = f"ns/{uuid.uuid4().hex[:8]}"
        await queues.define_queue(pool, keyed, concurrency_limit=5, concurrency_limit_per_key=1,
                                  paused=False)
        assert (await _join(pool, keyed, "a1", key="a"))[1] == "granted"
        assert (await _join(pool, keyed, "a2", key="a"))[1] == "waiting"  # the key's one slot is taken
        # Someone waits (for key a), so a run of key b waits too: the pass serves it in order.
        b, held = await _join(pool, keyed, "b1", key="b")
        assert held == "waiting"
        assert [w.run_id for w in await admitting.admit_next_runs(pool, keyed)] == [b]
        limited = f"ns/{uuid.uuid4().hex[:8]}"
        await queues.define_queue(pool, limited, concurrency_limit=5, concurrency_limit_per_key=None,
                                  paused=False, rate=(10, 60.0))
        assert (await _join(pool, limited, "r"))[1] == "waiting"  # rate limits are the pass's to count
    finally:
        await pool.close()


async def test_runs_joining_while_a_pass_grants_never_exceed_the_limit(database_dsn: str) -> None:
    """Runs join while an admission pass (another operator's) holds the queue's lock and
    has granted four of five slots: they wait for the lock, then count those four (every
    statement after the lock reads afresh), so one more run gets a slot, not five."""
    pool_a = await pools.connect(database_dsn, max_size=2)
    pool_b = await pools.connect(database_dsn, max_size=8)  # a second operator
    try:
        queue = f"ns/{uuid.uuid4().hex[:8]}"
        await _fill(pool_a, queue, 4, limit=5)
        async with pools.transaction(pool_a) as conn:
            held = await queues.lock_and_read_txn(conn, queue)
            assert held is not None
            await queues.grant_slots_txn(conn, queue, held.waiting)
            joins = [asyncio.create_task(_join(pool_b, queue, f"j{index}")) for index in range(8)]
            await asyncio.sleep(0.5)  # every join is waiting for the lock by now
            assert not any(join.done() for join in joins)
        held_on_joining = [held for _, held in await asyncio.gather(*joins)]
        assert sorted(held_on_joining) == ["granted"] + ["waiting"] * 7
        assert len([s for s in await queues.load_slots(pool_a) if s.queue == queue]) == 5
        assert len(await admitting.admit_next_runs(pool_a, queue)) == 0
    finally:
        await pool_a.close()
        await pool_b.close()


async def test_a_join_inside_a_transaction_holds_the_queue_until_it_commits(database_dsn: str) -> None:
    """A run registered with more to record (tags, a debounce, a fork) joins inside that
    transaction: it takes a free slot there, and no pass counts the slots before the
    registration commits with it."""
    pool = await pools.connect(database_dsn, max_size=4)
    try:
        await schema.migrate(pool)
        queue = f"ns/{uuid.uuid4().hex[:8]}"
        await queues.define_queue(pool, queue, concurrency_limit=1, concurrency_limit_per_key=None,
                                  paused=False)
        run_id = str(uuid.uuid4())
        async with pools.transaction(pool) as conn:
            await runs.register_run_txn(conn, run_id, "ns", "tagged", "t", {}, queue)
            await runs.register_tags_txn(conn, run_id, ["blue"])
            joined = await queues.join_queue_txn(
                conn, run_id=run_id, queue=queue, namespace="ns", name="tagged",
                concurrency_key=None, priority=0, created_at=datetime.now(UTC), default_limit=3)
            assert joined == "granted"
            other = asyncio.create_task(_join(pool, queue, "other"))
            await asyncio.sleep(0.3)
            assert not other.done()  # waits for the queue's lock
        _, other_joined = await other
        assert other_joined == "waiting"  # the one slot is the tagged run's
        assert [slot.run_id for slot in await queues.load_slots(pool) if slot.queue == queue] == [run_id]
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


async def test_runs_joining_at_once_share_admission_passes(
        database_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = await pools.connect(database_dsn, max_size=8)
    passes = 0
    real_pass = admitting.admit_next_runs

    async def counted(db: pools.Database, queue: str) -> list[queues.Waiting]:
        nonlocal passes
        passes += 1
        return await real_pass(db, queue)

    monkeypatch.setattr(admitting, "admit_next_runs", counted)
    others: list[str] = []
    loop = admitting.AdmissionLoop(pool, lambda run: others.append(run.run_id))
    try:
        queue = f"ns/{uuid.uuid4().hex[:8]}"
        ids = await _fill(pool, queue, 12, limit=10)
        asked = ids[:8]  # the runs whose passes call admit_now; the rest only wait in line
        got = await asyncio.gather(*[loop.admit_now(queue, run_id) for run_id in asked])
        # Ten slots for twelve runs: all eight callers got one, two more went to on_admitted
        # (each admitted once), and the limit held.
        assert got == [True] * 8
        assert sorted(others) == sorted(ids[8:10])
        assert {slot.run_id for slot in await queues.load_slots(pool) if slot.queue == queue} == set(ids[:10])
        # The eight calls, made before any pass began, shared one.
        assert passes == 1
        # Calls while a pass is under way wait for the next one. A run the earlier pass
        # admitted already (it was in line) gets False and holds its slot all the same:
        # its caller then reads its place (see acting).
        more = await _fill(pool, queue, 4, limit=16)
        first = asyncio.create_task(loop.admit_now(queue, more[0]))
        await asyncio.sleep(0)
        await asyncio.gather(first, *[loop.admit_now(queue, run_id) for run_id in more[1:]])
        assert passes <= 3
        slots = {slot.run_id for slot in await queues.load_slots(pool) if slot.queue == queue}
        assert slots == set(ids) | set(more)  # the two older ones in line first, FIFO
    finally:
        await pool.close()


async def test_a_rate_limit_counts_admissions_over_its_sliding_window(database_dsn: str) -> None:
    pool = await pools.connect(database_dsn, max_size=4)
    try:
        await _fill(pool, "ns/rated", 5, limit=10)
        await queues.define_queue(pool, "ns/rated", concurrency_limit=10,
                                  concurrency_limit_per_key=None, paused=False, rate=(2, 60.0))
        assert len(await admitting.admit_next_runs(pool, "ns/rated")) == 2
        # The slots are given back at once: the rate limit, not the concurrency, holds.
        for slot in await queues.load_slots(pool):
            await queues.release(pool, slot.run_id)
        assert await admitting.admit_next_runs(pool, "ns/rated") == []
        async with pools.connection(pool) as conn:
            # A minute passes for the window: the admissions are moved back past it.
            await conn.execute("""
                UPDATE durakube.queue_admissions SET admitted_at = admitted_at - interval '61 s'
                WHERE queue = 'ns/rated'""")
        assert len(await admitting.admit_next_runs(pool, "ns/rated")) == 2
        # Without its rate limit the queue admits the rest at once.
        await queues.define_queue(pool, "ns/rated", concurrency_limit=10,
                                  concurrency_limit_per_key=None, paused=False)
        assert len(await admitting.admit_next_runs(pool, "ns/rated")) == 1
    finally:
        await pool.close()

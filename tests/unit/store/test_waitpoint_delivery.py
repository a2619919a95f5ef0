"""Waitpoints in real Postgres: events buffered or delivered, tokens completed once, timers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from started_runs import create_waitpoint, new_run, wait_for_event

from durakube.store import pools, schema, waitpoints


@pytest.fixture
async def db(database_dsn: str) -> pools.Database:
    pool = await pools.connect(database_dsn, max_size=6)
    await schema.migrate(pool)
    yield pool
    await pool.close()


async def test_event_without_a_waiter_is_buffered_for_the_next_wait(db: pools.Database) -> None:
    delivery = await waitpoints.send_event(db, "order-1", {"paid": True}, namespace="ns")
    assert delivery.buffered and delivery.run_ids == []
    run_id = await new_run(db)
    waitpoint = await wait_for_event(db, run_id, seq=1, key="order-1", wake_at=None)
    assert waitpoint.completed_at is not None and waitpoint.data == {"paid": True}
    # Taken once: the next waiter on the key waits.
    other = await wait_for_event(db, await new_run(db), seq=1, key="order-1",
                                            wake_at=None)
    assert other.completed_at is None


async def test_event_is_delivered_to_every_current_waiter(db: pools.Database) -> None:
    waiting = [await new_run(db) for _ in range(3)]
    for run_id in waiting:
        await wait_for_event(db, run_id, seq=2, key="k", wake_at=None)
    delivery = await waitpoints.send_event(db, "k", {"n": 1}, namespace="ns")
    assert sorted(delivery.run_ids) == sorted(waiting) and not delivery.buffered
    assert sorted(r for r, _, _ in await waitpoints.runs_to_resume(db)) == sorted(waiting)


async def test_sending_with_the_same_event_id_delivers_once(db: pools.Database) -> None:
    run_id = await new_run(db)
    await wait_for_event(db, run_id, seq=1, key="k", wake_at=None)
    first = await waitpoints.send_event(db, "k", 1, namespace="ns", event_id="uid-1")
    await wait_for_event(db, await new_run(db), seq=1, key="k", wake_at=None)
    again = await waitpoints.send_event(db, "k", 1, namespace="ns", event_id="uid-1")
    assert again.run_ids == first.run_ids == [run_id]


async def test_no_event_is_lost_between_checking_the_buffer_and_waiting(db: pools.Database) -> None:
    # Waits and sends race on one key; every event ends up delivered or buffered, never dropped.
    waiters = [await new_run(db) for _ in range(20)]
    await asyncio.gather(
        *[wait_for_event(db, r, seq=1, key="race", wake_at=None) for r in waiters],
        *[waitpoints.send_event(db, "race", {"i": i}, namespace="ns") for i in range(20)])
    completed = [await waitpoints.load_waitpoint(db, r, 1) for r in waiters]
    done = sum(1 for w in completed if w is not None and w.completed_at is not None)
    assert done == 20


async def test_token_completes_once_with_clear_errors(db: pools.Database) -> None:
    run_id = await new_run(db)
    token = waitpoints.new_token()
    await create_waitpoint(db, run_id, seq=3, kind="token", wake_at=None, token=token)
    assert await waitpoints.complete_token(db, token, {"approved": True}) == run_id
    with pytest.raises(waitpoints.TokenAlreadyCompleted):
        await waitpoints.complete_token(db, token, {"approved": False})
    with pytest.raises(waitpoints.TokenNotFound):
        await waitpoints.complete_token(db, waitpoints.new_token(), None)
    assert (await waitpoints.load_waitpoint(db, run_id, 3)).data == {"approved": True}


async def test_due_timers_complete_sleeps_and_time_out_other_waits(db: pools.Database) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    future = datetime.now(UTC) + timedelta(hours=1)
    sleeper, waiter, later = await new_run(db), await new_run(db), await new_run(db)
    await create_waitpoint(db, sleeper, seq=1, kind="sleep", wake_at=past)
    await wait_for_event(db, waiter, seq=1, key="never", wake_at=past)
    await create_waitpoint(db, later, seq=1, kind="sleep", wake_at=future)
    assert await waitpoints.fire_due_timers(db) == 2
    assert not (await waitpoints.load_waitpoint(db, sleeper, 1)).timed_out
    assert (await waitpoints.load_waitpoint(db, waiter, 1)).timed_out
    assert (await waitpoints.pending_waitpoint(db, later)).seq == 1
    ready = await waitpoints.runs_to_resume(db)
    assert sorted(r for r, _, _ in ready) == sorted([sleeper, waiter])
    await waitpoints.mark_resumed(db, [sleeper, waiter])
    assert await waitpoints.runs_to_resume(db) == []

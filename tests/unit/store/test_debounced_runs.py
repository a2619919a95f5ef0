"""Debounced runs in the store: a run gives way to any created after it with the same Task
and key, in the order of creation (creationTimestamp, then the creation's resourceVersion),
whatever order the operator registered them in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from started_runs import new_run

from durakube.store import pools, runs

SECOND = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)


async def register(db: Any, run_id: str, task: str, key: str, created_at: datetime,
                   version: int | None) -> None:
    async with pools.transaction(db) as conn:
        await runs.register_debounce_txn(conn, run_id, "ns", task, key, created_at, version)


async def name_of(db: Any, run_id: str) -> str:
    run = await runs.load_run(db, run_id)
    assert run is not None
    return run.name


async def test_the_last_created_of_a_key_is_the_one_left_to_run(operator: Any) -> None:
    first, second, third, other_key, other_task = [await new_run(operator) for _ in range(5)]
    # Registered out of order: the third first, within the same second as the second.
    await register(operator, third, "sync", "user-7", SECOND, 120)
    await register(operator, first, "sync", "user-7", SECOND.replace(second=4), 90)
    await register(operator, second, "sync", "user-7", SECOND, 100)
    await register(operator, other_key, "sync", "user-8", SECOND.replace(second=9), 200)
    await register(operator, other_task, "export", "user-7", SECOND.replace(second=9), 210)
    newest = await name_of(operator, third)
    assert await runs.newer_debounced_run(operator, first) == newest
    assert await runs.newer_debounced_run(operator, second) == newest
    assert await runs.newer_debounced_run(operator, third) is None
    assert await runs.newer_debounced_run(operator, other_key) is None
    assert await runs.newer_debounced_run(operator, other_task) is None


async def test_registering_again_keeps_the_first_registration(operator: Any) -> None:
    early, late = await new_run(operator), await new_run(operator)
    await register(operator, early, "sync", "k", SECOND, 10)
    await register(operator, late, "sync", "k", SECOND, 20)
    # A pass that runs again after a crash cannot move a run to the end of its line.
    await register(operator, early, "sync", "k", SECOND.replace(second=30), 99)
    assert await runs.newer_debounced_run(operator, early) == await name_of(operator, late)
    assert await runs.newer_debounced_run(operator, late) is None

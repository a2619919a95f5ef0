"""Copying a run's steps into a fork: the steps before the fork's step, their results and
`ctx.state`, from a run of the same namespace only, and with the run's registration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from started_runs import new_run

from durakube.store import pools, runs, steps


async def record(db: Any, run_id: str, count: int) -> None:
    """`count` steps as a worker records them: step i's result is i, its state {"seen": 1..i}."""
    moment = datetime(2026, 3, 1, tzinfo=UTC)
    async with pools.connection(db) as conn:
        for seq in range(1, count + 1):
            await conn.execute("""
                INSERT INTO durakube.steps (run_id, seq, name, status, result, error, state,
                                            attempt, started_at, finished_at, duration_ms)
                VALUES ($1, $2, $3, 'succeeded', $4, NULL, $5, 1, $6, $6, 1.0)""",
                run_id, seq, f"step-{seq}", seq,
                {"seen": list(range(1, seq + 1))}, moment)


async def fork(db: Any, source: str, namespace: str, from_step: int) -> tuple[str, int]:
    run_id = f"fork-of-{source}"
    async with pools.transaction(db) as conn:
        await runs.register_run_txn(conn, run_id, namespace, run_id[:20], "t", {})
        copied = await steps.copy_steps_txn(conn, source, run_id, namespace, from_step)
    return run_id, copied


async def test_fork_copies_the_steps_before_its_step_with_their_state(owner: Any,
                                                                      operator: Any) -> None:
    source = await new_run(owner, namespace="team")
    await record(owner, source, 4)
    run_id, copied = await fork(operator, source, "team", 3)
    assert copied == 2
    forked = await steps.load_steps(operator, run_id)
    assert [(s.seq, s.name, s.result, s.state, s.attempt) for s in forked] == [
        (1, "step-1", 1, {"seen": [1]}, 0), (2, "step-2", 2, {"seen": [1, 2]}, 0)]
    registered = await runs.load_run(operator, run_id)
    assert registered is not None and registered.state == {"seen": [1, 2]}
    # Copying again (a registration that runs twice) changes nothing.
    assert (await fork(operator, source, "team", 3))[1] == 0
    assert len(await steps.load_steps(operator, run_id)) == 2


async def test_fork_never_reads_the_steps_of_another_namespace(owner: Any, operator: Any) -> None:
    source = await new_run(owner, namespace="team-a")
    await record(owner, source, 3)
    run_id, copied = await fork(operator, source, "team-b", 3)
    assert copied == 0
    assert await steps.load_steps(operator, run_id) == []
    assert await steps.recorded_seqs(operator, source) == [1, 2, 3]

"""Forks in the store: which steps a run can be forked from, and the copy of the steps before
it (results and `ctx.state`) and of its tokens, from a run of the same namespace only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from started_runs import create_waitpoint, new_run

from durakube.store import pools, runs, steps, waitpoints


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


def step(seq: int, name: str, result: Any = None) -> steps.Step:
    moment = datetime(2026, 3, 1, tzinfo=UTC)
    return steps.Step(run_id="r", seq=seq, name=name, status="succeeded", result=result,
                      error=None, state={}, attempt=1, started_at=moment, finished_at=moment,
                      duration_ms=1.0)


RECORDED = [step(1, "load"), step(2, "trigger:square", "parent-c2"),
            step(3, "wait-for-run:parent-c2", 9), step(4, "store")]


@pytest.mark.parametrize(("from_step", "refusal"), [
    (1, None), (2, None), (4, None),
    (3, "step 3 waits for child run parent-c2, which step 2 triggered before step 3"),
    (5, "it recorded steps 1 to 4, not step 5"),
], ids=["first", "the-trigger", "after-the-wait", "between-trigger-and-wait", "beyond"])
def test_fork_refusal(from_step: int, refusal: str | None) -> None:
    refused = steps.fork_refusal(RECORDED, from_step)
    assert refused == refusal if refusal is None else refusal in (refused or "")


async def test_fork_gets_its_own_token_for_a_token_created_before_its_step(
        owner: Any, operator: Any) -> None:
    source = await new_run(owner, namespace="team")
    await record(owner, source, 2)
    created = await create_waitpoint(owner, source, seq=2, kind="token",
                                     token=waitpoints.new_token())
    await waitpoints.complete_token(owner, str(created.token), {"approved": True})
    run_id = f"fork-of-{source}"
    async with pools.transaction(operator) as conn:
        await runs.register_run_txn(conn, run_id, "team", run_id[:20], "t", {})
        assert await waitpoints.copy_tokens_txn(conn, source, run_id, "team", 3) == 1
        assert await waitpoints.copy_tokens_txn(conn, source, run_id, "team", 3) == 0
    copied = await waitpoints.load_waitpoint(operator, run_id, 2)
    assert copied is not None and copied.token not in (None, created.token)
    assert copied.completed_at is not None and copied.data == {"approved": True}

"""The store's data modules against Postgres: idempotent writes and JSON in and out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from durakube.store import attempts, pools, runs, steps, working


def make_step(run_id: str, seq: int, name: str, result: Any = None,
              state: dict[str, Any] | None = None) -> steps.Step:
    now = datetime.now(UTC)
    return steps.Step(run_id=run_id, seq=seq, name=name, status="succeeded", result=result,
                      error=None, state=state or {}, attempt=1, started_at=now, finished_at=now,
                      duration_ms=0.5)


async def test_register_run_is_idempotent(pool: Any) -> None:
    first = await runs.register_run(pool, run_id="r1", namespace="ns", name="job",
                                    task_id="embed", payload={"docs": ["a", "b"]}, queue="gpu")
    again = await runs.register_run(pool, run_id="r1", namespace="ns", name="job",
                                    task_id="other", payload={"docs": []})
    assert again == first
    assert (first.payload, first.queue, first.status, first.attempt, first.state) == (
        {"docs": ["a", "b"]}, "gpu", "Pending", 0, {})
    assert await runs.load_run(pool, "r1") == first
    assert await runs.load_run(pool, "missing") is None


async def test_set_run_status_stamps_finished_at_only_when_terminal(pool: Any) -> None:
    await runs.register_run(pool, run_id="r1", namespace="ns", name="job", task_id="t",
                            payload={})
    running = await runs.set_run_status(pool, "r1", "Running")
    assert running is not None and running.finished_at is None
    done = await runs.set_run_status(pool, "r1", "Succeeded")
    assert done is not None and done.status == "Succeeded" and done.finished_at is not None
    assert await runs.set_run_status(pool, "missing", "Failed") is None


async def started(pool: Any, run_id: str) -> working.Credential:
    """The run registered and its first attempt started: the credential its pod would hold."""
    await runs.register_run(pool, run_id=run_id, namespace="ns", name="job", task_id="t",
                            payload={})
    secret = attempts.new_secret()
    await attempts.start_attempt(pool, run_id, 1, secret=secret)
    return working.Credential(run_id, 1, secret)


async def test_first_record_of_a_step_wins(pool: Any, worker_pool: Any) -> None:
    credential = await started(pool, "r1")
    first = make_step("r1", 1, "fetch", {"n": 1}, {"k": "v"})
    assert await working.record_step(worker_pool, credential, first)
    assert not await working.record_step(worker_pool, credential,
                                         make_step("r1", 1, "other", {"n": 2}, {"k": "w"}))
    (step,) = await steps.load_steps(pool, "r1")
    assert (step.name, step.result, step.state) == ("fetch", {"n": 1}, {"k": "v"})
    assert await working.load_step(worker_pool, credential, 1) == step
    assert await working.load_step(worker_pool, credential, 2) is None


async def test_a_step_writes_its_own_row_only(pool: Any, worker_pool: Any) -> None:
    credential = await started(pool, "r1")
    before = await runs.load_run(pool, "r1")
    await working.record_step(worker_pool, credential, make_step("r1", 1, "fetch", 1, {"k": "v"}))
    # The run's row is the attempt's end's business: a step does not rewrite it.
    assert await runs.load_run(pool, "r1") == before


async def test_json_values_of_every_shape_round_trip(pool: Any, worker_pool: Any) -> None:
    credential = await started(pool, "r1")
    values = [None, 0, 1.5, "text", True, [1, "a", None], {"nested": {"list": [{}]}}, "ünï"]
    for seq, value in enumerate(values, start=1):
        await working.record_step(worker_pool, credential, make_step("r1", seq, f"s{seq}", value))
    assert [step.result for step in await steps.load_steps(pool, "r1")] == values


async def test_store_calls_compose_in_one_transaction(pool: Any) -> None:
    await runs.register_run(pool, run_id="r1", namespace="ns", name="job", task_id="t",
                            payload={})
    try:
        async with pools.transaction(pool) as conn:
            await attempts.start_attempt(conn, "r1", 1, "job-1")
            await runs.set_run_status(conn, "r1", "Running")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert await attempts.load_attempts(pool, "r1") == []
    run = await runs.load_run(pool, "r1")
    assert run is not None and run.status == "Pending"


async def test_start_attempt_is_idempotent_and_moves_the_run_forward(pool: Any) -> None:
    await runs.register_run(pool, run_id="r1", namespace="ns", name="job", task_id="t",
                            payload={})
    first = await attempts.start_attempt(pool, "r1", 1, "job-1")
    again = await attempts.start_attempt(pool, "r1", 1, "someone-else")
    assert first == again and first.pod_name == "job-1" and first.outcome is None
    await attempts.start_attempt(pool, "r1", 2, "job-2")
    await attempts.start_attempt(pool, "r1", 1)  # a late, older attempt does not go back
    run = await runs.load_run(pool, "r1")
    assert run is not None and run.attempt == 2
    assert await attempts.read_outcome(pool, "r1", 2) is None

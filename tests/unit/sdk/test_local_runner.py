"""The local runner (`durakube.testing`) against real Postgres: runs, retries, waits, children.

Every run goes through the worker's own attempt code and the store functions the
operator uses; what the tests read back is what Postgres holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import durakube
from durakube import context, retry, store, tasks
from durakube.testing import AsyncLocalRunner, LocalRunner


@pytest.fixture
async def runner(database_dsn: str) -> AsyncIterator[AsyncLocalRunner]:
    async with AsyncLocalRunner(database_dsn, registry=tasks.Registry(),
                                namespace="shop") as opened:
        yield opened


async def test_retries_follow_the_policy_and_completed_steps_are_replayed(
        runner: AsyncLocalRunner) -> None:
    calls = Counter[str]()

    @tasks.task(id="flaky", registry=runner.registry,
                retry=durakube.Retry(max_attempts=3, min_timeout=10, factor=2, randomize=False))
    async def flaky(ctx: context.TaskContext, payload: dict[str, Any]) -> Any:
        await ctx.step("reserve", lambda: calls.update(["reserve"]))
        if ctx.attempt < 3:
            raise durakube.RetryableError(f"payment service down (attempt {ctx.attempt})")
        return {"paid": payload["order"]}

    result = await runner.run(flaky, {"order": 7})

    assert result.phase == "Succeeded" and result.output == {"paid": 7}
    assert [attempt.outcome for attempt in result.attempts] == ["retry", "retry", "succeeded"]
    # The back-off the policy asked for (10 s, then 20 s) was skipped, not waited.
    assert result.backoffs == [10.0, 20.0]
    assert calls == {"reserve": 1}
    assert result.step_names() == ["reserve"]
    assert [attempt.pod_name for attempt in result.attempts] == [
        f"{result.name}-1", f"{result.name}-2", f"{result.name}-3"]


async def test_a_run_fails_when_its_attempts_run_out_or_at_a_permanent_error(
        runner: AsyncLocalRunner) -> None:
    @tasks.task(id="always-down", registry=runner.registry)
    async def always_down(ctx: context.TaskContext, payload: dict[str, Any]) -> Any:
        raise durakube.RetryableError("still down")

    @tasks.task(id="refuses", registry=runner.registry)
    def refuses(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> Any:
        raise ValueError("no such order")

    exhausted = await runner.run(always_down, retry_policy=retry.Retry(max_attempts=2))
    refused = await runner.run("refuses")

    assert exhausted.phase == "Failed" and len(exhausted.attempts) == 2
    assert exhausted.error is not None and exhausted.error["message"] == "still down"
    assert refused.phase == "Failed" and len(refused.attempts) == 1
    assert refused.error is not None and refused.error["type"] == "ValueError"


async def test_the_test_ends_each_kind_of_wait(runner: AsyncLocalRunner) -> None:
    @tasks.task(id="order-flow", registry=runner.registry)
    async def order_flow(ctx: context.TaskContext, payload: dict[str, Any]) -> Any:
        await ctx.sleep("1d")
        paid = await ctx.wait_for_event(f"paid-{payload['order']}", timeout="1h")
        token = await ctx.create_token(timeout="7d")
        approval = await ctx.wait_for_token(token)
        try:
            await ctx.wait_for_event("never", timeout="2h")
        except durakube.WaitTimedOut:
            late = "timed out"
        return {"paid": paid, "approval": approval, "late": late}

    result = await runner.run(order_flow, {"order": 7})
    assert result.phase == "Suspended"
    assert result.waiting_for is not None and result.waiting_for.kind == "sleep"

    result = await runner.skip_sleep(result)
    assert result.waiting_for is not None and result.waiting_for.key == "paid-7"
    # An event of another key, or of another namespace, reaches nothing.
    assert await runner.deliver_event("paid-8", {"amount": 1}) == []
    await store.waitpoints.send_event(runner.pool, "paid-7", {"amount": 2}, namespace="other")
    assert (await runner.result(result)).phase == "Suspended"

    (result,) = await runner.deliver_event("paid-7", {"amount": 12})
    assert result.waiting_for is not None and result.waiting_for.kind == "token"
    token = result.waiting_for.token
    assert token is not None

    result = await runner.complete_token(token, {"approved": True})
    assert result.waiting_for is not None and result.waiting_for.key == "never"
    result = await runner.expire_wait(result)

    assert result.phase == "Succeeded"
    assert result.output == {"paid": {"amount": 12}, "approval": {"approved": True},
                             "late": "timed out"}
    assert [attempt.outcome for attempt in result.attempts] == [
        "suspended", "suspended", "suspended", "suspended", "succeeded"]
    with pytest.raises(ValueError, match="waits for no sleep"):
        await runner.skip_sleep(result)


async def test_child_runs_run_in_the_same_runner(runner: AsyncLocalRunner) -> None:
    @tasks.task(id="square", registry=runner.registry)
    def square(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> Any:
        if payload["n"] == 0:
            raise ValueError("zero is not welcome")
        return {"square": payload["n"] ** 2}

    @tasks.task(id="fan-out", registry=runner.registry)
    async def fan_out(ctx: context.TaskContext, payload: dict[str, Any]) -> Any:
        squares = await ctx.batch_trigger_and_wait(square, [{"n": n} for n in (1, 2, 3)])
        try:
            await ctx.trigger_and_wait("square", {"n": 0})
        except durakube.ChildRunFailed as failed:
            refused = failed.phase
        return {"total": sum(s["square"] for s in squares), "zero": refused}

    result = await runner.run(fan_out)

    assert result.phase == "Succeeded"
    assert result.output == {"total": 14, "zero": "Failed"}
    assert result.children == [f"{result.name}-c{seq}" for seq in (1, 2, 3, 7)]


async def test_attempts_use_the_workers_login_when_given_one(
        database_dsn: str, login_dsn: Callable[[str, str], str]) -> None:
    pool = await store.connect(database_dsn)
    try:
        await store.migrate(pool)  # the group roles the login joins
    finally:
        await pool.close()
    registry = tasks.Registry()

    @tasks.task(id="hello", registry=registry)
    def hello(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> Any:
        return {"greeting": ctx.step("greet", str.upper, f"hello {payload['name']}")}

    async with AsyncLocalRunner(database_dsn, registry=registry,
                                worker_database_url=login_dsn(database_dsn, "durakube_worker")
                                ) as runner:
        result = await runner.run(hello, {"name": "ada"})
    assert result.output == {"greeting": "HELLO ADA"}


def test_the_blocking_runner_runs_on_an_event_loop_of_its_own(database_dsn: str) -> None:
    registry = tasks.Registry()

    @tasks.task(id="echo", registry=registry)
    def echo(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> Any:
        return payload

    with LocalRunner(database_dsn, registry=registry) as runner:
        assert runner.run(echo, {"x": 1}).output == {"x": 1}


async def test_the_blocking_runner_refuses_to_run_inside_an_event_loop(database_dsn: str) -> None:
    with pytest.raises(RuntimeError, match=r"use durakube\.testing\.AsyncLocalRunner here"):
        LocalRunner(database_dsn)

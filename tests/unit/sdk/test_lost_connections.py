"""A lost connection to Postgres is the platform's failure, never the task's.

The first test ends the worker's sessions for real (`pg_terminate_backend`, as an
administrator or a Postgres restart would); the second makes every checkpoint write
fail, which no real server can be made to do on cue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from attempting import run_attempt

from devcluster import postgres
from durakube import context, errors, store, tasks
from durakube.store import attempts, runs, steps, working

EFFECTS: list[str] = []


async def end_other_sessions(dsn: str) -> int:
    admin = await asyncpg.connect(dsn)
    try:
        return int(await admin.fetchval("""
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()"""))
    finally:
        await admin.close()


async def test_a_session_ended_under_the_task_is_replaced_and_the_run_goes_on(
        pool: Any, new_run: Any, database_dsn: str) -> None:
    registry = tasks.Registry()
    EFFECTS.clear()

    async def record(name: str) -> str:
        EFFECTS.append(name)
        return name

    @tasks.task(id="two-steps", registry=registry)
    async def two_steps(ctx: context.TaskContext, payload: dict[str, Any]) -> list[str]:
        first = await ctx.step("first", record, "first")
        # Every session of the worker ends, the checkpoint connection included.
        assert await end_other_sessions(database_dsn) >= 1
        second = await ctx.step("second", record, "second")
        return [first, second]

    run_id = await new_run("two-steps")
    outcome = await run_attempt(pool, run_id, 1, registry)

    assert outcome.kind == "succeeded" and outcome.output == ["first", "second"], outcome.error
    assert EFFECTS == ["first", "second"]
    assert [step.name for step in await steps.load_steps(pool, run_id)] == ["first", "second"]


async def test_postgres_gone_ends_the_attempt_without_an_outcome(
        pool: Any, new_run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = tasks.Registry()

    @tasks.task(id="stubborn", registry=registry)
    async def stubborn(ctx: context.TaskContext, payload: dict[str, Any]) -> str:
        try:
            await ctx.step("first", lambda: "done")
        except Exception:
            pass  # a task that swallows everything must not turn the outage into its result
        return "finished anyway"

    run_id = await new_run("stubborn")

    tries: list[float] = []

    async def refuse(*_: Any, **__: Any) -> bool:
        tries.append(time.monotonic())
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    monkeypatch.setattr(working, "record_step", refuse)
    with pytest.raises(errors.StoreUnavailable, match="ConnectionDoesNotExistError"):
        await run_attempt(pool, run_id, 1, registry, store_retry_seconds=1.0)
    # Tried again on a fresh connection, then with back-off while the budget lasted.
    assert len(tries) >= 2
    # No outcome: the operator sees an attempt that ended without one and resumes the run.
    assert await attempts.read_outcome(pool, run_id, 1) is None


async def test_a_checkpoint_waits_out_a_postgres_restart(tmp_path: Path) -> None:
    server = postgres.start(tmp_path / "postgres")
    try:
        dsn = server.create_database("restarting")
        owner = await store.connect(dsn, max_size=2)
        await store.migrate(owner)
        await runs.register_run(owner, run_id="r1", namespace="ns", name="r1",
                                task_id="restarted", payload={})
        registry = tasks.Registry()
        effects: list[str] = []

        async def record(name: str) -> str:
            effects.append(name)
            return name

        async def outage() -> str:
            # Postgres goes down under the step and is back some seconds later, while the
            # step's checkpoint is being tried.
            server.stop()
            asyncio.get_running_loop().call_later(1.5, threading.Thread(
                target=server.restart).start)
            return await record("second")

        @tasks.task(id="restarted", registry=registry)
        async def restarted(ctx: context.TaskContext, payload: dict[str, Any]) -> list[str]:
            return [await ctx.step("first", record, "first"), await ctx.step("second", outage)]

        outcome = await run_attempt(owner, "r1", 1, registry, store_retry_seconds=60)
        assert outcome.kind == "succeeded" and outcome.output == ["first", "second"], outcome.error
        assert effects == ["first", "second"]
        assert [step.name for step in await steps.load_steps(owner, "r1")] == ["first", "second"]
        await owner.close()
    finally:
        server.stop()


async def test_a_task_error_that_looks_like_a_lost_connection_is_still_the_tasks(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()

    @tasks.task(id="own-database", registry=registry)
    async def own_database(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        raise ConnectionResetError("the task's own service hung up")

    run_id = await new_run("own-database")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.kind == "failed" and outcome.error is not None
    assert outcome.error["type"] == "ConnectionResetError"


async def test_sessions_ended_before_the_steps_are_loaded_cost_no_failure(
        pool: Any, new_run: Any, database_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = tasks.Registry()

    @tasks.task(id="late-loader", registry=registry)
    async def late_loader(ctx: context.TaskContext, payload: dict[str, Any]) -> str:
        return await ctx.step("only", lambda: "done")

    run_id = await new_run("late-loader")
    real_load_steps = working.load_steps
    ended: list[int] = []

    async def after_the_sessions_end(*args: Any) -> list[steps.Step]:
        if not ended:
            # Between the attempt's start and the loading of its steps, every session of
            # the worker ends, the idle one in its pool included.
            ended.append(await end_other_sessions(database_dsn))
        return await real_load_steps(*args)

    monkeypatch.setattr(working, "load_steps", after_the_sessions_end)
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert ended and ended[0] >= 1
    assert outcome.kind == "succeeded" and outcome.output == "done", outcome.error


async def test_postgres_gone_before_the_task_runs_records_no_failure(
        pool: Any, new_run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = tasks.Registry()
    ran: list[str] = []

    @tasks.task(id="never-reached", registry=registry)
    async def never_reached(ctx: context.TaskContext, payload: dict[str, Any]) -> str:
        ran.append("task")
        return "ran"

    run_id = await new_run("never-reached")

    async def lost(*_: Any) -> list[steps.Step]:
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    monkeypatch.setattr(working, "load_steps", lost)
    with pytest.raises(errors.StoreUnavailable, match="loading the recorded steps"):
        await run_attempt(pool, run_id, 1, registry, store_retry_seconds=0.5)
    # Not the task's failure: no outcome, the operator resumes the run in a new attempt.
    assert ran == []
    assert await attempts.read_outcome(pool, run_id, 1) is None

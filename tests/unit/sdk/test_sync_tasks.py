"""Plain `def` tasks and steps against real Postgres: run in threads, checkpointed alike.

A `def` task gets a `SyncTaskContext` whose calls block its thread while the step
engine runs them on the worker's loop; a `def` step runs in a thread of its own. A
crash is simulated as in test_step_checkpointing.py, by cancelling the attempt from
the checkpoint hook.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from attempting import run_attempt, start_attempt

import durakube
from durakube import context, errors, tasks
from durakube.store import attempts, steps, waitpoints

WORKER = Path(sys.executable).parent / "durakube-worker"


async def test_completed_sync_step_never_runs_twice(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    runs_of = Counter[str]()
    threads: set[str] = set()

    @tasks.step
    def double(n: int) -> int:
        runs_of[f"double-{n}"] += 1
        threads.add(threading.current_thread().name)
        return 2 * n

    def square(n: int) -> int:
        runs_of[f"square-{n}"] += 1
        return n * n

    @tasks.task(id="sync-steps", registry=registry)
    def sync_steps(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        total = 0
        for n in (1, 2):
            total += double(n)
            total += ctx.step(f"square-{n}", square, n)
            ctx.state["total"] = total
        return {"total": total, "attempt": ctx.attempt}

    assert registry.get("sync-steps").sync
    run_id = await new_run("sync-steps")
    this: asyncio.Task[Any] | None = None

    def crash(step: steps.Step) -> None:
        if step.seq == 3 and this is not None:
            this.cancel()

    this = asyncio.create_task(run_attempt(pool, run_id, 1, registry, on_checkpoint=crash))
    with pytest.raises(asyncio.CancelledError):
        await this
    assert await attempts.read_outcome(pool, run_id, 1) is None
    assert [step.name for step in await steps.load_steps(pool, run_id)] == [
        "double", "square-1", "double"]

    outcome = await run_attempt(pool, run_id, 2, registry)

    assert outcome == attempts.Outcome("succeeded", output={"total": 2 + 1 + 4 + 4,
                                                           "attempt": 2})
    # Every completed step ran once; the loop's own thread ran none of them.
    assert runs_of == {"double-1": 1, "square-1": 1, "double-2": 1, "square-2": 1}
    assert threading.current_thread().name not in threads
    recorded = await steps.load_steps(pool, run_id)
    assert [(step.seq, step.name, step.attempt, step.state) for step in recorded] == [
        (1, "double", 1, {}), (2, "square-1", 1, {}), (3, "double", 1, {"total": 3}),
        (4, "square-2", 2, {"total": 3})]


@pytest.mark.parametrize("kind", ["async-task", "sync-task"])
async def test_a_blocking_step_leaves_the_event_loop_running(pool: Any, new_run: Any,
                                                            kind: str) -> None:
    """The step blocks its thread until a coroutine on the loop lets it go: were it run on
    the loop, that coroutine could never run and the step would give up."""
    registry = tasks.Registry()
    released = threading.Event()
    entered = threading.Event()

    def wait_for_the_loop() -> bool:
        entered.set()
        return released.wait(timeout=30)

    if kind == "async-task":
        @tasks.task(id="blocking-step", registry=registry)
        async def async_task(ctx: context.TaskContext, payload: dict[str, Any]) -> Any:
            return {"released": await ctx.step("block", wait_for_the_loop)}
    else:
        @tasks.task(id="blocking-step", registry=registry)
        def sync_task(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> Any:
            return {"released": ctx.step("block", wait_for_the_loop)}

    async def release_from_the_loop() -> int:
        ticks = 0
        while not entered.is_set():
            ticks += 1
            await asyncio.sleep(0.01)
        released.set()
        return ticks

    run_id = await new_run("blocking-step")
    outcome, _ = await asyncio.gather(run_attempt(pool, run_id, 1, registry),
                                      release_from_the_loop())
    assert outcome == attempts.Outcome("succeeded", output={"released": True})


async def test_sync_task_waits_suspend_and_resume_with_the_event(pool: Any,
                                                                new_run: Any) -> None:
    registry = tasks.Registry()
    before = Counter[str]()

    @tasks.task(id="sync-wait", registry=registry)
    def sync_wait(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> Any:
        ctx.step("before", lambda: before.update(["before"]))
        data = ctx.wait_for_event("order-7", timeout="1h")
        token = ctx.create_token()
        try:
            ctx.wait_for_token(token)
        except durakube.WaitTimedOut:
            return {"data": data, "token": "timed out"}
        return {"data": data, "token": "completed"}

    run_id = await new_run("sync-wait")
    first = await run_attempt(pool, run_id, 1, registry)
    assert first.kind == "suspended" and first.output["key"] == "order-7"

    delivery = await waitpoints.send_event(pool, "order-7", {"paid": True}, namespace="default")
    assert delivery.run_ids == [run_id]
    second = await run_attempt(pool, run_id, 2, registry)
    assert second.kind == "suspended" and second.output["kind"] == "token"

    waiting = await waitpoints.pending_waitpoint(pool, run_id)
    assert waiting is not None and waiting.token is not None
    await waitpoints.complete_token(pool, waiting.token, {"ok": 1})
    third = await run_attempt(pool, run_id, 3, registry)
    assert third == attempts.Outcome("succeeded", output={"data": {"paid": True},
                                                          "token": "completed"})
    assert before == {"before": 1}


async def test_sync_step_error_is_recorded_and_reraised_not_rerun(pool: Any,
                                                                 new_run: Any) -> None:
    registry = tasks.Registry()
    calls = Counter[str]()

    def refuse() -> None:
        calls["refuse"] += 1
        raise ValueError("no such order")

    @tasks.task(id="sync-error", registry=registry)
    def sync_error(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> Any:
        try:
            ctx.step("refuse", refuse)
        except errors.StepFailed as failed:
            ctx.state["caught"] = failed.type
        if ctx.attempt == 1:
            raise durakube.RetryableError("once more")
        return dict(ctx.state)

    run_id = await new_run("sync-error")
    assert (await run_attempt(pool, run_id, 1, registry)).kind == "retry"
    outcome = await run_attempt(pool, run_id, 2, registry)
    assert outcome == attempts.Outcome("succeeded", output={"caught": "ValueError"})
    assert calls == {"refuse": 1}


async def test_sync_step_called_from_an_async_task_is_refused_with_advice(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()

    @tasks.step
    def lookup(key: str) -> str:
        return key.upper()

    @tasks.task(id="mixed", registry=registry)
    async def mixed(ctx: context.TaskContext, payload: dict[str, Any]) -> Any:
        return lookup("a")

    run_id = await new_run("mixed")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.kind == "failed" and outcome.error is not None
    assert outcome.error["type"] == "TypeError"
    assert "await ctx.step('lookup', fn, ...)" in outcome.error["message"]
    # Outside any task the step is a plain call.
    assert lookup("b") == "B"


STUCK_TASKS = textwrap.dedent('''
    import threading
    import durakube

    @durakube.task(id="stuck", timeout="1s")
    def stuck(ctx: durakube.SyncTaskContext, payload: dict) -> None:
        ctx.step("first", lambda: 1)
        ctx.step("stuck", threading.Event().wait)
''')


async def test_worker_exits_after_its_outcome_while_a_sync_step_is_stuck(
        pool: Any, new_run: Any, worker_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "stuck_tasks.py").write_text(STUCK_TASKS)
    run_id = await new_run("stuck")
    secret = await start_attempt(pool, run_id, 1)
    env = {"PATH": os.environ.get("PATH", ""), "DURAKUBE_RUN_ID": run_id,
           "DURAKUBE_ATTEMPT": "1", "DURAKUBE_DATABASE_URL": worker_dsn,
           "DURAKUBE_ATTEMPT_SECRET": secret, "DURAKUBE_TASK_MODULES": "stuck_tasks",
           "DURAKUBE_TERMINATION_MESSAGE_PATH": str(tmp_path / "termination-log")}
    process = await asyncio.create_subprocess_exec(
        str(WORKER), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, output.decode()
    outcome = await attempts.read_outcome(pool, run_id, 1)
    assert outcome is not None and outcome.kind == "retry"
    assert outcome.error is not None and outcome.error["type"].endswith("AttemptTimedOut")
    assert "thread(s) of the task still running" in output.decode()
    assert [step.name for step in await steps.load_steps(pool, run_id)] == ["first"]

"""Tasks whose behaviour the end-to-end tests provoke: crashes, errors, timeouts, sleeps."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

from effects import count

import durakube


@durakube.task(id="crash-after-two")
async def crash_after_two(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Four steps; the first attempt's process is SIGKILLed right after step 2."""
    results = []
    for index in range(1, 5):
        results.append(await ctx.step(f"step-{index}", count, ctx, f"step-{index}"))
        if index == 2 and ctx.attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    return {"counts": results}


@durakube.task(id="flaky", retry=durakube.Retry(max_attempts=5, min_timeout=1, max_timeout=2,
                                                 randomize=False))
async def flaky(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fails with a retryable error until attempt `payload["succeed_on"]`."""
    await ctx.step("before", count, ctx, "before")
    if ctx.attempt < int(payload["succeed_on"]):
        retry_in = payload.get("retry_in")
        retry_at = datetime.now(UTC) + timedelta(seconds=retry_in) if retry_in else None
        raise durakube.RetryableError(f"transient failure on attempt {ctx.attempt}",
                                      retry_at=retry_at)
    return {"attempt": ctx.attempt}


@durakube.task(id="hold")
async def hold(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Holds its first attempt's pod in a step for `payload["seconds"]` (no durable
    sleep: the pod stays); a later attempt returns at once (the resume benchmark)."""

    async def wait() -> int:
        if ctx.attempt == 1:
            await asyncio.sleep(float(payload["seconds"]))
        return ctx.attempt

    return {"attempt": await ctx.step("hold", wait)}


@durakube.task(id="report-progress")
async def report_progress(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Three steps, saying in the run's metadata how far it got."""
    for index in range(1, 4):
        await ctx.step(f"part-{index}", count, ctx, f"part-{index}")
        await ctx.update_metadata(done=index, of=3, last=f"part-{index}")
    await ctx.update_metadata(last=None)
    return {"parts": 3}


@durakube.task(id="hungry")
async def hungry(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A step, then a step that fills `payload["mb"]` MiB of memory (written, so resident):
    OOM-killed under a smaller memory limit, done under a larger one."""
    await ctx.step("before", count, ctx, "before")

    async def fill() -> int:
        await count(ctx, "fill")
        block = b"x" * (int(payload["mb"]) * 1024 * 1024)
        return len(block) // (1024 * 1024)

    return {"filled": await ctx.step("fill", fill), "attempt": ctx.attempt}


@durakube.task(id="broken")
async def broken(ctx: durakube.TaskContext, payload: dict[str, Any]) -> None:
    """Raises an ordinary exception: permanent by default."""
    raise ValueError(f"cannot process {payload.get('item', 'nothing')}")


@durakube.task(id="sleepy")
async def sleepy(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Step one, then sleeps in step two for `payload["seconds"]` on the first attempt only."""
    await ctx.step("first", count, ctx, "first")

    async def nap() -> int:
        if ctx.attempt == 1:
            await asyncio.sleep(float(payload["seconds"]))
        return await count(ctx, "second")

    await ctx.step("second", nap)
    return {"attempt": ctx.attempt}


@durakube.task(id="nap")
async def nap(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps `payload["seconds"]` in one step: a run that holds its slot for a while."""

    async def sleep() -> float:
        await asyncio.sleep(float(payload["seconds"]))
        return float(payload["seconds"])

    await ctx.step("sleep", sleep)
    return {"slept": payload["seconds"], "tenant": payload.get("tenant")}


@durakube.task(id="nap-and-resume")
async def nap_and_resume(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A step, a durable sleep (until an absolute time if given), another step."""
    await ctx.step("before", count, ctx, "before")
    if "until" in payload:
        await ctx.sleep_until(datetime.fromisoformat(payload["until"]))
    else:
        await ctx.sleep(payload["seconds"])
    await ctx.step("after", count, ctx, "after")
    return {"attempt": ctx.attempt}


@durakube.task(id="await-event")
async def await_event(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Waits for an event on `payload["key"]`; a timeout is handled, not fatal."""
    await ctx.step("before", count, ctx, "before")
    try:
        data = await ctx.wait_for_event(payload["key"], timeout=payload.get("timeout"))
    except durakube.WaitTimedOut as error:
        return {"timedOut": True, "message": str(error)}
    return {"timedOut": False, "data": data}


@durakube.task(id="sum-steps")
async def sum_steps(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Three counted steps that add 1, 2 and 3 to `ctx.state["total"]` as they run: a fork
    shows which steps ran again and which state it started from."""
    for index in (1, 2, 3):
        async def add(index: int = index) -> int:
            ctx.state["total"] = ctx.state.get("total", 0) + index
            return await count(ctx, f"step-{index}")

        await ctx.step(f"step-{index}", add)
    return {"total": ctx.state["total"], "attempt": ctx.attempt}


@durakube.task(id="square")
async def square(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A child: squares a number after a short nap, or fails when asked to."""
    await asyncio.sleep(float(payload.get("seconds", 0)))
    if payload.get("fail"):
        raise ValueError(f"refusing to square {payload['n']}")
    return {"n": payload["n"], "square": payload["n"] ** 2}


@durakube.task(id="fan-out")
async def fan_out(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A parent: three children in parallel, then their outputs summed."""
    await ctx.step("before", count, ctx, "before")
    results = await ctx.batch_trigger_and_wait(
        payload.get("child_task", "square"),
        [{"n": n, "seconds": payload.get("seconds", 3), "fail": n == payload.get("fail_n")}
         for n in (1, 2, 3)])
    await ctx.step("after", count, ctx, "after")
    return {"total": sum(r["square"] for r in results)}


@durakube.task(id="fan-out-handling-failure")
async def fan_out_handling_failure(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        await ctx.trigger_and_wait("square", {"n": 7, "fail": True})
    except durakube.ChildRunFailed as error:
        return {"failed": error.phase, "message": error.error_message}
    return {"failed": None}


@durakube.task(id="oversized-step")
async def oversized_step(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A step whose result (`payload["bytes"]` characters) may be past the stored-value limit."""

    async def build() -> str:
        return "x" * int(payload["bytes"])

    text = await ctx.step("build", build)
    return {"length": len(text)}

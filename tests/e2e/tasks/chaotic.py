"""Tasks of the chaos tests (tests/chaos/): steps that record each execution with its
attempt, and a task that gives a paused worker something to write when it wakes up.

A run holds where the test wants its attempts in flight while public.test_holds has
the row it names (`payload["hold"]`), whatever the attempt: the test deletes the row
once it has done its harm."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
from effects import APPLICATION_NAME, ran

import durakube


async def hold(payload: dict[str, Any]) -> None:
    """Returns once public.test_holds has no row `payload["hold"]` (at once without one).
    Postgres restarting, or this connection terminated, only makes it look again."""
    name = payload.get("hold")
    connection = None
    try:
        while name:
            try:
                if connection is None or connection.is_closed():
                    connection = await asyncpg.connect(
                        os.environ["DURAKUBE_DATABASE_URL"], timeout=10,
                        server_settings={"application_name": APPLICATION_NAME})
                if not await connection.fetchval(
                        "SELECT EXISTS (SELECT FROM public.test_holds WHERE name = $1)", name):
                    return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection = None
            await asyncio.sleep(0.3)
    finally:
        if connection is not None and not connection.is_closed():
            await connection.close()


@durakube.task(id="chaos-steps")
async def chaos_steps(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """`payload["steps"]` steps; each records its execution, then works for
    `payload["seconds"]`; step `payload["hold_step"]` also holds (see `hold`)."""

    async def work(index: int) -> int:
        await ran(ctx, f"step-{index}")
        if index == payload.get("hold_step"):
            await hold(payload)
        await asyncio.sleep(float(payload.get("seconds", 0.5)))
        return index

    done = [await ctx.step(f"step-{index}", work, index)
            for index in range(1, int(payload.get("steps", 3)) + 1)]
    ctx.state["done"] = len(done)
    return {"steps": len(done), "attempt": ctx.attempt}


@durakube.task(id="chaos-zombie")
async def chaos_zombie(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A step, a hold (where the test pauses the worker), then the write `payload["then"]`
    names, first thing after the hold: "step" (the hold is a step, whose record comes
    next), "wait" (a durable sleep), "child" (a child run's request) or "outcome" (the
    task returns)."""
    then = payload["then"]

    async def before() -> str:
        await ran(ctx, "before")
        return "before"

    await ctx.step("before", before)
    if then == "step":
        async def holding() -> str:
            await ran(ctx, "hold")
            await hold(payload)
            return "held"

        await ctx.step("hold", holding)
    else:
        await ran(ctx, "hold")
        await hold(payload)
        if then == "wait":
            await ctx.sleep("3s")
        elif then == "child":
            await ctx.trigger("chaos-steps", {"steps": 1, "seconds": 0})
        elif then == "outcome":
            return {"then": then, "attempt": ctx.attempt}

    async def after() -> str:
        await ran(ctx, "after")
        return "after"

    await ctx.step("after", after)
    return {"then": then, "attempt": ctx.attempt}

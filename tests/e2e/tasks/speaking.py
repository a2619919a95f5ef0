"""Tasks that write logs, for the tests of stored attempt logs: through ctx.logger,
print and stderr, before a durable sleep, before a crash, and a flood of bytes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import durakube


async def say(ctx: durakube.TaskContext, text: str) -> str:
    ctx.logger.info("%s", text)
    return text


@durakube.task(id="speak")
async def speak(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A logger record inside a step, a print and a line on stderr."""
    await ctx.step("greet", say, ctx, f"hello from attempt {ctx.attempt}")
    print("printed by the task")
    print("written to stderr by the task", file=sys.stderr)
    return {"spoke": True}


@durakube.task(id="speak-then-sleep")
async def speak_then_sleep(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Logs, sleeps long enough to suspend (the pod goes away), logs again."""
    await ctx.step("before", say, ctx, f"before the sleep, attempt {ctx.attempt}")
    await ctx.sleep(payload["seconds"])
    await ctx.step("after", say, ctx, f"after the sleep, attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@durakube.task(id="speak-then-crash")
async def speak_then_crash(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Logs, then on the first attempt pauses longer than the worker's flush interval,
    logs its last words and is SIGKILLed at once; the next attempt resumes and logs."""
    await ctx.step("first", say, ctx, f"before the crash, attempt {ctx.attempt}")
    if ctx.attempt == 1:
        await asyncio.sleep(float(payload.get("pause", 2.5)))
        ctx.logger.warning("the last words of attempt %d", ctx.attempt)
        os.kill(os.getpid(), signal.SIGKILL)
    await ctx.step("second", say, ctx, f"after the crash, attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@durakube.task(id="flood")
async def flood(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Writes `payload["bytes"]` bytes of numbered lines to stdout, then one last line."""
    total = int(payload["bytes"])
    written = 0
    line = 0
    while written < total:
        text = f"flood line {line:08d}\n"
        sys.stdout.write(text)
        written += len(text)
        line += 1
        if line % 5000 == 0:
            await asyncio.sleep(0)
    sys.stdout.write("the flood is over\n")
    sys.stdout.flush()
    return {"lines": line}

"""Tasks of the client's end-to-end tests and the benchmarks: an echo (payloads in,
outputs out, any size), a greeting typed with pydantic models on both sides, and a
hold that keeps its first attempt's pod busy."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import durakube


@durakube.task(id="echo")
async def echo(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Returns the payload untouched, after one step that measures it."""

    async def measure() -> int:
        return len(str(payload))

    await ctx.step("measure", measure)
    return payload


@durakube.task(id="hold")
async def hold(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Holds its first attempt's pod in a step for `payload["seconds"]` (no durable
    sleep: the pod stays); a later attempt returns at once."""

    async def wait() -> int:
        if ctx.attempt == 1:
            await asyncio.sleep(float(payload["seconds"]))
        return ctx.attempt

    return {"attempt": await ctx.step("hold", wait)}


class Greeting(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    name: str = Field(min_length=1)
    times: int = Field(default=1, ge=1, le=5)


class Greeted(BaseModel):
    message: str
    length: int


@durakube.task(id="greet")
async def greet(ctx: durakube.TaskContext, payload: Greeting) -> Greeted:
    async def compose() -> str:
        return " ".join([f"hello {payload.name}"] * payload.times)

    message = await ctx.step("compose", compose)
    return Greeted(message=message, length=len(message))

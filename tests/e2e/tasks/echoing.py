"""Tasks of the client's end-to-end tests: an echo (payloads in, outputs out, any size)
and a greeting typed with pydantic models on both sides."""

from __future__ import annotations

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

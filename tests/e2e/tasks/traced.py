"""Tasks whose traces the end-to-end tests read: a retry that replays a step, a child run."""

from __future__ import annotations

from typing import Any

import durakube


async def note(label: str) -> str:
    return label


@durakube.task(id="traced-retry", retry=durakube.Retry(max_attempts=3, min_timeout=0.5,
                                                        max_timeout=0.5, randomize=False))
async def traced_retry(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Step one, a retryable failure on the first attempt, then (replaying step one) a
    second step that triggers a child run without waiting for it."""
    first = await ctx.step("first", note, "first")
    if ctx.attempt == 1:
        raise durakube.RetryableError("fails once after the first step")
    child = await ctx.trigger("traced-child", {"from": first})
    return {"attempt": ctx.attempt, "child": child}


@durakube.task(id="traced-child")
async def traced_child(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return {"said": await ctx.step("say", note, str(payload.get("from", "")))}

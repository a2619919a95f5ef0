"""A run's metadata: what its task says about itself as it runs (`ctx.update_metadata`),
kept across attempts in Postgres and refused to an attempt that is no longer live."""

from __future__ import annotations

from typing import Any

import pytest
from attempting import run_attempt, start_attempt

from durakube import context, errors, tasks
from durakube.store import schema, steps, working


async def test_updates_merge_remove_keys_and_outlive_the_attempt(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    seen_at_start: list[dict[str, Any]] = []

    @tasks.task(id="reporter", registry=registry)
    async def reporter(ctx: context.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        seen_at_start.append(dict(ctx.metadata))
        if ctx.attempt == 1:
            await ctx.update_metadata({"stage": "fetch", "progress": 0.1}, scratch=True)
            await ctx.update_metadata(progress=0.5, scratch=None)
            raise errors.RetryableError("try again")
        return dict(await ctx.update_metadata(stage="done", progress=1.0))

    run_id = await new_run("reporter")
    first = await run_attempt(pool, run_id, 1, registry)
    assert first.kind == "retry"
    second = await run_attempt(pool, run_id, 2, registry)
    assert second.kind == "succeeded"
    # Attempt 2 started from what attempt 1 left; a key set to None is gone.
    assert seen_at_start == [{}, {"stage": "fetch", "progress": 0.5}]
    assert second.output == {"stage": "done", "progress": 1.0}
    progress = await steps.summarize_steps(pool, run_id)
    assert progress.metadata == {"stage": "done", "progress": 1.0}


async def test_metadata_past_its_limit_is_refused_and_nothing_changes(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()

    @tasks.task(id="chatty", registry=registry)
    async def chatty(ctx: context.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        await ctx.update_metadata(note="small")
        with pytest.raises(errors.ValueRefused, match="4096"):
            await ctx.update_metadata(note="x" * schema.METADATA_BYTES)
        # Each piece fits, together they do not: Postgres refuses the merged object.
        await ctx.update_metadata(a="y" * 2500)
        with pytest.raises(errors.ValueRefused, match="over the limit"):
            await ctx.update_metadata(b="z" * 2500)
        return dict(ctx.metadata)

    run_id = await new_run("chatty")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.kind == "succeeded", outcome.error
    assert outcome.output == {"note": "small", "a": "y" * 2500}
    assert (await steps.summarize_steps(pool, run_id)).metadata == outcome.output


async def test_an_attempt_no_longer_live_cannot_write_metadata(pool: Any, new_run: Any) -> None:
    run_id = await new_run("anything")
    old = working.Credential(run_id, 1, await start_attempt(pool, run_id, 1))
    await working.update_metadata(pool, old, {"by": "attempt 1"})
    await start_attempt(pool, run_id, 2)  # a newer attempt revokes the first
    with pytest.raises(errors.AttemptRevoked):
        await working.update_metadata(pool, old, {"by": "a zombie"})
    assert (await steps.summarize_steps(pool, run_id)).metadata == {"by": "attempt 1"}

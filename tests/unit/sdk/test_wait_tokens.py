"""Waitpoint tokens: the same token on every replay, and never in a step's record."""

from __future__ import annotations

import json
from typing import Any

from attempting import run_attempt

from durakube import context, tasks
from durakube.store import steps, waitpoints


async def test_a_token_survives_replay_and_is_not_recorded_in_steps(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    handed_out: list[str] = []

    @tasks.task(id="approve", registry=registry)
    async def approve(ctx: context.TaskContext, payload: dict[str, Any]) -> Any:
        token = await ctx.create_token(timeout="1d")
        handed_out.append(token)
        return await ctx.wait_for_token(token)

    run_id = await new_run("approve")
    first = await run_attempt(pool, run_id, 1, registry)
    assert first.kind == "suspended"
    (token,) = handed_out
    assert token.startswith("wpt_")
    # Step results are what `durakube steps` and the dashboard show: the token, which
    # completes the wait, is in none of them.
    recorded = await steps.load_steps(pool, run_id)
    assert [step.name for step in recorded] == ["create-token"]
    assert token not in json.dumps([[step.result, step.state, step.error] for step in recorded])

    assert await waitpoints.complete_token(pool, token, {"approved": True}) == run_id
    second = await run_attempt(pool, run_id, 2, registry)
    assert (second.kind, second.output) == ("succeeded", {"approved": True})
    # The replayed step handed out the very same token.
    assert handed_out == [token, token]

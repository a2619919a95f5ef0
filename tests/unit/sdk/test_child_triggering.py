"""Child runs from inside a task, against real Postgres: a task given as a function is
looked up in the worker's registry, whichever registry that is."""

from __future__ import annotations

from typing import Any

from attempting import run_attempt

from durakube import context, tasks
from durakube.store import children


async def test_a_child_given_as_a_function_is_found_in_the_workers_registry(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()

    @tasks.task(id="resize-image", registry=registry)
    async def resize(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        pass

    @tasks.task(id="gallery", registry=registry)
    async def gallery(ctx: context.TaskContext, payload: dict[str, Any]) -> str:
        return await ctx.trigger(resize, {"image": "a.png"})

    assert "resize-image" not in tasks.registry.ids()
    run_id = await new_run("gallery")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert (outcome.kind, outcome.error) == ("succeeded", None)
    requested = [child for child in await children.unsubmitted_child_runs(pool)
                 if child.parent_run_id == run_id]
    assert [(children.child_name(child.parent_name, child.seq), child.task, child.payload,
             child.written_live) for child in requested] == [
        (outcome.output, "resize-image", {"image": "a.png"}, True)]


async def test_a_child_function_no_registry_knows_fails_the_run_naming_it(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()

    async def unregistered(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        pass

    @tasks.task(id="parent", registry=registry)
    async def parent(ctx: context.TaskContext, payload: dict[str, Any]) -> str:
        return await ctx.trigger(unregistered, {})

    outcome = await run_attempt(pool, await new_run("parent"), 1, registry)
    assert outcome.kind == "failed"
    assert outcome.error is not None
    assert outcome.error["code"] == "TaskNotFound"
    assert outcome.error["fields"]["known"] == ["parent"]
    assert "unregistered" in outcome.error["message"]

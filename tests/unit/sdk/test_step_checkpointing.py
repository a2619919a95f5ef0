"""Durable steps against real Postgres: check -> run -> record, and replay after a crash.

A crash is simulated by cancelling the attempt from the checkpoint hook (as a
SIGTERM'd pod would stop mid-task): no outcome is recorded, and the next attempt
replays what Postgres holds.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest
from attempting import run_attempt

from durakube import context, errors, tasks
from durakube.store import attempts, runs, steps


async def crash_after(pool: Any, run_id: str, registry: tasks.Registry, seq: int,
                      attempt: int = 1) -> None:
    """Runs an attempt and kills it right after step `seq` is checkpointed."""
    this: asyncio.Task[Any] | None = None

    def crash(step: steps.Step) -> None:
        if step.seq == seq and this is not None:
            this.cancel()

    this = asyncio.create_task(run_attempt(pool, run_id, attempt, registry,
                                                  on_checkpoint=crash))
    with pytest.raises(asyncio.CancelledError):
        await this
    assert await attempts.read_outcome(pool, run_id, attempt) is None


async def test_completed_step_never_runs_twice(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    runs_of = Counter[int]()

    async def work(n: int) -> int:
        await asyncio.sleep(0)  # where a cancelled pod stops
        runs_of[n] += 1
        return n * 10

    @tasks.task(id="four-steps", registry=registry)
    async def four_steps(ctx: context.TaskContext, payload: dict[str, Any]) -> dict[str, int]:
        total = 0
        for n in range(1, 5):
            total += await ctx.step(f"step-{n}", work, n)
        return {"total": total}

    run_id = await new_run("four-steps")
    await crash_after(pool, run_id, registry, seq=2)
    assert [step.name for step in await steps.load_steps(pool, run_id)] == ["step-1", "step-2"]
    assert runs_of == {1: 1, 2: 1}

    replayed: list[int] = []
    outcome = await run_attempt(pool, run_id, 2, registry,
                                       on_checkpoint=lambda step: replayed.append(step.seq))
    assert outcome == attempts.Outcome("succeeded", output={"total": 100})
    assert runs_of == {1: 1, 2: 1, 3: 1, 4: 1}
    assert replayed == [3, 4]
    recorded = await steps.load_steps(pool, run_id)
    assert [(step.seq, step.attempt, step.result) for step in recorded] == [
        (1, 1, 10), (2, 1, 20), (3, 2, 30), (4, 2, 40)]
    run = await runs.load_run(pool, run_id)
    assert run is not None and run.output == {"total": 100} and run.attempt == 2


async def test_step_decorator_checkpoints_inside_a_task_and_runs_plainly_outside(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    calls = Counter[str]()

    @tasks.step
    async def fetch(url: str) -> str:
        calls[url] += 1
        return f"<{url}>"

    @tasks.step(name="parse-page")
    async def parse(page: str) -> dict[str, Any]:
        inner = await fetch("inner")  # a step inside a step is part of it
        return {"page": page, "inner": inner}

    @tasks.task(id="crawl", registry=registry)
    async def crawl(ctx: context.TaskContext, payload: dict[str, Any]) -> Any:
        return await parse(await fetch(payload["url"]))

    assert await fetch("outside") == "<outside>"
    run_id = await new_run("crawl", {"url": "a"})
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.output == {"page": "<a>", "inner": "<inner>"}
    assert [step.name for step in await steps.load_steps(pool, run_id)] == ["fetch", "parse-page"]
    assert calls == {"outside": 1, "a": 1, "inner": 1}


@pytest.mark.parametrize("task_catches_it", [False, True], ids=["uncaught", "caught"])
async def test_renamed_step_on_replay_fails_as_non_deterministic(
        pool: Any, new_run: Any, task_catches_it: bool) -> None:
    before, after = tasks.Registry(), tasks.Registry()

    async def noop() -> None:
        await asyncio.sleep(0)

    @tasks.task(id="pipeline", registry=before)
    async def pipeline_v1(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        for name in ("load", "embed", "index"):
            await ctx.step(name, noop)

    @tasks.task(id="pipeline", registry=after)
    async def pipeline_v2(ctx: context.TaskContext, payload: dict[str, Any]) -> str:
        await ctx.step("load", noop)
        try:
            await ctx.step("store", noop)
        except errors.NonDeterministicReplay:
            if not task_catches_it:
                raise
        return "done"

    run_id = await new_run("pipeline")
    await crash_after(pool, run_id, before, seq=2)
    outcome = await run_attempt(pool, run_id, 2, after)
    assert outcome.kind == "failed"
    assert outcome.error is not None
    assert outcome.error["code"] == "NonDeterministicReplay"
    assert outcome.error["message"].startswith(
        "step 2 was 'embed' when recorded but is 'store' now: "
        "task code must take the same path on replay")
    assert outcome.error["fields"] == {"seq": 2, "recorded_name": "embed",
                                       "current_name": "store"}


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "type_name", "path"),
    [
        (Opaque(), "test_step_checkpointing.Opaque", ""),
        (datetime(2030, 1, 1, tzinfo=UTC), "datetime.datetime", ""),
        ({"tags": {"a", "b"}}, "set", "['tags']"),
        ([1, 2, float("nan")], "float (nan)", "[2]"),
        ({1: "one"}, "dict key int", ""),
    ],
    ids=["object", "datetime", "nested-set", "nan", "int-key"],
)
async def test_non_serializable_result_fails_the_run_naming_step_and_type(
        pool: Any, new_run: Any, value: Any, type_name: str, path: str) -> None:
    registry = tasks.Registry()
    later = Counter[str]()

    async def produce() -> Any:
        return value

    async def after() -> None:
        later["ran"] += 1

    @tasks.task(id="leaky", registry=registry, retry=tasks.retry.Retry(on=["Exception"]))
    async def leaky(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        try:
            await ctx.step("produce", produce)
        except Exception:
            pass  # swallowing it does not save the run
        await ctx.step("after", after)

    run_id = await new_run("leaky")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.kind == "failed"
    assert outcome.error is not None
    assert outcome.error["code"] == "NonSerializableState"
    assert outcome.error["fields"] == {"where": "step 1 'produce' result",
                                       "value_type": type_name, "path": path}
    assert "'produce'" in outcome.error["message"] and type_name in outcome.error["message"]
    assert await steps.load_steps(pool, run_id) == []
    assert later == {}  # no step runs after a fatal error, even a swallowed one


class Embedding(pydantic.BaseModel):
    doc: str
    vector: list[float]
    at: datetime


async def test_pydantic_results_are_stored_as_json_and_revalidated_on_replay(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    seen: list[Any] = []

    @tasks.step
    async def embed(doc: str) -> Embedding:
        await asyncio.sleep(0)
        return Embedding(doc=doc, vector=[0.5, 1.5], at=datetime(2030, 1, 1, tzinfo=UTC))

    @tasks.step
    async def describe(doc: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"model": Embedding(doc=doc, vector=[], at=datetime(2030, 1, 2, tzinfo=UTC))}

    @tasks.task(id="embed", registry=registry)
    async def embed_task(ctx: context.TaskContext, payload: dict[str, Any]) -> Embedding:
        first = await embed("a")
        second = await describe("b")
        seen.append((first, second))
        await ctx.step("last", asyncio.sleep, 0)
        return first

    run_id = await new_run("embed")
    await crash_after(pool, run_id, registry, seq=3)
    outcome = await run_attempt(pool, run_id, 2, registry)
    assert outcome.output == {"doc": "a", "vector": [0.5, 1.5], "at": "2030-01-01T00:00:00Z"}
    (first_run, replay) = seen
    assert first_run == replay
    assert isinstance(replay[0], Embedding)
    assert replay[1] == {"model": {"doc": "b", "vector": [], "at": "2030-01-02T00:00:00Z"}}


async def test_recorded_error_is_reraised_not_rerun(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    charges = Counter[str]()
    caught: list[tuple[str, str]] = []

    async def charge(card: str) -> None:
        await asyncio.sleep(0)
        charges[card] += 1
        raise ValueError(f"card {card} declined")

    @tasks.task(id="checkout", registry=registry)
    async def checkout(ctx: context.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            await ctx.step("charge", charge, payload["card"])
        except errors.StepFailed as error:
            caught.append((error.type, error.message))
            ctx.state["declined"] = True
        await ctx.step("notify", asyncio.sleep, 0)
        return {"declined": ctx.state.get("declined", False)}

    run_id = await new_run("checkout", {"card": "4242"})
    await crash_after(pool, run_id, registry, seq=2)
    failed, notify = await steps.load_steps(pool, run_id)
    assert (failed.name, failed.status, notify.name) == ("charge", "failed", "notify")
    assert failed.error is not None and failed.error["type"] == "ValueError"

    outcome = await run_attempt(pool, run_id, 2, registry)
    assert outcome == attempts.Outcome("succeeded", output={"declined": True})
    assert charges == {"4242": 1}
    assert caught == [("ValueError", "card 4242 declined")] * 2


async def test_uncaught_step_error_fails_the_run_with_the_users_exception(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()

    async def explode() -> None:
        raise KeyError("missing")

    @tasks.task(id="explode", registry=registry)
    async def explode_task(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        await ctx.step("explode", explode)

    run_id = await new_run("explode")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.kind == "failed" and outcome.error is not None
    assert (outcome.error["type"], outcome.error["message"]) == ("KeyError", "'missing'")
    assert outcome.error["fields"]["step"] == "explode"
    assert "raise KeyError" in outcome.error["traceback"]
    (step,) = await steps.load_steps(pool, run_id)
    assert step.status == "failed"
    assert step.error == outcome.error


async def test_ctx_state_is_restored_as_of_each_recorded_step(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    observed: dict[int, list[dict[str, Any]]] = {1: [], 2: []}

    @tasks.step
    async def visit(page: int) -> int:
        await asyncio.sleep(0)
        return page

    @tasks.task(id="paginate", registry=registry)
    async def paginate(ctx: context.TaskContext, payload: dict[str, Any]) -> int:
        observed[ctx.attempt].append(dict(ctx.state))
        for page in range(1, 4):
            ctx.state["cursor"] = page
            ctx.state.setdefault("seen", []).append(await visit(page))
            observed[ctx.attempt].append(dict(ctx.state, seen=list(ctx.state["seen"])))
        return len(ctx.state["seen"])

    run_id = await new_run("paginate")
    await crash_after(pool, run_id, registry, seq=2)
    recorded = await steps.load_steps(pool, run_id)
    # Each snapshot is taken as the step finishes: before its result is appended. The
    # latest step's is the run's latest state; the crashed attempt wrote no other.
    assert [step.state for step in recorded] == [{"cursor": 1, "seen": []},
                                                 {"cursor": 2, "seen": [1]}]

    outcome = await run_attempt(pool, run_id, 2, registry)
    assert outcome.output == 3
    assert observed[2] == [{}, {"cursor": 1, "seen": [1]}, {"cursor": 2, "seen": [1, 2]},
                           {"cursor": 3, "seen": [1, 2, 3]}]
    assert observed[1] == observed[2][:3]
    run = await runs.load_run(pool, run_id)
    assert run is not None and run.state == {"cursor": 3, "seen": [1, 2, 3]}


async def test_idempotency_keys_are_stable_across_attempts(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    keys: dict[int, list[str]] = {1: [], 2: []}

    @tasks.task(id="keys", registry=registry)
    async def keys_task(ctx: context.TaskContext, payload: dict[str, Any]) -> list[str]:
        async def send() -> str:
            await asyncio.sleep(0)
            return ctx.idempotency_key()

        keys[ctx.attempt].append(ctx.idempotency_key("send"))
        first = await ctx.step("send", send)
        second = await ctx.step("send", send)
        return [first, second]

    run_id = await new_run("keys")
    await crash_after(pool, run_id, registry, seq=1)
    outcome = await run_attempt(pool, run_id, 2, registry)
    assert outcome.output == [f"{run_id}:1:send", f"{run_id}:2:send"]
    assert keys == {1: [f"{run_id}:1:send"], 2: [f"{run_id}:1:send"]}


async def test_concurrent_steps_are_numbered_in_call_order(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()

    async def slow(n: int) -> int:
        await asyncio.sleep(0.01 * (5 - n))
        return n

    @tasks.task(id="fan-out", registry=registry)
    async def fan_out(ctx: context.TaskContext, payload: dict[str, Any]) -> list[int]:
        return list(await asyncio.gather(*(ctx.step(f"part-{n}", slow, n) for n in range(5))))

    run_id = await new_run("fan-out")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.output == [0, 1, 2, 3, 4]
    recorded = await steps.load_steps(pool, run_id)
    assert [(step.seq, step.name) for step in recorded] == [
        (n + 1, f"part-{n}") for n in range(5)]
    outcome = await run_attempt(pool, run_id, 2, registry)
    assert outcome.output == [0, 1, 2, 3, 4]

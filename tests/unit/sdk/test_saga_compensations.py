"""Compensations (sagas) in the worker, against the real Postgres of the SDK tests.

A task registers undos with `@step(compensate=...)` and `ctx.compensate(...)`; an
attempt in compensation mode (`compensating.run_compensations`) runs the pending
ones newest first and checkpoints each, so a finished one never runs again, and
ends its attempt without touching the run's output or error.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from attempting import run_attempt, start_attempt

from durakube import capturing, compensating, context, errors, tasks
from durakube.store import attempts, compensations, logs, runs, working
from durakube.testing import AsyncLocalRunner

# What the undos did, in order: (name, arguments).
UNDONE: list[tuple[str, Any]] = []
# Undos that raise while this many failures are left, by name.
FAILURES_LEFT: dict[str, int] = {}


def _undo(name: str, *args: Any) -> None:
    if FAILURES_LEFT.get(name, 0) > 0:
        FAILURES_LEFT[name] -= 1
        raise ConnectionError(f"{name} is unreachable")
    UNDONE.append((name, args))


async def cancel_hotel(result: dict[str, Any], city: str) -> None:
    _undo("cancel_hotel", result, city)


def cancel_flight(booking: str, *, refund: bool) -> None:
    """A plain `def` undo: it runs in a thread of its own."""
    _undo("cancel_flight", booking, refund)


async def cancel_car(booking: str) -> None:
    _undo("cancel_car", booking)


@tasks.step(compensate=cancel_hotel)
async def book_hotel(city: str) -> dict[str, Any]:
    return {"hotel": f"H-{city}"}


async def book_flight(city: str) -> str:
    return f"F-{city}"


async def book_car(city: str) -> str:
    raise ValueError(f"no car left in {city}")


async def trip(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    """Books a hotel, a flight and a car; the car fails permanently."""
    await book_hotel(payload["city"])
    flight = await ctx.step("book_flight", book_flight, payload["city"])
    await ctx.compensate(cancel_flight, flight, refund=True)
    if ctx.attempt == 1 and payload.get("crash_first"):
        raise errors.RetryableError("the first attempt is cut short")
    await ctx.step("book_car", book_car, payload["city"])


@pytest.fixture(autouse=True)
def fresh_effects() -> None:
    UNDONE.clear()
    FAILURES_LEFT.clear()


@pytest.fixture
def registry() -> tasks.Registry:
    registry = tasks.Registry()
    tasks.task(id="trip", registry=registry)(trip)
    return registry


async def compensate(pool: Any, run_id: str, attempt: int) -> attempts.Outcome:
    """Runs attempt `attempt` in compensation mode, as its pod would."""
    secret = await start_attempt(pool, run_id, attempt)
    return await compensating.run_compensations(pool, run_id, attempt, secret=secret)


async def test_compensations_of_completed_steps_run_newest_first_once(
        pool: Any, new_run: Any, registry: tasks.Registry) -> None:
    run_id = await new_run("trip", {"city": "Oslo"})
    failed = await run_attempt(pool, run_id, 1, registry)
    assert failed.kind == "failed"
    recorded = await compensations.load_compensations(pool, run_id)
    assert [(c.step_seq, c.name, c.args) for c in recorded] == [
        (2, "test_saga_compensations:cancel_flight", {"args": ["F-Oslo"], "kwargs": {"refund": True}}),
        (1, "test_saga_compensations:cancel_hotel",
         {"args": [{"hotel": "H-Oslo"}, "Oslo"], "kwargs": {}})]

    done = await compensate(pool, run_id, 2)

    assert done == attempts.Outcome("succeeded", output={"completed": 2, "total": 2})
    assert UNDONE == [("cancel_flight", ("F-Oslo", True)),
                      ("cancel_hotel", ({"hotel": "H-Oslo"}, "Oslo"))]
    assert await compensations.summarize_compensations(pool, run_id) == compensations.Summary(
        total=2, completed=2, failing=0)
    # The run keeps the error it failed with.
    run = await runs.load_run(pool, run_id)
    assert run is not None and run.error is not None and "no car left" in run.error["message"]
    # Nothing is left for a later attempt: no compensation runs twice.
    assert await compensate(pool, run_id, 3) == attempts.Outcome(
        "succeeded", output={"completed": 2, "total": 2})
    assert len(UNDONE) == 2


async def test_a_failed_compensation_is_retried_and_the_finished_ones_are_not(
        pool: Any, new_run: Any, registry: tasks.Registry) -> None:
    run_id = await new_run("trip", {"city": "Rome"})
    await run_attempt(pool, run_id, 1, registry)
    FAILURES_LEFT["cancel_hotel"] = 1

    first = await compensate(pool, run_id, 2)

    assert first.kind == "retry" and first.error is not None
    assert first.error["type"] == "ConnectionError"
    assert first.error["compensation"] == {"name": "test_saga_compensations:cancel_hotel",
                                           "step": 1, "position": 0}
    assert first.output == {"completed": 1, "total": 2}
    assert await compensations.summarize_compensations(pool, run_id) == compensations.Summary(
        total=2, completed=1, failing=1)
    second = await compensate(pool, run_id, 3)
    assert second.kind == "succeeded"
    assert [name for name, _ in UNDONE] == ["cancel_flight", "cancel_hotel"]
    hotel = (await compensations.load_compensations(pool, run_id))[1]
    assert (hotel.status, hotel.tries, hotel.completed_attempt) == ("completed", 2, 3)


async def test_a_replayed_step_records_its_compensation_once(
        pool: Any, new_run: Any, registry: tasks.Registry) -> None:
    run_id = await new_run("trip", {"city": "Lima", "crash_first": True})
    assert (await run_attempt(pool, run_id, 1, registry)).kind == "retry"
    assert (await run_attempt(pool, run_id, 2, registry)).kind == "failed"
    recorded = await compensations.load_compensations(pool, run_id)
    assert [(c.step_seq, c.position, c.recorded_attempt) for c in recorded] == [(2, 0, 1),
                                                                              (1, 0, 1)]
    await compensate(pool, run_id, 3)
    assert [name for name, _ in UNDONE] == ["cancel_flight", "cancel_hotel"]


async def test_what_a_compensating_attempt_writes_is_its_stored_log(
        pool: Any, new_run: Any, registry: tasks.Registry) -> None:
    run_id = await new_run("trip", {"city": "Oslo"})
    await run_attempt(pool, run_id, 1, registry)
    output = capturing.Output()
    FAILURES_LEFT["cancel_hotel"] = 1
    secret = await start_attempt(pool, run_id, 2)
    output.buffer.write(b"compensating\n")
    outcome = await compensating.run_compensations(pool, run_id, 2, secret=secret, output=output)
    assert outcome.kind == "retry"
    stored = {log.attempt: log.text for log in await logs.read_logs(pool, run_id)}
    assert stored[2] == "compensating\n"


def return_car(booking: str, city: str) -> None:
    _undo("return_car", booking, city)


@tasks.step(compensate=return_car)
def rent_car_blocking(city: str) -> str:
    return f"C-{city}"


def trip_in_a_thread(ctx: Any, payload: dict[str, Any]) -> None:
    """A `def` task: its `def` step's undo and `ctx.compensate` are blocking calls."""
    rent_car_blocking(payload["city"])
    ctx.step("book_flight", book_flight, payload["city"])
    ctx.compensate(cancel_flight, "F-1", refund=False)
    raise ValueError("the trip is off")


async def test_a_def_task_registers_compensations_as_an_async_one_does(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    tasks.task(id="trip-in-a-thread", registry=registry)(trip_in_a_thread)
    run_id = await new_run("trip-in-a-thread", {"city": "Bern"})
    assert (await run_attempt(pool, run_id, 1, registry)).kind == "failed"
    assert (await compensate(pool, run_id, 2)).kind == "succeeded"
    assert UNDONE == [("cancel_flight", ("F-1", False)), ("return_car", ("C-Bern", "Bern"))]


async def compensate_first(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    await ctx.compensate(cancel_car, "C-1")


async def compensate_with_a_lambda(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    await ctx.step("book_flight", book_flight, "Oslo")
    await ctx.compensate(lambda: None)


async def compensate_with_an_object(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    await ctx.step("book_flight", book_flight, "Oslo")
    await ctx.compensate(cancel_car, object())


@pytest.mark.parametrize(("fn", "error_type"), [
    (compensate_first, "RuntimeError"),
    (compensate_with_a_lambda, "TypeError"),
    (compensate_with_an_object, "durakube.errors.NonSerializableState"),
], ids=["before-any-step", "a-lambda", "arguments-not-json"])
async def test_a_compensation_that_cannot_be_recorded_fails_the_run(
        pool: Any, new_run: Any, fn: Any, error_type: str) -> None:
    registry = tasks.Registry()
    tasks.task(id="bad", registry=registry)(fn)
    run_id = await new_run("bad")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.kind == "failed" and outcome.error is not None
    assert outcome.error["type"] == error_type
    assert await compensations.load_compensations(pool, run_id) == []


def test_a_nested_function_cannot_be_a_compensation() -> None:
    def undo() -> None: ...

    with pytest.raises(TypeError, match="module-level function"):
        tasks.step(compensate=undo)
    assert compensating.import_name(cancel_car) == "test_saga_compensations:cancel_car"
    assert compensating.resolve("test_saga_compensations:cancel_car") is cancel_car


async def test_only_a_completed_step_can_have_a_compensation(pool: Any, new_run: Any) -> None:
    run_id = await new_run("trip")
    secret = await start_attempt(pool, run_id, 1)
    credential = working.Credential(run_id, 1, secret)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="has not completed"):
        await working.record_compensation(pool, credential, step_seq=1, position=0,
                                          name="m:undo", args={"args": [], "kwargs": {}})


async def test_the_local_runner_compensates_a_failed_run(
        database_dsn: str, registry: tasks.Registry) -> None:
    FAILURES_LEFT["cancel_flight"] = 1
    async with AsyncLocalRunner(database_dsn, registry=registry) as runner:
        result = await runner.run("trip", {"city": "Kyiv"})
    assert result.phase == "Failed" and result.error is not None
    assert "no car left in Kyiv" in result.error["message"]
    assert UNDONE == [("cancel_flight", ("F-Kyiv", True)),
                      ("cancel_hotel", ({"hotel": "H-Kyiv"}, "Kyiv"))]
    assert [(c.name.split(":")[1], c.status, c.tries) for c in result.compensations] == [
        ("cancel_flight", "completed", 2), ("cancel_hotel", "completed", 1)]
    # The task's attempt, then two in compensation mode: the first failed on the flight.
    assert [attempt.outcome for attempt in result.attempts] == ["failed", "retry", "succeeded"]
    assert len(result.backoffs) == 1

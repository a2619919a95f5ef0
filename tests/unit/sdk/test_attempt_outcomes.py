"""Attempt outcomes: classified, recorded once, and atomic with the last checkpoint."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pydantic
import pytest
from attempting import run_attempt

from durakube import context, errors, retry, tasks, worker
from durakube.store import attempts, runs, steps


class Order(pydantic.BaseModel):
    order_id: str
    amount: int = pydantic.Field(gt=0)


RETRY_AT = datetime(2031, 1, 1, tzinfo=UTC)


async def raise_retryable(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    raise errors.RetryableError("rate limited", retry_at=RETRY_AT)


async def raise_listed(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    raise ConnectionResetError("peer reset")


async def raise_plain(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    raise ValueError("bad input")


async def raise_permanent(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    raise errors.PermanentError("account closed")


async def sleep_too_long(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    await asyncio.sleep(5)


@pytest.mark.parametrize(
    ("fn", "kind", "error_type", "task_timeout"),
    [
        (raise_retryable, "retry", "durakube.errors.RetryableError", None),
        (raise_listed, "retry", "ConnectionResetError", None),
        (raise_plain, "failed", "ValueError", None),
        (raise_permanent, "failed", "durakube.errors.PermanentError", None),
        (sleep_too_long, "retry", "durakube.errors.AttemptTimedOut", 0.05),
    ],
    ids=["retryable-error", "listed-in-retry-on", "plain-exception", "permanent", "timeout"],
)
async def test_errors_become_retry_or_failed_outcomes(
        pool: Any, new_run: Any, fn: Any, kind: str, error_type: str,
        task_timeout: float | None) -> None:
    registry = tasks.Registry()
    policy = retry.Retry(on=["ConnectionError"], min_timeout=10, max_timeout=10)
    tasks.task(id="failing", registry=registry, retry=policy, timeout=task_timeout)(fn)
    run_id = await new_run("failing")

    outcome = await run_attempt(pool, run_id, 1, registry)

    assert outcome.kind == kind
    assert outcome.error is not None and outcome.error["type"] == error_type
    assert outcome.error["retryable"] is (kind == "retry")
    # Only the task's own request names a time; the operator computes every other delay.
    assert outcome.retry_at == (RETRY_AT if fn is raise_retryable else None)
    assert outcome.policy == policy
    assert await attempts.read_outcome(pool, run_id, 1) == outcome
    run = await runs.load_run(pool, run_id)
    assert run is not None and run.error == outcome.error and run.status == "Pending"


async def raise_retryable_without_time(ctx: context.TaskContext,
                                       payload: dict[str, Any]) -> None:
    raise errors.RetryableError("busy")


async def fail_in_step(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    async def parse() -> None:
        raise ValueError("bad row")

    await ctx.step("parse", parse)


DECORATOR_POLICY = retry.Retry(max_attempts=5, on=["ConnectionError"], min_timeout=2,
                               max_timeout=2)


@pytest.mark.parametrize(
    ("fn", "spec_on", "kind"),
    [
        (raise_plain, ["ValueError"], "retry"),
        (fail_in_step, ["ValueError"], "retry"),
        (raise_listed, [], "failed"),
        (raise_retryable_without_time, [], "retry"),
        (raise_permanent, ["PermanentError"], "failed"),
    ],
    ids=["spec-lists-the-type", "spec-lists-a-step-error-type", "spec-replaces-decorator-on",
         "retryable-error-always", "own-errors-decide-for-themselves"],
)
async def test_spec_policy_from_the_environment_classifies_errors(
        pool: Any, new_run: Any, fn: Any, spec_on: list[str], kind: str) -> None:
    registry = tasks.Registry()
    tasks.task(id="failing", registry=registry, retry=DECORATOR_POLICY)(fn)
    run_id = await new_run("failing")
    spec_policy = retry.Retry(max_attempts=2, min_timeout=30, max_timeout=30, on=spec_on)
    settings = worker.read_settings({
        "DURAKUBE_RUN_ID": run_id, "DURAKUBE_ATTEMPT": "1", "DURAKUBE_DATABASE_URL": "unused",
            "DURAKUBE_ATTEMPT_SECRET": "unused",
        "DURAKUBE_RETRY_POLICY": spec_policy.model_dump_json()})
    assert worker.spec_retry_policy(settings) == spec_policy

    outcome = await run_attempt(pool, run_id, 1, registry,
                                       retry_policy=worker.spec_retry_policy(settings))

    assert outcome.kind == kind
    assert outcome.error is not None and outcome.error["retryable"] is (kind == "retry")
    # The operator knows a spec's policy, and computes the delay itself.
    assert (outcome.retry_at, outcome.policy) == (None, None)
    assert await attempts.read_outcome(pool, run_id, 1) == outcome


async def test_a_retry_time_is_recorded_only_when_the_task_asked_for_one(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    tasks.task(id="asks", registry=registry)(raise_retryable)
    tasks.task(id="does-not-ask", registry=registry)(raise_retryable_without_time)
    spec_policy = retry.Retry(min_timeout=30, max_timeout=30)
    for task_id, retry_at in (("asks", RETRY_AT), ("does-not-ask", None)):
        for policy in (None, spec_policy):
            run_id = await new_run(task_id)
            outcome = await run_attempt(pool, run_id, 1, registry, retry_policy=policy)
            assert (outcome.kind, outcome.retry_at) == ("retry", retry_at)
            assert await attempts.read_outcome(pool, run_id, 1) == outcome


async def test_decorator_policy_is_recorded_when_no_spec_policy_is_given(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    tasks.task(id="failing", registry=registry, retry=DECORATOR_POLICY)(raise_listed)
    run_id = await new_run("failing")

    outcome = await run_attempt(pool, run_id, 1, registry)

    assert outcome.kind == "retry"
    assert outcome.policy == DECORATOR_POLICY
    recorded = await attempts.read_outcome(pool, run_id, 1)
    assert recorded is not None and recorded.policy == DECORATOR_POLICY
    (attempt,) = await attempts.load_attempts(pool, run_id)
    assert attempt.policy == DECORATOR_POLICY


async def test_retryable_step_error_is_not_recorded_so_the_step_runs_again(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    calls = Counter[str]()

    async def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise errors.RetryableError("try later")
        return "ok"

    @tasks.task(id="flaky", registry=registry)
    async def flaky_task(ctx: context.TaskContext, payload: dict[str, Any]) -> str:
        result: str = await ctx.step("flaky", flaky)
        return result

    run_id = await new_run("flaky")
    assert (await run_attempt(pool, run_id, 1, registry)).kind == "retry"
    assert await steps.load_steps(pool, run_id) == []
    assert await run_attempt(pool, run_id, 2, registry) == attempts.Outcome(
        "succeeded", output="ok")
    assert calls == {"flaky": 2}


@pytest.mark.parametrize(
    ("payload", "kind", "message"),
    [
        ({"order_id": "o-1", "amount": 3}, "succeeded", None),
        ({"order_id": "o-1", "amount": 0}, "failed", "amount\n  Input should be greater than 0"),
        ({"amount": 3}, "failed", "order_id\n  Field required"),
    ],
    ids=["valid", "out-of-range", "missing-field"],
)
async def test_payload_is_validated_against_the_input_model(
        pool: Any, new_run: Any, payload: dict[str, Any], kind: str, message: str | None) -> None:
    registry = tasks.Registry()

    @tasks.task(id="bill", registry=registry)
    async def bill(ctx: context.TaskContext, payload: Order) -> Order:
        return payload

    run_id = await new_run("bill", payload)
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.kind == kind
    if message is None:
        assert outcome.output == payload
    else:
        assert outcome.error is not None and outcome.error["code"] == "InvalidPayload"
        assert message in outcome.error["message"]


async def test_unknown_task_fails_the_attempt_listing_known_tasks(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    tasks.task(id="known", registry=registry)(raise_plain)
    run_id = await new_run("unknown")
    outcome = await run_attempt(pool, run_id, 1, registry)
    assert outcome.kind == "failed" and outcome.error is not None
    assert outcome.error["code"] == "TaskNotFound"
    assert "'known'" in outcome.error["message"]


async def test_a_worker_of_an_unknown_run_is_refused_and_records_nothing(pool: Any) -> None:
    with pytest.raises(errors.AttemptRevoked, match="attempt 1 of run nope"):
        await worker.run_attempt(pool, "nope", 1, tasks.Registry(), secret="guessed")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM durakube.attempts") == 0


async def test_outcome_is_recorded_once(pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    calls = Counter[str]()

    @tasks.task(id="once", registry=registry)
    async def once(ctx: context.TaskContext, payload: dict[str, Any]) -> int:
        calls["ran"] += 1
        return calls["ran"]

    run_id = await new_run("once")
    first = await run_attempt(pool, run_id, 1, registry)
    assert first == attempts.Outcome("succeeded", output=1)
    # A restarted container of the ended attempt: its credential was revoked with the outcome.
    with pytest.raises(errors.AttemptRevoked):
        await run_attempt(pool, run_id, 1, registry)
    assert calls == {"ran": 1}
    assert await attempts.read_outcome(pool, run_id, 1) == first


async def test_outcome_is_written_atomically_with_the_last_checkpoint(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    calls = Counter[str]()

    async def charge() -> None:
        calls["charge"] += 1
        raise ValueError("declined")

    @tasks.task(id="atomic", registry=registry)
    async def atomic(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        ctx.state["tried"] = True
        await ctx.step("charge", charge)

    run_id = await new_run("atomic")
    # Make writing any outcome fail, as a lost connection at commit time would.
    async with pool.acquire() as conn:
        await conn.execute("""
            CREATE FUNCTION durakube.refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'outcome refused'; END $$;
            CREATE TRIGGER refuse_outcome BEFORE UPDATE ON durakube.attempts
            FOR EACH ROW WHEN (NEW.outcome IS NOT NULL)
            EXECUTE FUNCTION durakube.refuse_outcome();""")
    with pytest.raises(asyncpg.RaiseError, match="outcome refused"):
        await run_attempt(pool, run_id, 1, registry)
    # The failed step went down with the outcome: neither exists.
    assert await steps.load_steps(pool, run_id) == []
    assert await attempts.read_outcome(pool, run_id, 1) is None
    run = await runs.load_run(pool, run_id)
    assert run is not None and run.state == {} and run.error is None

    async with pool.acquire() as conn:
        await conn.execute("DROP TRIGGER refuse_outcome ON durakube.attempts")
    outcome = await run_attempt(pool, run_id, 2, registry)
    assert outcome.kind == "failed"
    (step,) = await steps.load_steps(pool, run_id)
    assert (step.status, step.attempt, step.state) == ("failed", 2, {"tried": True})
    assert calls == {"charge": 2}  # the unrecorded step ran again: at least once
    run = await runs.load_run(pool, run_id)
    assert run is not None and run.state == {"tried": True} and run.error == outcome.error


async def test_success_records_output_state_and_attempt_together(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()

    @tasks.task(id="sum", registry=registry)
    async def total(ctx: context.TaskContext, payload: dict[str, Any]) -> dict[str, int]:
        ctx.state["partial"] = await ctx.step("add", lambda: sum(payload["numbers"]))
        ctx.state["done"] = True
        return {"total": ctx.state["partial"]}

    run_id = await new_run("sum", {"numbers": [1, 2, 3]})
    outcome = await run_attempt(pool, run_id, 1, registry, pod_name="sum-1")
    assert outcome == attempts.Outcome("succeeded", output={"total": 6})
    run = await runs.load_run(pool, run_id)
    assert run is not None
    assert (run.output, run.state, run.attempt) == ({"total": 6}, {"partial": 6, "done": True}, 1)
    (attempt,) = await attempts.load_attempts(pool, run_id)
    assert (attempt.pod_name, attempt.outcome, attempt.output) == ("sum-1", "succeeded",
                                                                   {"total": 6})
    assert attempt.finished_at is not None and attempt.finished_at >= attempt.started_at

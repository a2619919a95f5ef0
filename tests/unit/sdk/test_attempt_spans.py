"""The worker's spans: an attempt under the run's span, its steps under it, sent over OTLP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from attempting import run_attempt
from collecting import SpanCollector

from durakube import context, errors, tasks, tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RUN_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def collector() -> Iterator[SpanCollector]:
    receiving = SpanCollector()
    try:
        yield receiving
    finally:
        receiving.stop()


async def fail(reason: str) -> None:
    raise ValueError(reason)


async def test_an_attempt_sends_its_steps_failed_and_suspending_ones_marked(
        pool: Any, new_run: Any, collector: SpanCollector) -> None:
    registry = tasks.Registry()

    @tasks.task(id="steps-then-sleep", registry=registry)
    async def steps_then_sleep(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        await ctx.step("one", lambda: 1)
        try:
            await ctx.step("two", fail, "no such page")
        except errors.StepFailed:
            pass
        await ctx.sleep("1h")

    run_id = await new_run("steps-then-sleep")
    traced = tracing.start_attempt(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
         "TRACEPARENT": f"00-{TRACE}-{RUN_SPAN}-01"},
        run_id=run_id, attempt=1, pod_name="steps-then-sleep-1", task_id="steps-then-sleep")
    assert traced is not tracing.OFF
    outcome = await run_attempt(pool, run_id, 1, registry)
    traced.outcome(outcome)
    traced.finish()

    spans = {span.name: span for span in collector.spans(TRACE)}
    assert set(spans) == {"attempt 1", "step one", "step two", "step sleep"}
    attempt = spans["attempt 1"]
    assert attempt.parent_span_id == RUN_SPAN
    assert attempt.service == "durakube-worker"
    assert attempt.attributes == {
        "durakube.run.id": run_id, "durakube.attempt": 1, "k8s.pod.name": "steps-then-sleep-1",
        "durakube.task": "steps-then-sleep", "durakube.attempt.outcome": "suspended",
        "durakube.attempt.reason": "sleep"}
    assert attempt.status == "UNSET"
    for name, seq in (("one", 1), ("two", 2), ("sleep", 3)):
        step = spans[f"step {name}"]
        assert step.parent_span_id == attempt.span_id
        assert (step.attributes["durakube.step.seq"], step.attributes["durakube.step.replayed"]) == (
            seq, False)
    assert spans["step one"].status == "UNSET"
    assert spans["step two"].status == "ERROR"
    assert spans["step sleep"].attributes["durakube.step.suspended"] is True
    assert spans["step sleep"].status == "UNSET"

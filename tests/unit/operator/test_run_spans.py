"""The run's span as the operator exports it when the run ends, received over OTLP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from collecting import SpanCollector

from durakube import resources, tracing
from durakube_operator import settings
from durakube_operator import tracing as run_tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"
CREATED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ENDED = datetime(2026, 3, 4, 18, 30, tzinfo=UTC)


@pytest.fixture
def collector() -> Iterator[SpanCollector]:
    receiving = SpanCollector()
    try:
        yield receiving
    finally:
        receiving.stop()


def body(uid: str, annotations: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": f"report-{uid}", "namespace": "team-a", "uid": uid,
                         "annotations": annotations},
            "spec": {"taskRef": {"name": "report"}}}


def ended(phase: resources.Phase, reason: str, attempts: int) -> resources.TaskRunStatus:
    status = resources.ConditionStatus.TRUE if phase == resources.Phase.SUCCEEDED \
        else resources.ConditionStatus.FALSE
    return resources.TaskRunStatus(
        phase=phase, attempt=attempts, completion_time=ENDED,
        conditions=[resources.Condition(type="Succeeded", status=status, reason=reason,
                                        message=f"ended {reason}",
                                        last_transition_time=ENDED)])


def test_runs_spans_keep_their_derived_ids_times_and_outcome(collector: SpanCollector) -> None:
    config = settings.Settings(database_url="postgresql://db/x", otlp_endpoint=collector.endpoint)
    spans = run_tracing.start(config)
    caller = {tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{CALLER}-01"}
    spans.run_ended(body("uid-1", caller), "team-a/default", CREATED,
                    ended(resources.Phase.FAILED, "TaskFailed", 3))
    spans.run_ended(body("uid-2", {}), "team-a/gpu", CREATED,
                    ended(resources.Phase.SUCCEEDED, "Succeeded", 1))
    spans.close()

    [failed] = collector.spans(TRACE)
    assert (failed.span_id, failed.parent_span_id) == (tracing.run_span_id("uid-1"), CALLER)
    assert failed.name == "run report" and failed.service == "durakube-operator"
    assert failed.status == "ERROR"
    assert (failed.start_ns, failed.end_ns) == (int(CREATED.timestamp()) * 10**9,
                                                int(ENDED.timestamp()) * 10**9)
    assert failed.attributes == {
        "durakube.run.id": "uid-1", "durakube.run.name": "report-uid-1",
        "k8s.namespace.name": "team-a", "durakube.task": "report", "durakube.queue": "team-a/default",
        "durakube.run.phase": "Failed", "durakube.run.attempts": 3, "durakube.run.reason": "TaskFailed"}
    # Created outside any trace: the root of a trace of its own, with ids from its uid.
    [succeeded] = collector.spans(tracing.run_trace_id("uid-2"))
    assert (succeeded.span_id, succeeded.parent_span_id) == (tracing.run_span_id("uid-2"), "")
    assert succeeded.status == "UNSET"


def test_an_unsampled_run_exports_nothing(collector: SpanCollector) -> None:
    config = settings.Settings(database_url="postgresql://db/x", otlp_endpoint=collector.endpoint,
                               trace_sample_ratio=0.0)
    spans = run_tracing.start(config)
    spans.run_ended(body("uid-3", {}), "team-a/default", CREATED,
                    ended(resources.Phase.SUCCEEDED, "Succeeded", 1))
    unsampled = {tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{CALLER}-00"}
    spans.run_ended(body("uid-4", unsampled), "team-a/default", CREATED,
                    ended(resources.Phase.SUCCEEDED, "Succeeded", 1))
    spans.close()
    assert collector.received == []


def test_without_an_endpoint_nothing_is_built() -> None:
    assert run_tracing.start(settings.Settings(database_url="postgresql://db/x")) is run_tracing.OFF

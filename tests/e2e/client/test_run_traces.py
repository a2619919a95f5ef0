"""Traces of runs end to end: the caller's span, through the TaskRun, to the attempt pods.

The installed operator sends spans to the session's OTLP/HTTP receiver (`collecting`)
and gives its endpoint to attempt pods; runs created outside a trace are not sampled
on the test bed, so only these tests' runs send spans.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes
import pytest
from clientbed import client, install_tasks
from collecting import ReceivedSpan, SpanCollector
from helpers import InstalledOperator, get_taskrun, wait_for
from opentelemetry.sdk.trace import TracerProvider

from devcluster import cluster as devcluster_cluster
from durakube import tracing
from durakube.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
__all__ = ["client"]  # a fixture, imported for pytest

DURAKUBE = str(Path(sys.executable).parent / "durakube")


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


def test_a_run_retried_once_is_one_trace_under_the_callers_span(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str,
        span_collector: SpanCollector) -> None:
    install_tasks(custom, namespace, "traced")
    tracer = TracerProvider().get_tracer("the test")
    with tracer.start_as_current_span("caller") as caller:
        handle = client.trigger("traced-retry", {})
    trace_id = f"{caller.get_span_context().trace_id:032x}"
    caller_id = f"{caller.get_span_context().span_id:016x}"
    summary = client.wait(handle, timeout=90)
    assert summary.phase == "Succeeded", summary
    child_name = client.output(handle)["child"]
    # The operator creates the child's TaskRun from the request the parent recorded.
    wait_for(lambda: child_name in {run.name for run in client.list(task="traced-child")},
             what=f"child run {child_name}")
    assert client.wait(child_name, timeout=90).phase == "Succeeded"

    # Two runs (their spans come when they end), three attempts, four steps.
    spans = span_collector.wait_for(trace_id, lambda found: (
        len([s for s in found if s.name.startswith("run ")]) == 2
        and len([s for s in found if s.name.startswith("attempt ")]) == 3
        and len([s for s in found if s.name.startswith("step ")]) == 4))
    for span in spans:
        print(f"{span.service:18} {span.span_id} <- {span.parent_span_id or '-':16} "
              f"{span.name} {span.status} {span.attributes}")
    assert {span.trace_id for span in spans} == {trace_id}

    # The run's span: under the caller's, with the id the operator derived from its uid.
    [run] = named(spans, "run traced-retry")
    assert run.parent_span_id == caller_id
    assert run.span_id == tracing.run_span_id(handle.run_id)
    assert run.service == "durakube-operator"
    assert run.attributes["durakube.run.phase"] == "Succeeded"
    assert run.attributes["durakube.run.attempts"] == 2
    assert run.attributes["k8s.namespace.name"] == namespace
    assert run.attributes["durakube.task"] == "traced-retry"
    assert run.status == "UNSET"

    # Two attempts, children of the run's span; the first failed retryably.
    attempts = sorted((span for span in spans if span.parent_span_id == run.span_id),
                      key=lambda span: span.attributes["durakube.attempt"])
    assert [span.name for span in attempts] == ["attempt 1", "attempt 2"]
    assert [span.attributes["durakube.attempt.outcome"] for span in attempts] == ["retry",
                                                                                  "succeeded"]
    assert "RetryableError" in attempts[0].attributes["durakube.attempt.reason"]
    assert attempts[0].status == "ERROR"
    assert {span.service for span in attempts} == {"durakube-worker"}

    # Steps under their attempt: the second attempt replays the first step.
    def steps_of(attempt: ReceivedSpan) -> list[tuple[str, int, bool]]:
        return sorted((span.attributes["durakube.step.name"], span.attributes["durakube.step.seq"],
                       span.attributes["durakube.step.replayed"])
                      for span in spans if span.parent_span_id == attempt.span_id)

    assert steps_of(attempts[0]) == [("first", 1, False)]
    assert steps_of(attempts[1]) == [("first", 1, True), ("trigger:traced-child", 2, False)]

    # The child run's span is a child of the step that triggered it.
    [trigger] = named(spans, "step trigger:traced-child")
    [child] = named(spans, "run traced-child")
    assert child.parent_span_id == trigger.span_id
    child_run = get_taskrun(custom, namespace, child_name)
    assert child.span_id == tracing.run_span_id(child_run["metadata"]["uid"])
    [child_attempt] = [span for span in spans if span.parent_span_id == child.span_id]
    assert child_attempt.attributes["durakube.attempt.outcome"] == "succeeded"


def test_the_cli_carries_traceparent_and_a_run_outside_any_trace_sends_nothing(
        cluster: devcluster_cluster.Cluster, operator: InstalledOperator,
        custom: kubernetes.client.CustomObjectsApi, namespace: str,
        span_collector: SpanCollector) -> None:
    install_tasks(custom, namespace, "traced")
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traceparent = f"00-{trace_id}-{parent_id}-01"
    env = {**cluster.env(), "DURAKUBE_DATABASE_URL": operator.database_url}

    def trigger(extra: dict[str, str]) -> str:
        result = subprocess.run(
            [DURAKUBE, "-n", namespace, "trigger", "traced-child", "--payload", '{"from": "cli"}',
             "--wait", "--timeout", "90", "-o", "json"],
            env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stderr.split("taskrun/", 1)[1].split()[0]

    traced_name = trigger({"TRACEPARENT": traceparent, "TRACESTATE": "vendor=value"})
    untraced_name = trigger({})
    traced = get_taskrun(custom, namespace, traced_name)["metadata"]
    assert traced["annotations"][tracing.ANNOTATION_TRACEPARENT] == traceparent
    assert traced["annotations"][tracing.ANNOTATION_TRACESTATE] == "vendor=value"

    spans = span_collector.wait_for(trace_id, lambda found: len(found) == 3)
    [run] = named(spans, "run traced-child")
    assert run.parent_span_id == parent_id
    [attempt] = named(spans, "attempt 1")
    assert attempt.parent_span_id == run.span_id
    [step] = named(spans, "step say")
    assert step.parent_span_id == attempt.span_id

    # The run created with no trace context is not sampled here (the test bed's ratio is 0):
    # no span of it, neither the operator's nor a worker's.
    untraced = get_taskrun(custom, namespace, untraced_name)["metadata"]
    assert tracing.ANNOTATION_TRACEPARENT not in (untraced.get("annotations") or {})
    own_trace = tracing.run_trace_id(untraced["uid"])
    assert span_collector.spans(own_trace) == []
    assert not [span for span in span_collector.received
                if span.attributes.get("durakube.run.id") == untraced["uid"]]

"""The operator's side of traces: settings, the attempt pod's trace env, a child's context."""

from __future__ import annotations

from typing import Any

import pytest

from durakube import resources, tracing
from durakube.store import children as stored
from durakube_operator import children, pods, settings

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
ENDPOINT = "http://collector.observability:4318"
TRACED = settings.Settings(database_url="postgresql://db/durakube", otlp_endpoint=ENDPOINT)
TASK = resources.Task.model_validate({
    "metadata": {"name": "resize", "namespace": "team-a"},
    "spec": {"image": "ghcr.io/acme/tasks:1.2", "entrypoint": "resize"}})


def make_run(annotations: dict[str, str] | None = None) -> resources.TaskRun:
    return resources.TaskRun.model_validate({
        "metadata": {"name": "report", "namespace": "team-a", "uid": "uid-1",
                     "annotations": annotations or {}},
        "spec": {"taskRef": {"name": "resize"}, "payload": {}}})


def pod_env(run: resources.TaskRun, config: settings.Settings,
            task: resources.Task = TASK) -> dict[str, str]:
    container = pods.build_attempt_pod(run, task, 2, config)["spec"]["containers"][0]
    names = [item["name"] for item in container["env"]]
    assert len(names) == len(set(names)), names
    return {item["name"]: item.get("value") for item in container["env"]}


@pytest.mark.parametrize(("environ", "endpoint", "traces_endpoint", "ratio"), [
    ({}, None, None, 1.0),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ENDPOINT, None, 1.0),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318", "DURAKUBE_OTLP_ENDPOINT": ENDPOINT},
     ENDPOINT, None, 1.0),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces",
      "DURAKUBE_TRACE_SAMPLE_RATIO": "0.1"}, None, f"{ENDPOINT}/v1/traces", 0.1),
], ids=["off", "otel-variable", "own-setting-first", "traces-endpoint"])
def test_the_endpoint_defaults_to_the_operators_own_otel_variable(
        environ: dict[str, str], endpoint: str | None, traces_endpoint: str | None,
        ratio: float) -> None:
    config = settings.Settings.from_environ({"DURAKUBE_DATABASE_URL": "postgresql://db/x", **environ})
    assert (config.otlp_endpoint, config.otlp_traces_endpoint) == (endpoint, traces_endpoint)
    assert config.tracing is bool(endpoint or traces_endpoint)
    assert config.trace_sample_ratio == ratio


def test_a_bad_sample_ratio_stops_the_operator() -> None:
    with pytest.raises(settings.SettingsError, match="DURAKUBE_TRACE_SAMPLE_RATIO must be at most 1"):
        settings.Settings.from_environ({"DURAKUBE_DATABASE_URL": "postgresql://db/x",
                                        "DURAKUBE_TRACE_SAMPLE_RATIO": "2"})


def test_a_traced_attempt_pod_gets_the_endpoint_and_the_runs_span_as_parent() -> None:
    env = pod_env(make_run(), TRACED)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == ENDPOINT
    assert env["OTEL_SERVICE_NAME"] == "durakube-worker"
    assert env["TRACEPARENT"] == (f"00-{tracing.run_trace_id('uid-1')}-"
                                  f"{tracing.run_span_id('uid-1')}-01")
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in env and "TRACESTATE" not in env


def test_the_callers_trace_reaches_the_pod_through_the_run() -> None:
    run = make_run({tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{SPAN}-01",
                    tracing.ANNOTATION_TRACESTATE: "vendor=1"})
    env = pod_env(run, TRACED)
    # The pod's parent is the run's span, in the caller's trace, not the caller's span.
    assert env["TRACEPARENT"] == f"00-{TRACE}-{tracing.run_span_id('uid-1')}-01"
    assert env["TRACESTATE"] == "vendor=1"


@pytest.mark.parametrize(("run", "config"), [
    (make_run(), settings.Settings(database_url="postgresql://db/durakube")),
    (make_run(), TRACED.model_copy(update={"trace_sample_ratio": 0.0})),
    (make_run({tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{SPAN}-00"}), TRACED),
], ids=["no-endpoint", "not-sampled-by-ratio", "caller-not-sampled"])
def test_an_untraced_run_gets_no_trace_env(run: resources.TaskRun, config: settings.Settings) -> None:
    env = pod_env(run, config)
    assert not {"TRACEPARENT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"} & set(env)


def test_a_tasks_own_otel_env_wins() -> None:
    task = TASK.model_copy(update={"spec": TASK.spec.model_copy(update={
        "pod_template": resources.PodTemplate.model_validate(
            {"env": [{"name": "OTEL_SERVICE_NAME", "value": "billing"}]})})})
    env = pod_env(make_run(), TRACED, task)
    assert env["OTEL_SERVICE_NAME"] == "billing"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == ENDPOINT


PARENT = {"metadata": {"name": "report", "namespace": "team-a", "uid": "uid-1"}}


def child_request(options: dict[str, Any]) -> stored.ChildRun:
    return stored.ChildRun(parent_run_id="uid-1", seq=3, task="resize", payload={},
                           options=options, parent_namespace="team-a", parent_name="report",
                           written_live=True)


def test_a_child_carries_the_trigger_steps_context_as_annotations_not_spec() -> None:
    child = child_request({"queue": "gpu", "traceparent": f"00-{TRACE}-{SPAN}-01",
                           "tracestate": "vendor=1"})
    manifest = children.child_manifest(child, PARENT, children.check_request(child, PARENT))
    assert manifest["spec"] == {"taskRef": {"name": "resize"}, "payload": {}, "queue": "gpu"}
    assert manifest["metadata"]["annotations"] == {
        tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{SPAN}-01",
        tracing.ANNOTATION_TRACESTATE: "vendor=1"}
    plain = child_request({})
    assert "annotations" not in children.child_manifest(plain, PARENT,
                                                        children.check_request(plain, PARENT))["metadata"]


def test_a_child_request_with_a_malformed_traceparent_is_refused() -> None:
    with pytest.raises(children.Refused, match="traceparent: Value error, not a W3C traceparent"):
        children.check_request(child_request({"traceparent": "00-nope"}), PARENT)

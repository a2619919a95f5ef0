"""Trace context: W3C traceparent parsing, the run span's derived ids, what the caller passes."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider

from durakube import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(("header", "expected"), [
    (f"00-{TRACE}-{SPAN}-01", tracing.TraceContext(TRACE, SPAN, True)),
    (f"00-{TRACE}-{SPAN}-00", tracing.TraceContext(TRACE, SPAN, False)),
    (f"  00-{TRACE}-{SPAN}-03 ", tracing.TraceContext(TRACE, SPAN, True)),
    (f"01-{TRACE}-{SPAN}-01-what-comes-later", tracing.TraceContext(TRACE, SPAN, True)),
    (f"ff-{TRACE}-{SPAN}-01", None),
    (f"00-{TRACE.upper()}-{SPAN}-01", None),
    (f"00-{'0' * 32}-{SPAN}-01", None),
    (f"00-{TRACE}-{'0' * 16}-01", None),
    (f"00-{TRACE}-{SPAN}-01-extra", None),
    (f"00-{TRACE[:-1]}-{SPAN}-01", None),
    ("", None),
    (None, None),
], ids=["sampled", "not-sampled", "other-flags", "future-version", "version-ff", "upper-case",
        "zero-trace", "zero-span", "extra-in-00", "short-trace", "empty", "missing"])
def test_traceparent_is_parsed_as_w3c_says(header: str | None,
                                           expected: tracing.TraceContext | None) -> None:
    assert tracing.parse(header) == expected


def test_a_context_formats_back_to_its_header_and_annotations() -> None:
    context = tracing.parse(f"00-{TRACE}-{SPAN}-01", "vendor=1,other=2")
    assert context is not None
    assert context.traceparent == f"00-{TRACE}-{SPAN}-01"
    assert context.annotations() == {tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{SPAN}-01",
                                     tracing.ANNOTATION_TRACESTATE: "vendor=1,other=2"}
    unsampled = tracing.parse(f"00-{TRACE}-{SPAN}-00")
    assert unsampled is not None and unsampled.annotations() == {
        tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{SPAN}-00"}


def test_an_oversized_tracestate_is_dropped_and_the_parent_kept() -> None:
    context = tracing.parse(f"00-{TRACE}-{SPAN}-01", "v=" + "x" * tracing.TRACESTATE_LIMIT)
    assert context == tracing.TraceContext(TRACE, SPAN, True, None)


def test_the_run_span_ids_are_derived_from_the_run_id_alone() -> None:
    run_id = "5f0c6c2e-3b1a-4a7e-9d55-0c8f3b1e2a10"
    assert tracing.run_span_id(run_id) == tracing.run_span_id(run_id)
    assert len(tracing.run_span_id(run_id)) == 16 and len(tracing.run_trace_id(run_id)) == 32
    assert int(tracing.run_span_id(run_id), 16) and int(tracing.run_trace_id(run_id), 16)
    assert tracing.run_span_id(run_id) != tracing.run_span_id(run_id.replace("5f", "6f"))
    assert tracing.run_trace_id(run_id)[:16] != tracing.run_span_id(run_id)


def test_a_run_created_in_a_trace_is_a_child_of_the_callers_span() -> None:
    annotations = {tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{SPAN}-01",
                   tracing.ANNOTATION_TRACESTATE: "vendor=1"}
    run = tracing.run_trace("uid-1", annotations, sample_ratio=0.0)
    assert run.parent_span_id == SPAN
    # The caller's sampling decision stands, whatever the operator's ratio.
    assert run.context == tracing.TraceContext(TRACE, tracing.run_span_id("uid-1"), True, "vendor=1")
    unsampled = {tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{SPAN}-00"}
    assert not tracing.run_trace("uid-1", unsampled, sample_ratio=1.0).context.sampled


def test_a_run_created_outside_a_trace_roots_its_own() -> None:
    run = tracing.run_trace("uid-1", {tracing.ANNOTATION_TRACEPARENT: "not a traceparent"})
    assert run.parent_span_id is None
    assert run.context == tracing.TraceContext(tracing.run_trace_id("uid-1"),
                                               tracing.run_span_id("uid-1"), True)


def test_the_sample_ratio_picks_runs_by_their_trace_id() -> None:
    run_ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"run-{index}")) for index in range(2000)]

    def sampled(ratio: float) -> set[str]:
        return {run_id for run_id in run_ids if tracing.run_trace(run_id, {}, ratio).context.sampled}

    assert sampled(1.0) == set(run_ids)
    assert sampled(0.0) == set()
    quarter, half = sampled(0.25), sampled(0.5)
    assert quarter < half  # a higher ratio keeps every run a lower one keeps
    assert 800 < len(half) < 1200


@pytest.mark.parametrize(("environ", "configured"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
], ids=["nothing", "endpoint", "traces-endpoint", "blank", "sdk-disabled"])
def test_tracing_is_on_only_with_an_otlp_endpoint(environ: dict[str, str], configured: bool) -> None:
    assert tracing.tracing_configured(environ) is configured


def test_without_an_endpoint_the_worker_and_client_import_nothing_of_opentelemetry() -> None:
    code = """
import sys
from durakube import tracing, worker
from durakube.client import Client
attempt = tracing.start_attempt({}, run_id="r", attempt=1)
assert attempt is tracing.OFF
with tracing.step_span(1, "fetch", replayed=False):
    pass
attempt.finish()
assert tracing.current_annotations() == {}
loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_caller_passes_its_active_span_else_the_inherited_traceparent() -> None:
    tracer = TracerProvider().get_tracer("test")
    assert tracing.current_annotations() == {}
    with tracing.continuing({"TRACEPARENT": f"00-{TRACE}-{SPAN}-01", "TRACESTATE": "v=1"}):
        assert tracing.current_annotations() == {
            tracing.ANNOTATION_TRACEPARENT: f"00-{TRACE}-{SPAN}-01",
            tracing.ANNOTATION_TRACESTATE: "v=1"}
        with tracer.start_as_current_span("caller") as span:
            context = span.get_span_context()
            assert tracing.current_annotations() == {
                tracing.ANNOTATION_TRACEPARENT:
                    f"00-{context.trace_id:032x}-{context.span_id:016x}-01"}
    assert tracing.current_annotations() == {}
    with tracing.continuing({"TRACEPARENT": "garbage"}):
        assert tracing.current_annotations() == {}


@pytest.mark.parametrize(("endpoint", "traces_endpoint", "url"), [
    ("http://collector:4318", None, "http://collector:4318/v1/traces"),
    ("http://collector:4318/", None, "http://collector:4318/v1/traces"),
    ("http://collector:4318", "https://traces.example.com/otlp", "https://traces.example.com/otlp"),
], ids=["base", "base-with-slash", "traces-endpoint-first"])
def test_spans_go_where_otlp_exporters_send_them(endpoint: str, traces_endpoint: str | None,
                                                 url: str) -> None:
    assert tracing.traces_url(endpoint, traces_endpoint) == url

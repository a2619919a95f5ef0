"""Traces of runs on the operator's side: the attempt pods' trace env, and the run's span.

A run's span lasts from its TaskRun's creation to its end, hours or days across pods
and operator restarts, so nobody holds it open: its ids are derived from the run's
uid (`durakube.tracing.run_trace`), each attempt pod gets it as its parent in
`TRACEPARENT` (`attempt_env`, which `pods` adds), and the leader exports the span
once, when the run ends (`RunSpans.run_ended`, which `publishing` calls with the
final transition's Event and counters). Exported after the status patch that ends
the run, like those, it is sent at most once: an operator that dies between the
patch and the export loses that run's span (its attempts keep their trace).

Off unless an OTLP endpoint is configured (`settings.tracing`): then `OFF` does
nothing and nothing from opentelemetry is imported. A run is traced when its
creator's context says sampled, or, with none, for `trace_sample_ratio` of runs.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from datetime import datetime
from typing import Any

from durakube import resources
from durakube import tracing as traces
from durakube_operator import conditions
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

OPERATOR_SERVICE = "durakube-operator"
# What an attempt pod's resource says it is, unless its Task's env says otherwise.
WORKER_SERVICE = traces.WORKER_SERVICE
# Longest the operator waits for its last spans to go when it stops leading.
FLUSH_SECONDS = 5.0
# Final phases whose run span is an error.
FAILED_PHASES = frozenset({resources.Phase.FAILED, resources.Phase.TIMED_OUT})


def run_trace(body_meta: dict[str, Any] | resources.ObjectMeta,
              settings: settings_module.Settings) -> traces.RunTrace:
    """The span of the run whose TaskRun metadata is `body_meta`."""
    if isinstance(body_meta, resources.ObjectMeta):
        uid, annotations = body_meta.uid or "", body_meta.annotations
    else:
        uid, annotations = body_meta.get("uid") or "", body_meta.get("annotations") or {}
    return traces.run_trace(uid, annotations, settings.trace_sample_ratio)


def attempt_env(run: resources.TaskRun, settings: settings_module.Settings,
                taken: set[str]) -> list[dict[str, Any]]:
    """The env that makes an attempt pod trace its attempt under the run's span: the
    endpoint, the service name and the parent context. Nothing when tracing is off or the
    run is not sampled; a variable the Task's env sets (`taken`) is left to it."""
    if not settings.tracing:
        return []
    traced = run_trace(run.metadata, settings)
    if not traced.context.sampled:
        return []
    env = {traces.ENV_ENDPOINT: settings.otlp_endpoint,
           traces.ENV_TRACES_ENDPOINT: settings.otlp_traces_endpoint,
           "OTEL_SERVICE_NAME": WORKER_SERVICE}
    found = [{"name": name, "value": value} for name, value in env.items()
             if value and name not in taken]
    found.append({"name": traces.ENV_TRACEPARENT, "value": traced.context.traceparent})
    if traced.context.tracestate:
        found.append({"name": traces.ENV_TRACESTATE, "value": traced.context.tracestate})
    return found


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000


class RunSpans:
    """Exports run spans; this base, `OFF`, is tracing turned off."""

    def run_ended(self, body: dict[str, Any], queue: str, created_at: datetime | None,
                  status: resources.TaskRunStatus) -> None:
        """Exports the span of a run that just reached its final phase."""

    def close(self) -> None:
        """Sends what is left, within FLUSH_SECONDS."""


OFF = RunSpans()


class _ExportingRunSpans(RunSpans):
    def __init__(self, settings: settings_module.Settings) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        # The ids of the span about to start; any other span (none today) gets random ones.
        self._ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
            "durakube_run_span_ids", default=None)
        ids = self._ids

        class RunIds(RandomIdGenerator):
            def generate_span_id(self) -> int:
                preset = ids.get()
                return preset[1] if preset else super().generate_span_id()

            def generate_trace_id(self) -> int:
                preset = ids.get()
                return preset[0] if preset else super().generate_trace_id()

        self.settings = settings
        endpoint = traces.traces_url(settings.otlp_endpoint, settings.otlp_traces_endpoint)
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": OPERATOR_SERVICE}), id_generator=RunIds(),
            shutdown_on_exit=False)
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=FLUSH_SECONDS)))
        self._tracer = self._provider.get_tracer("durakube-operator")
        logger.info("exporting run spans to %s", endpoint)

    def run_ended(self, body: dict[str, Any], queue: str, created_at: datetime | None,
                  status: resources.TaskRunStatus) -> None:
        # A span that cannot be made is logged: it never fails the pass that ended the run.
        try:
            self._export(body, queue, created_at, status)
        except Exception as error:
            meta = body.get("metadata") or {}
            logger.warning("the span of run %s/%s was not exported: %s: %s", meta.get("namespace"),
                           meta.get("name"), type(error).__name__, error)

    def _export(self, body: dict[str, Any], queue: str, created_at: datetime | None,
                status: resources.TaskRunStatus) -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode
        from opentelemetry.trace.propagation import tracecontext

        meta = body["metadata"]
        traced = run_trace(meta, self.settings)
        if not traced.context.sampled or status.completion_time is None:
            return
        own = traced.context
        if traced.parent_span_id is not None:
            carrier = {"traceparent": f"00-{own.trace_id}-{traced.parent_span_id}-01",
                       **({"tracestate": own.tracestate} if own.tracestate else {})}
            parent = tracecontext.TraceContextTextMapPropagator().extract(carrier)
        else:
            # A root: an empty context, so the trace id is generated (the preset one).
            parent = context.Context()
        task = str(((body.get("spec") or {}).get("taskRef") or {}).get("name", ""))
        phase = str(status.phase)
        condition = conditions.succeeded(status)
        attributes: dict[str, Any] = {
            "durakube.run.id": meta.get("uid", ""), "durakube.run.name": meta.get("name", ""),
            "k8s.namespace.name": meta.get("namespace", ""), "durakube.task": task,
            "durakube.queue": queue, "durakube.run.phase": phase,
            "durakube.run.attempts": status.attempt or 0}
        if condition is not None and condition.reason:
            attributes["durakube.run.reason"] = condition.reason
        token = self._ids.set((int(own.trace_id, 16), int(own.span_id, 16)))
        try:
            span = self._tracer.start_span(
                f"run {task}", context=parent, attributes=attributes,
                start_time=_nanoseconds(created_at or status.completion_time))
        finally:
            self._ids.reset(token)
        if status.phase in FAILED_PHASES:
            message = condition.message if condition is not None else ""
            span.set_status(Status(StatusCode.ERROR, f"{phase}: {message or ''}"))
        span.end(end_time=_nanoseconds(status.completion_time))

    def close(self) -> None:
        sending = threading.Thread(target=self._provider.shutdown, name="durakube-span-flush",
                                   daemon=True)
        sending.start()
        sending.join(FLUSH_SECONDS)


def start(settings: settings_module.Settings) -> RunSpans:
    """The run spans' exporter for the leader's controller; `OFF` without an endpoint."""
    if not settings.tracing:
        return OFF
    return _ExportingRunSpans(settings)

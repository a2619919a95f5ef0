"""OpenTelemetry traces of runs: the W3C trace context, the run's span ids, the worker's spans.

A run's trace has three levels: the run (one span from the TaskRun's creation to its
end, exported by the operator when the run ends), each attempt (exported by the
worker in its pod) and each step (`TaskContext.step`, replayed ones too). The caller
who triggers a run passes its trace context in the TaskRun's annotations
(`ANNOTATION_TRACEPARENT`, `ANNOTATION_TRACESTATE`), so its trace shows the run.

Nobody can hold a run's span open for hours across pods and operator restarts, so
its ids are derived from the run id (`run_trace`): the operator names it as the
parent of each attempt (the pod's `TRACEPARENT`) long before it exports it.

This module serves three callers:
- the client and the CLI: `current_annotations()` reads the active span (only when
  the process already imported opentelemetry: one that never did has no span) or,
  inside `continuing(environ)`, the `TRACEPARENT` variable as otel-cli and CI tools
  set it;
- the operator: the pure functions (`parse`, `run_trace`, `tracing_configured`);
- the worker: `start_attempt()` and `step_span()`.

Imports nothing from opentelemetry unless an OTLP endpoint is configured (or, for
the client, the process imported it already); without the `durakube[tracing]`
extra, tracing is off with one warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durakube.store import attempts

log = logging.getLogger(__name__)

ANNOTATION_TRACEPARENT = "durakube.io/traceparent"
ANNOTATION_TRACESTATE = "durakube.io/tracestate"
# The environment variables that carry a trace context into a process (W3C's names, as
# OpenTelemetry's environment carrier and otel-cli use them).
ENV_TRACEPARENT = "TRACEPARENT"
ENV_TRACESTATE = "TRACESTATE"
# Where spans go (OpenTelemetry's names): a base URL, or the traces' full URL.
ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
WORKER_SERVICE = "durakube-worker"
# Longest the worker spends sending its spans before the process exits; also each
# export's own limit, so an unreachable collector never holds a pod.
FLUSH_SECONDS = 5.0
# W3C: at most 32 list members of at most 256 characters each; 512 is what a
# propagator must keep.
TRACESTATE_LIMIT = 512

_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>(-.*)?)$")
_SAMPLED = 0x01


@dataclass(frozen=True)
class TraceContext:
    """A W3C trace context: where a span sits in a trace, and whether the trace is sampled."""

    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    sampled: bool = True
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def annotations(self) -> dict[str, str]:
        """The TaskRun annotations that carry this context."""
        found = {ANNOTATION_TRACEPARENT: self.traceparent}
        if self.tracestate:
            found[ANNOTATION_TRACESTATE] = self.tracestate
        return found


def parse(traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The context a `traceparent` header names; None when it is missing or invalid
    (as W3C says: a version ff, all-zero ids, upper case, or extra fields in version 00)."""
    match = _TRACEPARENT.match((traceparent or "").strip())
    if match is None or match["version"] == "ff" or (match["version"] == "00" and match["rest"]):
        return None
    if set(match["trace_id"]) == {"0"} or set(match["span_id"]) == {"0"}:
        return None
    state = (tracestate or "").strip()
    return TraceContext(match["trace_id"], match["span_id"], bool(int(match["flags"], 16) & _SAMPLED),
                        state if state and len(state) <= TRACESTATE_LIMIT else None)


def from_annotations(annotations: Mapping[str, str]) -> TraceContext | None:
    """The trace context a TaskRun's annotations carry, if any (and valid)."""
    return parse(annotations.get(ANNOTATION_TRACEPARENT), annotations.get(ANNOTATION_TRACESTATE))


# The run's span: ids derived from the run id.


def _digest(kind: str, run_id: str, digits: int) -> str:
    value = hashlib.sha256(f"durakube.io/{kind}/{run_id}".encode()).hexdigest()[:digits]
    # An all-zero id is invalid; one in 2**64 runs would otherwise have it.
    return value if set(value) != {"0"} else "1".rjust(digits, "0")


def run_span_id(run_id: str) -> str:
    """The span id of the run's span: the same for every attempt, replica and restart."""
    return _digest("run-span", run_id, 16)


def run_trace_id(run_id: str) -> str:
    """The trace id of a run that no caller's context reached: its own trace."""
    return _digest("run-trace", run_id, 32)


@dataclass(frozen=True)
class RunTrace:
    """Where a run's span sits: its own context, and its parent's span (None: a root)."""

    context: TraceContext
    parent_span_id: str | None


def run_trace(run_id: str, annotations: Mapping[str, str], sample_ratio: float = 1.0) -> RunTrace:
    """The run's span: a child of the context in its annotations, else the root of a
    trace of its own, sampled for `sample_ratio` of the runs (by the trace id, as
    OpenTelemetry's TraceIdRatioBased sampler decides). A caller's context keeps its
    sampled flag: the caller's sampler has decided already."""
    parent = from_annotations(annotations)
    span_id = run_span_id(run_id)
    if parent is not None:
        return RunTrace(TraceContext(parent.trace_id, span_id, parent.sampled, parent.tracestate),
                        parent.span_id)
    trace_id = run_trace_id(run_id)
    bound = round(max(0.0, min(1.0, sample_ratio)) * 2**64)
    return RunTrace(TraceContext(trace_id, span_id, int(trace_id[16:], 16) < bound), None)


def traces_url(endpoint: str | None, traces_endpoint: str | None) -> str:
    """Where spans go, as OTLP/HTTP exporters resolve it: the traces endpoint (a full URL),
    else the endpoint (a base URL) plus /v1/traces."""
    if traces_endpoint and traces_endpoint.strip():
        return traces_endpoint.strip()
    return f"{(endpoint or '').strip().rstrip('/')}/v1/traces"


def tracing_configured(environ: Mapping[str, str]) -> bool:
    """Whether an OTLP endpoint is configured (and the SDK not disabled): tracing is on."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in (ENV_ENDPOINT, ENV_TRACES_ENDPOINT))


# The caller's side: the client and the CLI.

_inherited: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "durakube_inherited_trace", default=None)


@contextlib.contextmanager
def continuing(environ: Mapping[str, str]) -> Iterator[None]:
    """Within the block, runs triggered with no active span continue the trace that
    `TRACEPARENT` (and `TRACESTATE`) in `environ` name; the CLI runs its commands so."""
    token = _inherited.set(parse(environ.get(ENV_TRACEPARENT), environ.get(ENV_TRACESTATE)))
    try:
        yield
    finally:
        _inherited.reset(token)


def current_context() -> TraceContext | None:
    """The active span's context, else the one `continuing` set, else None."""
    active = _active_span_context()
    return active if active is not None else _inherited.get()


def current_annotations() -> dict[str, str]:
    """The annotations a TaskRun created now should carry (none outside any trace)."""
    context = current_context()
    return context.annotations() if context is not None else {}


def _active_span_context() -> TraceContext | None:
    # A process that never imported opentelemetry has no span: nothing is imported here.
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    state = context.trace_state.to_header() if context.trace_state else None
    return TraceContext(f"{context.trace_id:032x}", f"{context.span_id:016x}",
                        context.trace_flags.sampled, state or None)


# The worker's side: the attempt's span and its steps'.


class Attempt:
    """The span of one attempt, current while the attempt runs; a no-op when tracing is off."""

    def outcome(self, outcome: attempts.Outcome) -> None:
        """Records the attempt's outcome on its span."""

    def lost(self, error: BaseException) -> None:
        """Records that the attempt ended without an outcome, and why."""

    def finish(self) -> None:
        """Ends the span and sends every span of the attempt, within FLUSH_SECONDS."""


OFF = Attempt()
# The worker's tracer while an attempt is traced (one attempt per process).
_tracer: Any = None


class _TracedAttempt(Attempt):
    def __init__(self, provider: Any, span: Any, token: object) -> None:
        self._provider, self._span, self._token = provider, span, token

    def outcome(self, outcome: attempts.Outcome) -> None:
        from opentelemetry.trace import Status, StatusCode

        error = outcome.error or {}
        reason = str(error.get("type") or "")
        if outcome.kind == "suspended" and isinstance(outcome.output, dict):
            reason = str(outcome.output.get("kind") or "")
        self._span.set_attribute("durakube.attempt.outcome", outcome.kind)
        if reason:
            self._span.set_attribute("durakube.attempt.reason", reason)
        if outcome.kind in ("failed", "retry"):
            self._span.set_status(Status(StatusCode.ERROR, f"{reason}: {error.get('message', '')}"))

    def lost(self, error: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("durakube.attempt.outcome", "none")
        self._span.set_attribute("durakube.attempt.reason", type(error).__name__)
        self._span.record_exception(error)
        self._span.set_status(Status(StatusCode.ERROR, f"no outcome recorded: {error}"))

    def finish(self) -> None:
        global _tracer
        from opentelemetry import context

        self._span.end()
        with contextlib.suppress(ValueError):  # detached in another context: nothing to undo
            context.detach(self._token)  # type: ignore[arg-type]
        _tracer = None
        # The processor's shutdown sends what is left; a thread of its own bounds the wait,
        # and being a daemon it never keeps the process alive.
        sending = threading.Thread(target=self._provider.shutdown, name="durakube-span-flush",
                                   daemon=True)
        started = time.monotonic()
        sending.start()
        sending.join(FLUSH_SECONDS)
        if sending.is_alive():
            log.warning("spans not sent within %.0fs (OTLP collector unreachable?); "
                        "exiting without them", time.monotonic() - started)


def start_attempt(environ: Mapping[str, str], *, run_id: str, attempt: int,
                  pod_name: str | None = None, task_id: str | None = None) -> Attempt:
    """Starts the attempt's span as the child of `TRACEPARENT` (the run's span, from the
    operator) and makes it current; `OFF` when no OTLP endpoint is configured or the
    packages are missing. Its tracer provider becomes the global one unless the process
    has one already, so the task's own spans nest under its steps and go out with them."""
    global _tracer
    if not tracing_configured(environ):
        return OFF
    try:
        from opentelemetry import context, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation import tracecontext
    except ImportError as missing:
        log.warning("an OTLP endpoint is configured but %s is not installed: no spans "
                    "(pip install 'durakube[tracing]')", missing.name)
        return OFF
    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": WORKER_SERVICE}
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    endpoint = traces_url(environ.get(ENV_ENDPOINT), environ.get(ENV_TRACES_ENDPOINT))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=FLUSH_SECONDS)))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    # The run's span, as the operator named it; without it the attempt roots a trace.
    carrier = {"traceparent": environ.get(ENV_TRACEPARENT) or "",
               "tracestate": environ.get(ENV_TRACESTATE) or ""}
    parent = tracecontext.TraceContextTextMapPropagator().extract(carrier)
    _tracer = provider.get_tracer("durakube")
    span = _tracer.start_span(f"attempt {attempt}", context=parent, attributes={
        "durakube.run.id": run_id, "durakube.attempt": attempt,
        **({"k8s.pod.name": pod_name} if pod_name else {}),
        **({"durakube.task": task_id} if task_id else {})})
    token = context.attach(trace.set_span_in_context(span, parent))
    return _TracedAttempt(provider, span, token)


@contextlib.contextmanager
def step_span(seq: int, name: str, *, replayed: bool) -> Iterator[None]:
    """The span of step `seq` called `name` around the block, a child of the current span
    (the attempt's); `replayed` marks a step whose result came from its checkpoint. An
    exception is recorded on it; a wait that suspends the run is marked, not an error."""
    if _tracer is None:
        yield
        return
    from opentelemetry.trace import Status, StatusCode

    with _tracer.start_as_current_span(
            f"step {name}", record_exception=False, set_status_on_exception=False,
            attributes={"durakube.step.name": name, "durakube.step.seq": seq,
                        "durakube.step.replayed": replayed}) as span:
        try:
            yield
        except Exception as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise
        except BaseException as error:
            # `waiting.Suspend` (not imported: the client imports this module, and never the
            # step engine) carries the waitpoint the run suspends on.
            waitpoint = getattr(error, "waitpoint", None)
            if waitpoint is not None:
                span.set_attribute("durakube.step.suspended", True)
                span.set_attribute("durakube.wait.kind", str(waitpoint.kind))
            raise

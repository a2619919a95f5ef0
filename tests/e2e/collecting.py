"""An OTLP/HTTP trace receiver for the end-to-end tests: what a collector would be sent.

It listens on a free loopback port (the process node's pods share this machine's
network, so attempt pods reach it as the operator does), decodes each
`ExportTraceServiceRequest` with opentelemetry-proto and keeps its spans. It accepts
what any OTLP/HTTP exporter sends to `<endpoint>/v1/traces` (protobuf, gzip or not)
and answers as a collector does.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from devcluster import ports


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status: str  # UNSET, OK or ERROR
    start_ns: int
    end_ns: int


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(body: bytes) -> list[ReceivedSpan]:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(body)
    found = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(ReceivedSpan(
                    service=service, name=span.name, trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(), parent_span_id=span.parent_span_id.hex(),
                    attributes=_attributes(span.attributes),
                    status={0: "UNSET", 1: "OK", 2: "ERROR"}[span.status.code],
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano))
    return found


class SpanCollector:
    """Receives spans over OTLP/HTTP until `stop()`; `endpoint` is its base URL."""

    def __init__(self) -> None:
        self.received: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                spans = decode(body) if self.path == "/v1/traces" else None
                if spans is None:
                    self.send_error(404)
                    return
                with collector.lock:
                    collector.received.extend(spans)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests print what they check

        self.server = ThreadingHTTPServer(("127.0.0.1", ports.free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-collector",
                                       daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.received if span.trace_id == trace_id]

    def wait_for(self, trace_id: str, check: Callable[[list[ReceivedSpan]], bool],
                 timeout: float = 60.0) -> list[ReceivedSpan]:
        """The spans of the trace once `check` holds for them; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(trace_id)
            if check(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"trace {trace_id} incomplete after {timeout:.0f}s: "
                                     + "; ".join(f"{s.service} {s.name}" for s in spans))
            time.sleep(0.2)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""The kubelet's HTTPS endpoint, as far as the test bed needs it:
`/containerLogs/{namespace}/{pod}/{container}` (what `kubectl logs` reaches
through the apiserver) and `/healthz`.

Clients must present a certificate signed by the cluster CA (the apiserver uses
its kubelet-client certificate). Query parameters follow the kubelet's: follow,
previous, tailLines, limitBytes, timestamps, sinceSeconds, sinceTime, stream.
Runs on a ThreadingHTTPServer in a thread of its own; it only reads log files
and the node's set of running containers, and never calls the API.
"""

from __future__ import annotations

import datetime
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devcluster.node import logs, times

logger = logging.getLogger(__name__)

IsRunning = Callable[[str, str, str], bool]
FOLLOW_POLL = 0.2


class LogServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], pods_dir: Path, is_running: IsRunning) -> None:
        super().__init__(address, _Handler)
        self.pods_dir = pods_dir
        self.is_running = is_running


class _Handler(BaseHTTPRequestHandler):
    server: LogServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # The handshake runs here, on the handler's thread, so a silent client
        # cannot stall the accepting thread.
        self.request.settimeout(30)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["healthz"]:
            self._reply(200, "ok")
            return
        if len(parts) == 4 and parts[0] == "containerLogs":
            self._serve_logs(parts[1], parts[2], parts[3],
                             dict(urllib.parse.parse_qsl(url.query)))
            return
        self._reply(404, f"{url.path} is not served by the process node")

    def _serve_logs(self, namespace: str, pod: str, container: str,
                    query: dict[str, str]) -> None:
        try:
            options = _LogOptions.from_query(query)
        except ValueError as error:
            self._reply(400, f"bad log options: {error}")
            return
        path = logs.find_log(self.server.pods_dir, namespace, pod, container,
                             previous=options.previous)
        if path is None:
            which = "previous terminated container" if options.previous else "container"
            self._reply(400 if options.previous else 404,
                        f'{which} "{container}" in pod "{pod}" not found')
            return
        records = logs.select_records(logs.read_records(path), since=options.since,
                                      stream=options.stream)
        body = logs.render(records, tail_lines=options.tail_lines,
                           limit_bytes=options.limit_bytes, timestamps=options.timestamps)
        following = options.follow and not options.previous
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if not following:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = len(body)
        self._write_chunk(body)
        offset = path.stat().st_size
        while True:
            still_running = self.server.is_running(namespace, pod, container) and \
                logs.find_log(self.server.pods_dir, namespace, pod, container) == path
            new = _read_from(path, offset)
            if new:
                complete = new[: new.rfind(b"\n") + 1]
                offset += len(complete)
                chosen = logs.select_records(
                    [r for r in map(logs.parse_record, complete.splitlines()) if r],
                    stream=options.stream)
                chunk = logs.render(chosen, timestamps=options.timestamps)
                if options.limit_bytes is not None:
                    chunk = chunk[: max(0, options.limit_bytes - sent)]
                sent += len(chunk)
                try:
                    self._write_chunk(chunk)
                except OSError:
                    return
            if not still_running or (options.limit_bytes is not None
                                     and sent >= options.limit_bytes):
                break
            time.sleep(FOLLOW_POLL)
        self._end_chunks()

    def _write_chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk (nothing for no data: an empty chunk ends a response)."""
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except OSError:
        return b""


class _LogOptions:
    def __init__(self) -> None:
        self.follow = False
        self.previous = False
        self.timestamps = False
        self.tail_lines: int | None = None
        self.limit_bytes: int | None = None
        self.since: datetime.datetime | None = None
        self.stream = "All"

    @classmethod
    def from_query(cls, query: dict[str, str]) -> _LogOptions:
        options = cls()
        options.follow = query.get("follow") == "true"
        options.previous = query.get("previous") == "true"
        options.timestamps = query.get("timestamps") == "true"
        if "tailLines" in query:
            options.tail_lines = int(query["tailLines"])
        if "limitBytes" in query:
            options.limit_bytes = int(query["limitBytes"])
        if "sinceSeconds" in query:
            options.since = times.now() - datetime.timedelta(seconds=int(query["sinceSeconds"]))
        elif "sinceTime" in query:
            options.since = times.parse_time(query["sinceTime"])
        options.stream = query.get("stream", "All") or "All"
        return options


def start_server(port: int, cert: Path, key: Path, ca: Path, pods_dir: Path,
                 is_running: IsRunning) -> LogServer:
    """Starts serving on 127.0.0.1:`port` (0 picks a free port) in a daemon thread."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    context.load_verify_locations(cafile=str(ca))
    context.verify_mode = ssl.CERT_REQUIRED
    server = LogServer(("127.0.0.1", port), pods_dir, is_running)
    server.socket = context.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, name="kubelet-endpoint", daemon=True).start()
    return server

"""A small Kubernetes REST client for the process node: JSON in, JSON out.

The node speaks to the apiserver as `system:node:<name>` with the client
certificate from its kubeconfig, exactly like a kubelet. Everything is plain
dicts in the API's own camelCase, so status derivation never depends on a
generated model. Blocking calls run on a small private thread pool (`call`),
which also bounds how many requests the node has in flight; watches use a
connection of their own (`open_watch`).

Called by every process module of the node; it knows nothing of pods or nodes.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Json = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the apiserver (or a broken connection, status 0)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}: {body[:300]}")
        self.status = status
        self.reason = reason
        self.body = body


@dataclass(frozen=True)
class Credentials:
    """Where the apiserver is and how to prove who we are to it."""

    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path


def read_kubeconfig(kubeconfig: Path, folder: Path) -> Credentials:
    """Reads the current context of a kubeconfig with embedded certificates and
    writes the certificates into `folder`, where `ssl` can load them."""
    config = yaml.safe_load(kubeconfig.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, data in (("ca.crt", cluster["certificate-authority-data"]),
                       ("client.crt", user["client-certificate-data"]),
                       ("client.key", user["client-key-data"])):
        path = folder / stem
        path.write_bytes(base64.b64decode(data))
        path.chmod(0o600)
        paths[stem] = path
    server = urllib.parse.urlsplit(cluster["server"])
    return Credentials(server.hostname or "127.0.0.1", server.port or 443,
                       paths["ca.crt"], paths["client.crt"], paths["client.key"])


class Client:
    """Blocking JSON requests over one keep-alive connection per thread."""

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0,
                 concurrency: int = 4) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(credentials.ca_file))
        self._context.load_cert_chain(str(credentials.cert_file), str(credentials.key_file))
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=concurrency,
                                            thread_name_prefix="apicall")

    def _connect(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.credentials.host, self.credentials.port,
                                           context=self._context, timeout=timeout)

    def request(self, method: str, path: str, body: Json | None = None, *,
                content_type: str = "application/json",
                query: dict[str, str] | None = None) -> Json:
        """One request; raises ApiError on any failure. Retries once on a stale
        keep-alive connection."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "User-Agent": "durakube-node"}
        if payload is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            connection: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
            if connection is None:
                connection = self._local.conn = self._connect(self.timeout)
            try:
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self._local.conn = None
                if attempt == 2:
                    raise ApiError(0, type(error).__name__, str(error)) from error
                continue
            if response.status >= 300:
                raise ApiError(response.status, response.reason, data.decode(errors="replace"))
            return json.loads(data) if data else {}
        raise AssertionError("unreachable")

    async def call(self, method: str, path: str, body: Json | None = None, *,
                   content_type: str = "application/json",
                   query: dict[str, str] | None = None) -> Json:
        """`request` on the node's bounded thread pool."""
        loop = asyncio.get_running_loop()

        def run() -> Json:
            return self.request(method, path, body, content_type=content_type, query=query)

        return await loop.run_in_executor(self._executor, run)

    def open_watch(self, path: str, query: dict[str, str],
                   read_timeout: float) -> Iterator[Json]:
        """Yields watch events (dicts with `type` and `object`) until the server
        ends the stream; a stream silent for `read_timeout` raises ApiError(0)."""
        connection = self._connect(read_timeout)
        try:
            connection.request("GET", f"{path}?{urllib.parse.urlencode(query)}",
                               headers={"Accept": "application/json",
                                        "User-Agent": "durakube-node"})
            response = connection.getresponse()
            if response.status >= 300:
                raise ApiError(response.status, response.reason,
                               response.read().decode(errors="replace"))
            for line in response:
                if line.strip():
                    yield json.loads(line)
        except (OSError, http.client.HTTPException) as error:
            raise ApiError(0, type(error).__name__, str(error)) from error
        finally:
            connection.close()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def is_status(error: BaseException, *statuses: int) -> bool:
    """Whether `error` is an ApiError with one of `statuses`."""
    return isinstance(error, ApiError) and error.status in statuses


def quote(*parts: str) -> str:
    """Joins path segments, quoting each."""
    return "/".join(urllib.parse.quote(part, safe="") for part in parts)



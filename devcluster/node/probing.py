"""Readiness probes (exec, httpGet, tcpSocket) for running containers.

`watch_readiness` runs while one container instance runs and calls back with
the container's readiness after each probe, honouring initialDelaySeconds,
periodSeconds, timeoutSeconds, successThreshold and failureThreshold. Exec
probes run inside the container's mount namespace (`nsenter`) with its
environment. A container without a readiness probe is ready while it runs.

Called by `running`; it never changes container state beyond readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

Json = dict[str, Any]
logger = logging.getLogger(__name__)


def _resolve_port(port: int | str, container: Json) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"no container port named {port!r}")


async def run_probe(probe: Json, container: Json, pid: int, env: Mapping[str, str]) -> bool:
    """One probe attempt: True when it succeeded."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "exec" in probe:
            process = await asyncio.create_subprocess_exec(
                "nsenter", "--target", str(pid), "--mount", "--", *probe["exec"]["command"],
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, env=dict(env))
            try:
                return await asyncio.wait_for(process.wait(), timeout) == 0
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                return False
        if "tcpSocket" in probe:
            port = _resolve_port(probe["tcpSocket"]["port"], container)
            _, writer = await asyncio.wait_for(asyncio.open_connection(
                probe["tcpSocket"].get("host") or "127.0.0.1", port), timeout)
            writer.close()
            return True
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = _resolve_port(get["port"], container)
            url = (f"{get.get('scheme', 'HTTP').lower()}://{get.get('host') or '127.0.0.1'}:"
                   f"{port}{get.get('path', '/')}")
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
            return await asyncio.to_thread(_http_ok, url, headers, timeout)
    except (OSError, TimeoutError, ValueError) as error:
        logger.debug("probe failed: %s", error)
        return False
    return True


def _http_ok(url: str, headers: dict[str, str], timeout: float) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout) as response:
            return 200 <= int(response.status) < 400
    except (urllib.error.URLError, OSError):
        return False


async def watch_readiness(container: Json, pid: int, env: Mapping[str, str],
                          set_ready: Callable[[bool], None]) -> None:
    """Probes until cancelled (when the instance exits)."""
    probe = container.get("readinessProbe")
    if not probe:
        set_ready(True)
        return
    set_ready(False)
    await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
    period = float(probe.get("periodSeconds", 10))
    successes_needed = int(probe.get("successThreshold", 1))
    failures_allowed = int(probe.get("failureThreshold", 3))
    successes = failures = 0
    ready = False
    while True:
        if await run_probe(probe, container, pid, env):
            successes, failures = successes + 1, 0
            if not ready and successes >= successes_needed:
                ready = True
                set_ready(True)
        else:
            successes, failures = 0, failures + 1
            if ready and failures >= failures_allowed:
                ready = False
                set_ready(False)
        await asyncio.sleep(period)

"""Tasks that see the container they run in: its user, filesystems and memory limit.

The real node's tests (tests/e2e/realnode/) run them from a derived image
(Dockerfile beside this file) with the attempt pod's hardening in force.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import humanize

import durakube


def _writable(folder: Path) -> bool:
    probe = folder / f"durakube-probe-{os.getpid()}"
    try:
        probe.write_text("written")
    except OSError:
        return False
    written = probe.read_text() == "written"
    probe.unlink()
    return written


@durakube.task(id="describe-sandbox")
async def describe_sandbox(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Where this attempt may write, and as whom it runs."""
    home = Path(os.environ.get("HOME", "/nonexistent"))
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "home": str(home),
        "rootWritable": _writable(Path("/")),
        "appWritable": _writable(Path("/app")),
        "tmpWritable": _writable(Path("/tmp")),
        "homeWritable": _writable(home),
    }


@durakube.task(id="describe-size")
async def describe_size(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Formats a byte count with `humanize`, a requirement of the derived image only."""
    size = int(payload["bytes"])
    return {"size": humanize.naturalsize(size, binary=True), "module": humanize.__file__}


@durakube.task(id="allocate")
async def allocate(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Touches `payload["mebibytes"]` of memory on the first attempt, none after."""
    await ctx.step("before", _noop)
    held = 0
    if ctx.attempt == 1:
        chunks = []
        for _ in range(int(payload["mebibytes"])):
            # Filled with ones, not zeros: every page is written, so every page is resident.
            chunks.append(bytearray(b"\x01" * (1 << 20)))
            held += 1
    return {"attempt": ctx.attempt, "heldMebibytes": held}


async def _noop() -> bool:
    return True

"""Memory cgroups (v1) for containers: one per container instance under a
`durakube-<node>-<state-dir hash>` parent (two test beds on one machine may both
have a "node-1"), with `memory.limit_in_bytes` from the container's
limit, so that an oversized process is OOM-killed by the kernel, as in a pod.

The launcher joins the cgroup (writes its pid into `cgroup.procs`) before it
execs the command. `running` asks here, after an exit, whether the kernel's OOM
killer fired, and removes the cgroup. When the memory controller is not
writable, everything here degrades to a no-op (limits are then not enforced).
Must not kill processes other than those inside the node's own cgroups.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/memory")

logger = logging.getLogger(__name__)


def parent_name(node_name: str, state_dir: Path) -> str:
    """The node's parent cgroup: its name plus a digest of its state folder."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"durakube-{node_name}-{digest}"


def is_available() -> bool:
    return (ROOT / "cgroup.procs").exists() and os.access(ROOT, os.W_OK)


def create_cgroup(parent: str, name: str, limit_bytes: int | None) -> Path | None:
    """Creates (or empties and reuses) a container's cgroup; None if unavailable."""
    if not is_available():
        return None
    path = ROOT / parent / name
    try:
        path.mkdir(parents=True, exist_ok=True)
        if limit_bytes is not None:
            # Swap would let the process outlive the limit without an OOM kill.
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.swappiness").write_text("0")
    except OSError as error:
        logger.warning("cannot set up memory cgroup %s: %s", path, error)
        return None
    return path


def count_oom_kills(path: Path | None) -> int:
    """How many processes the kernel's OOM killer killed in this cgroup."""
    if path is None:
        return 0
    try:
        for line in (path / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except OSError:
        pass
    return 0


def list_processes(path: Path | None) -> list[int]:
    if path is None:
        return []
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def kill_processes(path: Path | None, sig: int = signal.SIGKILL) -> None:
    """Signals every process still in the cgroup (stragglers of a container)."""
    for pid in list_processes(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def remove_cgroup(path: Path | None) -> None:
    """Kills what is left inside and removes the cgroup (retrying briefly while
    the kernel reaps the last processes)."""
    if path is None:
        return
    for _ in range(20):
        kill_processes(path)
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
    logger.warning("could not remove cgroup %s", path)


def remove_stale_cgroups(parent_cgroup: str, *, remove_parent: bool = False) -> None:
    """Removes the cgroups a previous agent of this node left behind (and, when
    the node stops, the node's parent cgroup)."""
    parent = ROOT / parent_cgroup
    if not parent.is_dir():
        return
    for child in parent.iterdir():
        if child.is_dir():
            remove_cgroup(child)
    if remove_parent:
        with contextlib.suppress(OSError):
            parent.rmdir()

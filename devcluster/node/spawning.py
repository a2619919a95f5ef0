"""Starting, signalling and reaping one container instance as a local process.

A container instance is `python -I -S launching.py SPEC` in a session (and process
group) of its own, whose stdout and stderr are piped through `logs.LogWriter`
into the instance's CRI log file. `wait_for_exit` reports the exit the way a
runtime does: an exit code (128 + signal for a killed process), whether the
kernel's OOM killer did it, or why the process could not start at all.

Called by `running`; it decides nothing about restarts or pod status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devcluster.node import cgroups, launching, logs, times

_LAUNCHER = Path(launching.__file__).resolve()
# What every container runs from, in place of an image's files: the node's Python (its
# virtual environment and base installation) and the project. A volume mounted over a
# folder holding them (an emptyDir at /tmp) must not hide them.
_IMAGE_FOLDERS = sorted({sys.prefix, sys.base_prefix, str(_LAUNCHER.parents[2])})


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    uid: int | None = None
    gid: int | None = None
    groups: list[int] | None = None
    mounts: list[Mount] = field(default_factory=list)
    no_new_privs: bool = False
    memory_limit: int | None = None


@dataclass
class Instance:
    """One started container process."""

    process: asyncio.subprocess.Process
    started_at: datetime.datetime
    log_path: Path
    error_path: Path
    cgroup: Path | None
    copiers: list[asyncio.Task[None]]

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class Exit:
    exit_code: int
    finished_at: datetime.datetime
    oom_killed: bool = False
    start_error: str | None = None


async def spawn(spec: LaunchSpec, *, folder: Path, restart: int, cgroup_parent: str,
                cgroup_name: str) -> Instance:
    """Starts the instance `restart` of a container whose files live in `folder`."""
    cgroup = await asyncio.to_thread(cgroups.create_cgroup, cgroup_parent, cgroup_name,
                                     spec.memory_limit)
    spec_path, log_path, error_path, handle_out = _prepare_files(spec, folder, restart, cgroup)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", str(_LAUNCHER), str(spec_path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
        env={"PATH": spec.env.get("PATH", os.defpath)},
    )
    started_at = times.now()
    assert process.stdout is not None and process.stderr is not None
    copiers = [
        asyncio.create_task(_copy_output(process.stdout, logs.LogWriter(handle_out, "stdout"))),
        asyncio.create_task(_copy_output(process.stderr, logs.LogWriter(handle_out, "stderr"))),
    ]

    def close_log(_: object) -> None:
        if all(c.done() for c in copiers):
            handle_out.close()

    for copier in copiers:
        copier.add_done_callback(close_log)
    return Instance(process, started_at, log_path, error_path, cgroup, copiers)


def _prepare_files(spec: LaunchSpec, folder: Path, restart: int,
                   cgroup: Path | None) -> tuple[Path, Path, Path, IO[bytes]]:
    """Writes the launcher's spec and opens the log; small local file work."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = logs.log_path(folder, restart)
    error_path = folder / f"{restart}.start-error"
    error_path.unlink(missing_ok=True)
    spec_path = folder / f"{restart}.spec.json"
    document: dict[str, Any] = {
        "argv": spec.argv, "env": spec.env, "cwd": spec.cwd, "uid": spec.uid, "gid": spec.gid,
        "groups": spec.groups, "no_new_privs": spec.no_new_privs,
        "mounts": [{"source": m.source, "target": m.target, "read_only": m.read_only}
                   for m in spec.mounts],
        "visible": [*_IMAGE_FOLDERS, str(folder)],
        "cgroup": str(cgroup) if cgroup else None, "error_path": str(error_path),
        "agent_pid": os.getpid(),
    }
    # The spec holds resolved secrets: only root may read it, and the launcher
    # deletes it as soon as it has read it.
    fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    # Closed by the output copiers when both streams ended.
    return spec_path, log_path, error_path, open(log_path, "ab")


async def _copy_output(stream: asyncio.StreamReader, writer: logs.LogWriter) -> None:
    try:
        while chunk := await stream.read(65536):
            writer.write(chunk)
    finally:
        writer.close()


def signal_instance(instance: Instance, sig: int) -> None:
    """Sends `sig` to the instance's process group (and, for SIGKILL, to anything
    else left in its cgroup)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(instance.pid, sig)
    if sig == signal.SIGKILL:
        cgroups.kill_processes(instance.cgroup)


async def wait_for_exit(instance: Instance) -> Exit:
    """Waits for the main process, then kills its leftovers (a container ends with
    its main process), drains the output and removes the cgroup."""
    returncode = await instance.process.wait()
    finished_at = times.now()
    signal_instance(instance, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*instance.copiers, return_exceptions=True), 3)
    for copier in instance.copiers:
        copier.cancel()
    oom = cgroups.count_oom_kills(instance.cgroup) > 0
    await asyncio.to_thread(cgroups.remove_cgroup, instance.cgroup)
    start_error = None
    if returncode == launching.START_ERROR_EXIT and instance.error_path.exists():
        start_error = instance.error_path.read_text()
    exit_code = 128 - returncode if returncode < 0 else returncode
    return Exit(exit_code, finished_at, oom_killed=oom and exit_code == 137,
                start_error=start_error)


async def stop_instance(instance: Instance, grace: float) -> None:
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    if instance.process.returncode is not None:
        return
    signal_instance(instance, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(instance.process.wait()), max(grace, 0))
    except TimeoutError:
        signal_instance(instance, signal.SIGKILL)

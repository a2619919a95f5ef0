"""The container launcher: the first program of every container process.

`spawning` starts `python -I -S launching.py SPEC` in a new session; this program
reads the spec (then deletes it: it holds resolved secrets), joins the
container's memory cgroup, enters a private mount namespace with the pod's
volumes bound at their mount paths, drops to the container's user, sets
no_new_privs and the parent-death signal, changes to the working directory and
execs the container's command, so the container keeps this process's pid.

If the command cannot be started it writes the reason to the spec's
`error_path` and exits 128, which `running` reports as a StartError. Standard
library only (it runs with `-I -S`, before anything else of the node is imported,
and without the site-packages it does not need: a tenth less CPU per container);
it must not touch anything outside this one process and its mount namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
START_ERROR_EXIT = 128


class LaunchError(Exception):
    pass


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise LaunchError(f"{what}: {os.strerror(errno)}")


def join_cgroup(cgroup: str | None) -> None:
    if cgroup:
        Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))


def mount_volumes(mounts: list[dict[str, Any]], visible: list[str]) -> None:
    """A private mount namespace with each volume bound at its target.

    Every source, and every folder of `visible`, is opened before anything is mounted,
    and bound through its descriptor: a volume mounted over a host folder (an emptyDir
    at /tmp, when the test bed itself lives in /tmp) hides neither later sources nor
    what the container runs from (its "image": the node's Python and the project),
    which is bound back inside the volume."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    sources = {m["source"]: _open_path(m["source"]) for m in mounts}
    kept = {path: _open_path(path) for path in visible if os.path.isdir(path)}
    # Parents before children, so a volume nested in another lands inside it.
    for mount in sorted(mounts, key=lambda m: len(Path(m["target"]).parts)):
        source, target = mount["source"], mount["target"]
        if stat.S_ISDIR(os.stat(f"/proc/self/fd/{sources[source]}").st_mode):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
            if not os.path.exists(target):
                Path(target).touch()
        _bind(libc, sources[source], target, f"bind {source} at {target}")
        for path, handle in kept.items():
            if path.startswith(target.rstrip("/") + "/"):
                os.makedirs(path, exist_ok=True)
                _bind(libc, handle, path, f"keep {path} visible under {target}")
        if mount.get("read_only"):
            _check(libc.mount(None, target.encode(), None,
                              MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None),
                   f"remount {target} read-only")


def _open_path(path: str) -> int:
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as error:
        raise LaunchError(f"open {path}: {error.strerror}") from error


def _bind(libc: ctypes.CDLL, handle: int, target: str, what: str) -> None:
    _check(libc.mount(f"/proc/self/fd/{handle}".encode(), target.encode(), None,
                      MS_BIND | MS_REC, None), what)


def drop_privileges(spec: dict[str, Any]) -> None:
    groups, gid, uid = spec.get("groups"), spec.get("gid"), spec.get("uid")
    if groups is not None:
        os.setgroups(groups)
    if gid is not None:
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def set_process_flags(spec: dict[str, Any]) -> None:
    libc = _libc()
    # Set after the uid change: the kernel clears the parent-death signal on it.
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "set parent-death signal")
    if os.getppid() != spec.get("agent_pid", os.getppid()):
        # The agent died before the signal was armed: nobody would reap us.
        os._exit(START_ERROR_EXIT)
    if spec.get("no_new_privs"):
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")


def launch(spec: dict[str, Any]) -> None:
    join_cgroup(spec.get("cgroup"))
    if spec.get("mounts"):
        mount_volumes(spec["mounts"], spec.get("visible") or [])
    workdir = spec.get("cwd")
    if workdir:
        os.makedirs(workdir, exist_ok=True)
    drop_privileges(spec)
    set_process_flags(spec)
    if workdir:
        os.chdir(workdir)
    argv, env = spec["argv"], spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError as error:
        raise LaunchError(f'exec: "{argv[0]}": executable file not found in $PATH') from error
    except OSError as error:
        raise LaunchError(f'exec: "{argv[0]}": {error.strerror}') from error


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text())
    spec_path.unlink()
    try:
        launch(spec)
    except (LaunchError, OSError) as error:
        message = f"failed to start container process: {error}"
        Path(spec["error_path"]).write_text(message)
        print(message, file=sys.stderr, flush=True)
        os._exit(START_ERROR_EXIT)


if __name__ == "__main__":
    main()

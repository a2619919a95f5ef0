"""`durakube-devcluster`: start, inspect and stop a test bed for a person.

`up` starts the control plane, one process node and Postgres in a state folder,
leaves them running in the background, and prints the lines to export; `down`
stops everything `up` started (recorded in `<state>/pids.json`). The test suite
does not use this: its fixtures start their own, throwaway test bed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from devcluster import cluster, postgres

DEFAULT_STATE = Path(".devcluster")


def _pids_file(state_dir: Path) -> Path:
    return state_dir / "pids.json"


def up(state_dir: Path) -> int:
    if _pids_file(state_dir).exists():
        print(f"a test bed already runs from {state_dir}; `make cluster-down` first", file=sys.stderr)
        return 1
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir = state_dir.resolve()
    started = time.monotonic()
    bed = cluster.start(state_dir / "cluster")
    try:
        database = postgres.start(state_dir / "postgres")
    except BaseException:
        bed.stop()
        raise
    pids = {name: c.process.pid for name, c in bed.components.items()}
    assert database.process is not None
    pids["postgres"] = database.process.pid
    (state_dir / "env").write_text(
        f"export KUBECONFIG={bed.kubeconfig}\nexport DURAKUBE_DATABASE_URL={database.dsn()}\n")
    _pids_file(state_dir).write_text(json.dumps(pids, indent=2))
    print(f"test bed up in {time.monotonic() - started:.1f}s; logs in {state_dir / 'cluster' / 'logs'}")
    print(f"export KUBECONFIG={bed.kubeconfig}")
    print(f"export DURAKUBE_DATABASE_URL={database.dsn()}")
    return 0


def down(state_dir: Path) -> int:
    pids_file = _pids_file(state_dir)
    if not pids_file.exists():
        print(f"no test bed recorded in {state_dir}")
        return 0
    pids: dict[str, int] = json.loads(pids_file.read_text())
    # Reverse start order: nodes first, etcd last; Postgres stops on SIGINT (fast mode).
    for name, pid in reversed(list(pids.items())):
        with contextlib.suppress(ProcessLookupError):
            if name == "postgres":
                os.kill(pid, signal.SIGINT)
            else:
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for pid in pids.values():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    pids_file.unlink()
    print("test bed stopped")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours would count as alive; reap it if it is our child.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="durakube-devcluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE,
                        help="folder for certificates, data and logs (default: .devcluster)")
    args = parser.parse_args(argv)
    return up(args.state_dir) if args.command == "up" else down(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())

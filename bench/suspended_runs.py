"""What suspended runs cost the operator: memory and CPU while N runs wait.

Starts a test bed, Postgres and the operator (its real entry point), measures the
idle operator (the peer: same process, no runs), then submits N runs that each
take one step and sleep for an hour, waits until all N are Suspended, checks that
they hold no pod, and measures the operator again: resident memory, and CPU used
over a quiet interval. Prints both and the ratios.

    .venv/bin/python bench/suspended_runs.py [N]     (default 1000; about 3 pods/s on 2 cores)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import beds  # bench/beds.py: run as a script, bench/ is on the path

from devcluster import cluster, ports

BIN = Path(sys.executable).parent
QUIET_SECONDS = 30


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiet_cpu_percent(pid: int) -> float:
    before = cpu_seconds(pid)
    time.sleep(QUIET_SECONDS)
    return 100 * (cpu_seconds(pid) - before) / QUIET_SECONDS


def count_phases(bed: cluster.Cluster) -> dict[str, int]:
    out = beds.kubectl(bed, "get", "taskruns", "-o",
                       "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}")
    counts: dict[str, int] = {}
    for phase in out.split():
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    # Stopped from outside (timeout, kill): unwind so `finally` stops the test bed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with beds.started() as (bed, database, state):
        operator = None
        try:
            env = {**bed.env(), "DURAKUBE_DATABASE_URL": database.create_database("durakube"),
                   "DURAKUBE_HEALTH_PORT": str(ports.free_port()), "DURAKUBE_WEBHOOK_PORT": "0",
                   "DURAKUBE_METRICS_PORT": "0", "DURAKUBE_DEFAULT_CONCURRENCY_LIMIT": "1000"}
            log = open(state / "operator.log", "wb")
            operator = subprocess.Popen([str(BIN / "durakube-operator")], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            time.sleep(5)
            idle_rss, idle_cpu = rss_mib(operator.pid), quiet_cpu_percent(operator.pid)

            task = {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": "napper"},
                    "spec": {"image": "ghcr.io/durakube/test-tasks:dev", "entrypoint": "nap-and-resume",
                             "modules": ["behaviours"]}}
            runs = [{"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun",
                     "metadata": {"name": f"waiter-{i}"},
                     "spec": {"taskRef": {"name": "napper"}, "payload": {"seconds": 3600}}}
                    for i in range(count)]
            started = time.monotonic()
            beds.kubectl(bed, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                             "items": [task, *runs]}))
            while True:
                phases = count_phases(bed)
                print(f"  {phases} after {time.monotonic() - started:.0f}s", flush=True)
                if phases.get("Suspended", 0) == count:
                    break
                active = ("Suspended", "Running", "Queued", "Pending")
                ended = {p: n for p, n in phases.items() if p not in active}
                if ended:
                    raise SystemExit(f"runs ended instead of suspending: {ended}")
                time.sleep(5)
            suspend_seconds = time.monotonic() - started
            pods = beds.kubectl(bed, "get", "pods", "-l", "app.kubernetes.io/managed-by=durakube",
                           "-o", "name").split()
            time.sleep(10)  # let the last reconciles settle before measuring the quiet state
            busy_rss, busy_cpu = rss_mib(operator.pid), quiet_cpu_percent(operator.pid)
            print(f"\n{count} runs suspended in {suspend_seconds:.0f}s "
                  f"({count / suspend_seconds:.1f} runs/s through start, step and suspend)")
            print(f"pods held by suspended runs: {len(pods)}")
            print(f"operator RSS:  idle {idle_rss:.1f} MiB, with {count} suspended {busy_rss:.1f} MiB "
                  f"(+{busy_rss - idle_rss:.1f} MiB, {busy_rss / idle_rss:.2f}x)")
            print(f"operator CPU over {QUIET_SECONDS}s: idle {idle_cpu:.2f}%, with {count} suspended "
                  f"{busy_cpu:.2f}%")
            return 0 if not pods else 1
        finally:
            if operator is not None:
                os.killpg(operator.pid, signal.SIGTERM)
                operator.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())

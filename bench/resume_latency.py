"""Resume after a worker dies: Durakube's operator against the Kubernetes Job controller.

Starts one test bed, Postgres and the operator (its real entry point, with
DURAKUBE_INFRASTRUCTURE_RETRY_DELAY=0 so that the next attempt is due at once: the
figure is the operator's own path, not a configured back-off), then for each side:

- N one-pod Jobs (`sleep`, backoffLimit 1), or N TaskRuns of a task that holds its
  first attempt's pod in a step, until every pod's container runs;
- SIGKILL of each container's processes, one a second, as an OOM kill or a crash
  would end them;
- from each kill to the replacement pod's first event on a watch: p50, p99, max.

The Job controller is measured as it ships: it recreates a failed pod after its own
back-off (10 s, doubling), which is what a Job's user waits. Prints figures and the
ratio; it asserts nothing about time.

    .venv/bin/python bench/resume_latency.py [--runs 10]

About 3 minutes on 2 cores (`make bench-resume`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import beds  # bench/beds.py: run as a script, bench/ is on the path
import pod_throughput

HOLD_SECONDS = 600
TASK = {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": "hold"},
        "spec": {"image": "ghcr.io/durakube/test-tasks:dev", "entrypoint": "hold", "modules": ["behaviours"]}}


def job(name: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 1, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox",
                                "command": ["sleep", str(HOLD_SECONDS)]}]}}}}


def taskrun(name: str) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun", "metadata": {"name": name},
            "spec": {"taskRef": {"name": "hold"}, "payload": {"seconds": HOLD_SECONDS}}}


@dataclass(frozen=True)
class Side:
    title: str
    collection: str
    build: Callable[[str], dict[str, Any]]
    label: str  # the pods' label naming their Job or TaskRun


JOBS = Side("Job controller", "/apis/batch/v1/namespaces/{namespace}/jobs", job, pod_throughput.JOB_LABEL)
RUNS = Side("Durakube", "/apis/durakube.io/v1alpha1/namespaces/{namespace}/taskruns", taskrun,
            pod_throughput.RUN_LABEL)


class Pods(pod_throughput.PodStream):
    """Every pod of a namespace as a watch sees it: when each pod name was first seen and
    first seen ended (phase Failed or Succeeded: the node has reported the kill), and the
    owner (Job or TaskRun) it belongs to."""

    def __init__(self, client: pod_throughput.Client, namespace: str, label: str) -> None:
        self.first_seen: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.owner: dict[str, str] = {}
        self.changed = threading.Condition()
        super().__init__(client, namespace, label, 1800)

    def on_event(self, event: dict[str, Any], received: float) -> None:
        meta = event["object"]["metadata"]
        with self.changed:
            if meta["name"] not in self.first_seen:
                self.first_seen[meta["name"]] = received
                self.owner[meta["name"]] = (meta.get("labels") or {}).get(self.label, "")
            phase = (event["object"].get("status") or {}).get("phase")
            if phase in ("Failed", "Succeeded") and meta["name"] not in self.ended:
                self.ended[meta["name"]] = received
            self.changed.notify_all()

    def of(self, owner: str) -> list[str]:
        with self.changed:
            return [name for name, held in self.owner.items() if held == owner]


def running(client: pod_throughput.Client, namespace: str, label: str) -> dict[str, str]:
    """{owner: pod name} of the pods whose container has been running for a second."""
    found = {}
    for pod in client.core.list_namespaced_pod(namespace, label_selector=label).items:
        for container in pod.status.container_statuses or []:
            started = container.state.running.started_at if container.state.running else None
            if started is not None:
                found[pod.metadata.labels[label]] = pod.metadata.name
    return found


def processes_of(pod_name: str) -> list[int]:
    """The processes of a pod on the process node: its containers run with HOSTNAME set to
    the pod's name (unique to this benchmark by a random prefix)."""
    wanted = f"HOSTNAME={pod_name}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class Resumes:
    """Milliseconds from each kill to its replacement pod (inf: none within 120 s), and
    from the killed pod's end as the node reported it to the replacement: the
    controller's own share."""

    replaced: list[float]
    after_the_node: list[float]


def measure(client: pod_throughput.Client, side: Side, namespace: str, count: int) -> Resumes:
    prefix = f"r{secrets.token_hex(3)}"
    owners = [f"{prefix}-{i}" for i in range(count)]
    pods = Pods(client, namespace, side.label)
    try:
        for owner in owners:
            client.request("POST", side.collection.format(namespace=namespace), side.build(owner))
        deadline = time.monotonic() + 300
        while len(ready := running(client, namespace, side.label)) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{side.title}: {len(ready)} of {count} pods running after 300s")
            time.sleep(1)
        time.sleep(2)  # the workers are inside their step
        killed: dict[str, float] = {}
        for owner in owners:
            pids = processes_of(ready[owner])
            if not pids:
                print(f"  no process of pod {ready[owner]} found; skipped", flush=True)
                continue
            killed[owner] = time.monotonic()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(1)
        latencies, controller = [], []
        for owner, at in killed.items():
            limit = at + 120
            with pods.changed:
                while True:
                    later = [pods.first_seen[name] for name in pods.of(owner) if name != ready[owner]]
                    if later or time.monotonic() > limit:
                        break
                    pods.changed.wait(timeout=1)
            latencies.append(1000 * (min(later) - at) if later else math.inf)
            ended = pods.ended.get(ready[owner])
            if later and ended is not None:
                controller.append(1000 * (min(later) - ended))
        return Resumes(latencies, controller)
    finally:
        pods.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="Jobs and TaskRuns whose pod is killed")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    print(f"N={args.runs} a side, one SIGKILL a second; the operator with "
          f"DURAKUBE_INFRASTRUCTURE_RETRY_DELAY=0, the Job controller as it ships", flush=True)
    with beds.started() as (bed, database, state):
        operator = pod_throughput.start_operator(
            bed, state, database.create_database("durakube"), 50, 100, args.runs + 10,
            extra_env={"DURAKUBE_INFRASTRUCTURE_RETRY_DELAY": "0"})
        try:
            client = pod_throughput.Client(bed.kubeconfig)
            results: dict[str, Resumes] = {}
            for key, side in (("jobs", JOBS), ("runs", RUNS)):
                namespace = f"resume-{key}"
                beds.kubectl(bed, "create", "namespace", namespace)
                if side is RUNS:
                    beds.kubectl(bed, "apply", "-n", namespace, "-f", "-", stdin=json.dumps(TASK))
                print(f"{side.title}: {args.runs} pods, then a SIGKILL each ...", flush=True)
                results[key] = measure(client, side, namespace, args.runs)
                pod_throughput.delete_namespace(bed, namespace)
        finally:
            pod_throughput.stop_operator(operator)
    ours, theirs = results["runs"], results["jobs"]

    def at(values: list[float], fraction: float) -> float | None:
        return pod_throughput.percentile(values, fraction) if values else None

    print(f"\n{'figure':<52} {'Durakube':>12} {'Job controller':>15} {'ratio':>8}")
    for name, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        print(pod_throughput.row(f"{name} ms, worker killed to replacement pod seen",
                                 at(ours.replaced, fraction), at(theirs.replaced, fraction), "{:.0f}"))
    for name, fraction in (("p50", 0.5), ("p99", 0.99)):
        print(pod_throughput.row(f"{name} ms, pod reported ended to its replacement",
                                 at(ours.after_the_node, fraction), at(theirs.after_the_node, fraction),
                                 "{:.0f}"))
    print(pod_throughput.row(f"replacement pods seen (of {args.runs} kills)",
                             sum(math.isfinite(v) for v in ours.replaced),
                             sum(math.isfinite(v) for v in theirs.replaced), "{:.0f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

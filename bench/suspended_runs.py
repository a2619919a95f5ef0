"""Many runs present: what suspended and finished TaskRuns cost the operator.

Starts a test bed, Postgres and the operator (its real entry point), measures the
idle operator (the peer: the same process with no runs), then brings S runs to
Suspended (each takes one step in its own pod and sleeps for an hour) and F runs to
a final phase (created cancelled: registered and ended without a pod), and measures:

- the operator's resident memory, against its idle self;
- its CPU over a quiet interval, and the reconcile passes and API calls it made in
  that interval (no timer per waiting run: both stay near zero);
- the attempt pods the suspended runs hold (none);
- the same after a restart of the operator, which lists every TaskRun again.

Prints each figure beside the idle operator's and the issue's goal; asserts nothing
about time.

    .venv/bin/python bench/suspended_runs.py [--suspended 1000] [--finished 0]

Suspended runs go through a worker each, 25 at a time (the queue's limit; each
worker holds Postgres connections): about 3 a second on 2 cores, so 10,000 take about
an hour; finished ones only through the operator (about 50 a second).
`make bench-suspended` runs 1,000 suspended and 9,000 finished.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import beds  # bench/beds.py: run as a script, bench/ is on the path
import kubernetes

from devcluster import cluster, ports

BIN = Path(sys.executable).parent
QUIET_SECONDS = 60
# Runs of the queue that hold a pod at once (each worker holds Postgres connections). A
# hundred Python workers starting at once on two cores starved the API server and the
# operator long enough for the leader to lose its Lease (it exits, and is started
# again); 25 bring runs to rest as fast here.
CONCURRENCY = 25
NAMESPACE = "default"
IMAGE = "ghcr.io/durakube/test-tasks:dev"
TASK = {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": "napper"},
        "spec": {"image": IMAGE, "entrypoint": "nap-and-resume", "modules": ["behaviours"]}}
# The operator's counters read over each quiet interval.
COUNTERS = {"passes": "durakube_reconciles_total", "api_calls": "durakube_api_requests_total",
            "statements": "durakube_postgres_query_duration_seconds_count"}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Operator:
    """The operator process, its metrics port and its log."""

    def __init__(self, bed: cluster.Cluster, database_url: str, state: Path) -> None:
        self.metrics_port = ports.free_port()
        self.env = {**bed.env(), "DURAKUBE_DATABASE_URL": database_url,
                    "DURAKUBE_HEALTH_PORT": str(ports.free_port()), "DURAKUBE_WEBHOOK_PORT": "0",
                    "DURAKUBE_METRICS_PORT": str(self.metrics_port),
                    "DURAKUBE_DEFAULT_CONCURRENCY_LIMIT": str(CONCURRENCY)}
        self.state = state
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[int] = []  # exit codes of the times it stopped by itself

    def start(self) -> None:
        self.starts += 1
        log = open(self.state / f"operator-{self.starts}.log", "wb")
        self.process = subprocess.Popen([str(BIN / "durakube-operator")], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def restart_if_exited(self) -> None:
        """Starts the operator again if it exited, as its pod's restart would: a leader
        that cannot renew its Lease in time exits (on two cores, a hundred workers
        starting at once can starve the API server that long)."""
        if self.process is not None and (code := self.process.poll()) is not None:
            self.exits.append(code)
            print(f"  the operator exited with code {code} (see operator-{self.starts}.log); "
                  "starting it again", flush=True)
            self.start()

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def counters(self) -> dict[str, float]:
        try:
            return beds.operator_counters(self.metrics_port, COUNTERS)
        except OSError:  # not listening yet (starting)
            return dict.fromkeys(COUNTERS, 0.0)

    def quiet(self, seconds: float = QUIET_SECONDS) -> dict[str, float]:
        """RSS now; CPU %, passes and API calls over `seconds` of nothing happening."""
        before, counted = beds.cpu_seconds(self.pid), self.counters()
        time.sleep(seconds)
        after = self.counters()
        return {"rss": rss_mib(self.pid), "cpu": 100 * (beds.cpu_seconds(self.pid) - before) / seconds,
                **{key: after[key] - counted[key] for key in COUNTERS}}

    def settle(self, timeout: float = 1800) -> float:
        """Waits until ten seconds pass without a reconcile pass; returns the seconds waited."""
        started = last_change = time.monotonic()
        passes = self.counters()["passes"]
        while time.monotonic() - last_change < 10 and time.monotonic() - started < timeout:
            time.sleep(2)
            self.restart_if_exited()
            now = self.counters()["passes"]
            if now != passes or now == 0:
                passes, last_change = now, time.monotonic()
        return time.monotonic() - started


class Api:
    def __init__(self, bed: cluster.Cluster) -> None:
        client = beds.api_client(bed)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.pool = concurrent.futures.ThreadPoolExecutor(8)

    def create(self, bodies: list[dict[str, Any]]) -> None:
        list(self.pool.map(lambda body: self.custom.create_namespaced_custom_object(
            "durakube.io", "v1alpha1", NAMESPACE, "taskruns", body), bodies))

    def phases(self) -> tuple[dict[str, int], dict[str, str]]:
        """Runs per phase, and the last condition's message of one run per phase."""
        counts: dict[str, int] = {}
        said: dict[str, str] = {}
        token = None
        while True:
            page = self.custom.list_namespaced_custom_object(
                "durakube.io", "v1alpha1", NAMESPACE, "taskruns", limit=500, _continue=token)
            for item in page["items"]:
                status = item.get("status") or {}
                phase = status.get("phase") or "New"
                counts[phase] = counts.get(phase, 0) + 1
                conditions = status.get("conditions") or [{}]
                said.setdefault(phase, f"{item['metadata']['name']}: {conditions[-1].get('reason')}: "
                                       f"{conditions[-1].get('message')}")
            token = page["metadata"].get("continue")
            if not token:
                return counts, said

    def attempt_pods(self) -> int:
        return len(self.core.list_namespaced_pod(
            NAMESPACE, label_selector="app.kubernetes.io/managed-by=durakube").items)


def run(name: str, task: str, payload: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun", "metadata": {"name": name},
            "spec": {"taskRef": {"name": task}, "payload": payload, **spec}}


def wait_for(api: Api, want: dict[str, int], started: float, operator: Operator) -> None:
    """Until the phases counted reach `want`; stops when runs end otherwise."""
    while True:
        operator.restart_if_exited()
        phases, said = api.phases()
        print(f"  {phases} after {time.monotonic() - started:.0f}s", flush=True)
        if all(phases.get(phase, 0) >= count for phase, count in want.items()):
            return
        unexpected = {p: n for p, n in phases.items()
                      if p not in ("Suspended", "Running", "Queued", "Pending", "New", "Canceled")}
        if unexpected:
            raise SystemExit(f"runs ended otherwise: {unexpected}; "
                             + "; ".join(said[phase] for phase in unexpected))
        time.sleep(10)


def row(figure: str, value: float, idle: float | None, goal: str, unit: str = "{:.1f}") -> str:
    ratio = f"{value / idle:.2f}x" if idle else "-"
    shown_idle = "-" if idle is None else unit.format(idle)
    return f"{figure:<46} {unit.format(value):>10} {shown_idle:>10} {ratio:>8}  {goal}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suspended", type=int, default=1000, help="runs brought to Suspended")
    parser.add_argument("--finished", type=int, default=0, help="runs brought to a final phase")
    args = parser.parse_args()
    total = args.suspended + args.finished
    # Stopped from outside (timeout, kill): unwind so `finally` stops the test bed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with beds.started() as (bed, database, state):
        operator = Operator(bed, database.create_database("durakube"), state)
        # The test task's steps count their runs in a table of their own (tests/e2e/tasks).
        database.psql("CREATE TABLE IF NOT EXISTS public.test_effects (run_id text NOT NULL, "
                      "step text NOT NULL, count integer NOT NULL, PRIMARY KEY (run_id, step))",
                      database="durakube")
        try:
            operator.start()
            api = Api(bed)
            time.sleep(10)
            idle = operator.quiet()
            print(f"idle operator: {idle['rss']:.1f} MiB, {idle['cpu']:.2f}% CPU", flush=True)
            beds.kubectl(bed, "apply", "-f", "-", stdin=json.dumps(TASK))
            started = time.monotonic()
            api.create([run(f"done-{i}", "napper", {"seconds": 0}, cancel=True)
                        for i in range(args.finished)])
            wait_for(api, {"Canceled": args.finished}, started, operator)
            finished_seconds = time.monotonic() - started
            started = time.monotonic()
            api.create([run(f"waiter-{i}", "napper", {"seconds": 3600}) for i in range(args.suspended)])
            wait_for(api, {"Suspended": args.suspended}, started, operator)
            suspend_seconds = time.monotonic() - started
            operator.settle()
            busy = operator.quiet()
            exits = len(operator.exits)
            pods = api.attempt_pods()
            operator.stop()
            started = time.monotonic()
            operator.start()
            time.sleep(5)
            relist_seconds = operator.settle() + 5
            restarted = operator.quiet()

            print(f"\n{args.finished} runs finished in {finished_seconds:.0f}s; {args.suspended} runs "
                  f"suspended in {suspend_seconds:.0f}s (start, step and suspend, one pod each); "
                  f"the restarted operator settled {relist_seconds:.0f}s after its start")
            if exits:
                print(f"the operator exited {exits} times while runs were brought to rest and was "
                      "started again: the figures with runs present are after its last start")
            print(f"\n{'figure':<46} {'value':>10} {'idle':>10} {'ratio':>8}  goal")
            print(row(f"operator RSS MiB, {total} runs present", busy["rss"], idle["rss"],
                      "<= 300 MiB"))
            print(row("  over idle, MiB", busy["rss"] - idle["rss"], None,
                      f"<= 50 MiB for 10,000 suspended ({args.suspended} here)"))
            print(row("  after a restart (every run listed again)", restarted["rss"], idle["rss"],
                      "<= 300 MiB"))
            print(row(f"operator CPU %, quiet {QUIET_SECONDS}s, {total} runs", busy["cpu"], idle["cpu"],
                      "near zero", "{:.2f}"))
            print(row("  after a restart", restarted["cpu"], idle["cpu"], "near zero", "{:.2f}"))
            print(row(f"reconcile passes in the quiet {QUIET_SECONDS}s", busy["passes"], idle["passes"],
                      "0 (no timer per run)", "{:.0f}"))
            print(row(f"API calls in the quiet {QUIET_SECONDS}s", busy["api_calls"], idle["api_calls"],
                      "a few (the Lease)", "{:.0f}"))
            print(row(f"Postgres statements in the quiet {QUIET_SECONDS}s", busy["statements"],
                      idle["statements"], "the loops' rounds only", "{:.0f}"))
            print(row("attempt pods held by suspended runs", pods, None, "0", "{:.0f}"))
            return 0 if not pods else 1
        finally:
            operator.stop()


if __name__ == "__main__":
    sys.exit(main())

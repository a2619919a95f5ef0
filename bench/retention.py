"""Retention: what N finished runs leave in etcd and Postgres, with a TTL and without.

Starts one test bed, Postgres and the operator (its real entry point; its own
defaults keep finished TaskRuns and history for ever), then feeds two namespaces at
the same steady rate, in the same run:

- `ttl`: runs of a Task with `ttlSecondsAfterFinished` (default 5 s) and
  `historyRetention` (default 60 s);
- `keep`: the peer, the same runs of the same Task without either.

Every `--every` seconds, and until both sides are done and the TTL side is clean (or
`--settle` seconds have passed), it prints for each side: TaskRuns, attempt pods and
attempt Secrets in etcd (counted through the API), the Postgres rows of those runs
and the size of Durakube's tables, and how long `kubectl get taskruns` takes. It
asserts nothing about time.

Runs are trivial: `--mode pods` (default) runs the one-step `echo` task in a real
attempt pod on the process node (a queue limit of 8 keeps the two cores usable);
`--mode instant` creates each TaskRun with `spec.cancel: true`, so it is registered
in Postgres and finishes (Canceled) at its first pass without a pod: the control
path and storage only, fast enough for 10,000 runs a side.

    .venv/bin/python bench/retention.py [--runs 10000] [--rate 5] [--mode pods|instant]
                                        [--ttl 5] [--history 60s] [--every 15]

`make bench-retention` runs 10,000 runs a side in instant mode at 5 per second (the
operator finishes about 10 instant runs a second in all on 2 shared cores; faster
creations pile up on both sides); a quick check with real pods: `--runs 300 --rate 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import beds  # bench/beds.py: run as a script, bench/ is on the path
import kubernetes

from devcluster import cluster, ports

BIN = Path(sys.executable).parent
IMAGE = "ghcr.io/durakube/test-tasks:dev"
SIDES = ("ttl", "keep")
RUN_LABEL = "durakube.io/run-uid"
MANAGED = "app.kubernetes.io/managed-by=durakube"
FINAL = {"Succeeded", "Failed", "Canceled", "TimedOut", "Expired"}


@dataclass
class Sample:
    side: str
    elapsed: float
    created: int
    taskruns: int
    pods: int
    secrets: int
    run_rows: int
    step_rows: int
    get_seconds: float


def task(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": IMAGE, "entrypoint": "echo", "modules": ["echoing"], **spec}}


def taskrun(name: str, instant: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"taskRef": {"name": "echo"}, "payload": {"word": name}}
    if instant:
        spec["cancel"] = True
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun", "metadata": {"name": name},
            "spec": spec}


class Bed:
    """The bench's reads and writes: the API (one client, a few threads) and Postgres."""

    def __init__(self, bed: cluster.Cluster, database_url: str) -> None:
        self.bed, self.database_url = bed, database_url
        api = beds.api_client(bed)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.pool = concurrent.futures.ThreadPoolExecutor(8)

    def create_runs(self, namespace: str, names: list[str], instant: bool) -> None:
        list(self.pool.map(lambda name: self.custom.create_namespaced_custom_object(
            "durakube.io", "v1alpha1", namespace, "taskruns", taskrun(name, instant)), names))

    def count(self, namespace: str, kind: str) -> int:
        """Objects of a namespace in etcd, read in pages of 500 (names only)."""
        total, token = 0, None
        while True:
            if kind == "taskruns":
                page = self.custom.list_namespaced_custom_object(
                    "durakube.io", "v1alpha1", namespace, "taskruns", limit=500, _continue=token)
                items, token = page["items"], page["metadata"].get("continue")
            else:
                lister = self.core.list_namespaced_pod if kind == "pods" \
                    else self.core.list_namespaced_secret
                page = lister(namespace, label_selector=MANAGED, limit=500, _continue=token)
                items, token = page.items, page.metadata._continue
            total += len(items)
            if not token:
                return total

    def finished(self, namespace: str) -> int:
        out = beds.kubectl(self.bed, "get", "taskruns", "-n", namespace, "-o",
                           "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}")
        return sum(1 for phase in out.split() if phase in FINAL)

    def get_seconds(self, namespace: str) -> float:
        """How long `kubectl get taskruns` takes (the table people read), median of 3."""
        times = []
        for _ in range(3):
            started = time.monotonic()
            beds.kubectl(self.bed, "get", "taskruns", "-n", namespace)
            times.append(time.monotonic() - started)
        return statistics.median(times)

    def postgres(self) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
        """(namespace -> (runs rows, steps rows)), (table -> bytes) of Durakube's tables."""
        async def read() -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
            conn = await asyncpg.connect(self.database_url)
            try:
                rows = {}
                for side in SIDES:
                    rows[side] = (
                        await conn.fetchval("SELECT count(*) FROM durakube.runs WHERE namespace = $1",
                                            side),
                        await conn.fetchval("""
                            SELECT count(*) FROM durakube.steps s JOIN durakube.runs r USING (run_id)
                            WHERE r.namespace = $1""", side))
                sizes = {r["relname"]: int(r["bytes"]) for r in await conn.fetch("""
                    SELECT c.relname, pg_total_relation_size(c.oid) AS bytes
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'durakube' AND c.relkind = 'r'""")}
            finally:
                await conn.close()
            return rows, sizes

        return asyncio.run(read())

    def wait_for_schema(self, timeout: float = 180.0) -> None:
        """Until the operator has migrated the schema (it does at start)."""
        async def migrated() -> bool:
            conn = await asyncpg.connect(self.database_url)
            try:
                return bool(await conn.fetchval(
                    "SELECT to_regclass('durakube.run_retention') IS NOT NULL"))
            finally:
                await conn.close()

        deadline = time.monotonic() + timeout
        while not asyncio.run(migrated()):
            if time.monotonic() > deadline:
                raise SystemExit(f"the operator did not migrate the schema within {timeout:.0f}s")
            time.sleep(1)

    def etcd_objects(self) -> dict[str, int]:
        """The apiserver's own count of objects in etcd by resource, all namespaces (it
        refreshes it about once a minute, so it lags the listed counts)."""
        text = beds.kubectl(self.bed, "get", "--raw", "/metrics")
        counts: dict[str, int] = {}
        for line in text.splitlines():
            if not line.startswith(("apiserver_resource_objects{", "apiserver_storage_objects{")):
                continue
            labels, value = line.rsplit(" ", 1)
            found = dict(part.split("=", 1) for part in labels.split("{", 1)[1].rstrip("}").split(","))
            resource = found.get("resource", "").strip('"')
            group = found.get("group", "").strip('"')
            name = f"{resource}.{group}" if group and "." not in resource else resource
            if name in ("taskruns.durakube.io", "pods", "secrets"):
                counts[name] = int(float(value))
        return counts


def start_operator(bed: cluster.Cluster, state: Path, database_url: str) -> subprocess.Popen[bytes]:
    env = {**bed.env(), "DURAKUBE_DATABASE_URL": database_url,
           "DURAKUBE_HEALTH_PORT": str(ports.free_port()), "DURAKUBE_WEBHOOK_PORT": "0",
           "DURAKUBE_METRICS_PORT": "0", "DURAKUBE_DEFAULT_CONCURRENCY_LIMIT": "8",
           "DURAKUBE_LEADER_ELECTION": "false",
           # The peer keeps everything: only the Task of the `ttl` side sets a retention.
           "DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "never", "DURAKUBE_HISTORY_RETENTION": "never"}
    log = open(state / "operator.log", "wb")
    return subprocess.Popen([str(BIN / "durakube-operator")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_operator(operator: subprocess.Popen[bytes], state: Path) -> None:
    os.killpg(operator.pid, signal.SIGTERM)
    try:
        operator.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print("the operator did not stop within 30s of SIGTERM: killed; its log ends:\n"
              + (state / "operator.log").read_text(errors="replace")[-3000:], flush=True)
        os.killpg(operator.pid, signal.SIGKILL)
        operator.wait(timeout=30)


def mib(size: int) -> str:
    return f"{size / 2**20:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs per side")
    parser.add_argument("--rate", type=float, default=5.0, help="runs created per second per side")
    parser.add_argument("--mode", choices=("pods", "instant"), default="pods")
    parser.add_argument("--ttl", type=int, default=5, help="the ttl side's ttlSecondsAfterFinished")
    parser.add_argument("--history", default="60s", help="the ttl side's historyRetention")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=300.0,
                        help="longest wait, after the last run finished, for the ttl side to clean up")
    args = parser.parse_args()
    instant = args.mode == "instant"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with beds.started() as (bed, database, state):
        database_url = database.create_database("durakube")
        operator = start_operator(bed, state, database_url)
        try:
            reads = Bed(bed, database_url)
            reads.wait_for_schema()
            specs = {"ttl": {"ttlSecondsAfterFinished": args.ttl, "historyRetention": args.history},
                     "keep": {}}
            for side in SIDES:
                beds.kubectl(bed, "create", "namespace", side)
                beds.kubectl(bed, "apply", "-n", side, "-f", "-", stdin=json.dumps(task("echo", specs[side])))
            print(f"{args.runs} runs a side at {args.rate}/s a side, mode {args.mode}; ttl side: "
                  f"ttlSecondsAfterFinished {args.ttl}, historyRetention {args.history}; "
                  f"peer: kept for ever", flush=True)
            print(f"{'t(s)':>6} {'side':<5} {'created':>7} {'taskruns':>8} {'pods':>6} {'secrets':>7} "
                  f"{'pg runs':>7} {'pg steps':>8} {'get(s)':>7}", flush=True)
            samples: list[Sample] = []
            started = time.monotonic()
            created = 0
            next_sample = started
            done_at: float | None = None
            while True:
                now = time.monotonic()
                due = min(args.runs, int((now - started) * args.rate) + 1)
                if due > created:
                    names = [f"run-{i}" for i in range(created, due)]
                    for side in SIDES:
                        reads.create_runs(side, names, instant)
                    created = due
                if now >= next_sample:
                    next_sample = now + args.every
                    rows, sizes = reads.postgres()
                    for side in SIDES:
                        sample = Sample(side, now - started, created, reads.count(side, "taskruns"),
                                        reads.count(side, "pods"), reads.count(side, "secrets"),
                                        rows[side][0], rows[side][1], reads.get_seconds(side))
                        samples.append(sample)
                        print(f"{sample.elapsed:6.0f} {side:<5} {sample.created:7d} {sample.taskruns:8d} "
                              f"{sample.pods:6d} {sample.secrets:7d} {sample.run_rows:7d} "
                              f"{sample.step_rows:8d} {sample.get_seconds:7.3f}", flush=True)
                    print(f"{'':6} postgres: {mib(sum(sizes.values()))} MiB in all; "
                          + ", ".join(f"{table} {mib(size)}" for table, size in sorted(
                              sizes.items(), key=lambda item: -item[1])[:5])
                          + f"; etcd: {reads.etcd_objects()}", flush=True)
                    if created == args.runs and done_at is None \
                            and reads.finished("keep") == args.runs:
                        done_at = now
                        print(f"{'':6} every run of the peer finished after {now - started:.0f}s",
                              flush=True)
                    ttl_side = [s for s in samples if s.side == "ttl"][-1]
                    clean = ttl_side.taskruns == ttl_side.pods == ttl_side.secrets == 0 \
                        and ttl_side.run_rows == 0
                    if done_at is not None and (clean or now - done_at > args.settle):
                        break
                time.sleep(0.2)
            report(samples, args)
            return 0
        finally:
            stop_operator(operator, state)


def report(samples: list[Sample], args: argparse.Namespace) -> None:
    print("\nsummary (largest seen during the run, and at the end):")
    print(f"{'side':<5} {'taskruns':>15} {'pods':>13} {'secrets':>13} {'pg runs':>13} "
          f"{'get taskruns (s)':>17}")
    for side in SIDES:
        mine = [s for s in samples if s.side == side]
        last = mine[-1]

        def peak(field: str, mine: list[Sample] = mine) -> int:
            return max(int(getattr(s, field)) for s in mine)

        print(f"{side:<5} {peak('taskruns'):>7} / {last.taskruns:<5} {peak('pods'):>5} / {last.pods:<5} "
              f"{peak('secrets'):>5} / {last.secrets:<5} {peak('run_rows'):>5} / {last.run_rows:<5} "
              f"{max(s.get_seconds for s in mine):>8.3f} / {last.get_seconds:.3f}")


if __name__ == "__main__":
    sys.exit(main())

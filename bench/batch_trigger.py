"""Benchmark: `AsyncClient.batch_trigger` of N TaskRuns against creating them one by one.

Starts its own test bed (control plane and process node, `devcluster.cluster`) and
embedded Postgres (`devcluster.postgres`) in a temporary directory, installs the
CRDs, a Task and two namespaces, then times, on the same API server:

- sequential: the same TaskRun objects created one after another with the plain
              kubernetes client (`create_namespaced_custom_object` in a loop);
- batch:      `AsyncClient.batch_trigger(items, concurrency=C)`: the same objects
              (same task, same payloads) with C creates in flight.

No operator runs: the TaskRuns only have to be created. The two alternate over a
few rounds (fresh namespaces each time) and the medians are reported, with their
ratio (sequential / batch: how many times faster the batch is).

    .venv/bin/python bench/batch_trigger.py [-n 200] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import kubernetes

from devcluster import cluster as devcluster_cluster
from devcluster import postgres
from durakube.client import AsyncClient, manifests

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
TASK = "nap"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="TaskRuns per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="durakube-bench-") as folder:
        state = Path(folder)
        print("starting the test bed and Postgres ...", flush=True)
        database = postgres.start(state / "postgres")
        bed = devcluster_cluster.start(state / "cluster")
        try:
            install_crds(bed)
            run(bed, database.create_database(), args.n, args.concurrency, args.rounds)
        finally:
            bed.stop()
            database.stop()


def install_crds(bed: devcluster_cluster.Cluster) -> None:
    subprocess.run([KUBECTL, "apply", "-f", str(ROOT / "crds")], env=bed.env(), check=True,
                   capture_output=True)
    subprocess.run([KUBECTL, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd/tasks.durakube.io", "crd/taskruns.durakube.io"], env=bed.env(),
                   check=True, capture_output=True)


def new_namespace(core: kubernetes.client.CoreV1Api,
                  custom: kubernetes.client.CustomObjectsApi) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": name}))
    custom.create_namespaced_custom_object("durakube.io", "v1alpha1", name, "tasks", {
        "apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": TASK},
        "spec": {"image": "ghcr.io/durakube/test-tasks:dev", "entrypoint": TASK,
                 "modules": ["behaviours"]}})
    return name


def payloads_of(n: int) -> list[dict[str, Any]]:
    return [{"seconds": 0, "tenant": f"t{i % 10}", "index": i} for i in range(n)]


def time_sequential(custom: kubernetes.client.CustomObjectsApi, namespace: str, n: int) -> float:
    bodies = [manifests.build_taskrun(TASK, name=None, payload=p)
              for p in payloads_of(n)]
    started = time.perf_counter()
    for body in bodies:
        custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns",
                                               body)
    return time.perf_counter() - started


async def time_batch(bed: devcluster_cluster.Cluster, dsn: str, namespace: str, n: int,
                     concurrency: int) -> float:
    async with AsyncClient(kubeconfig=bed.kubeconfig, namespace=namespace,
                           database_url=dsn) as client:
        items = [(TASK, p) for p in payloads_of(n)]
        started = time.perf_counter()
        created = await client.batch_trigger(items, concurrency=concurrency)
        elapsed = time.perf_counter() - started
    assert len(created) == n
    return elapsed


def count_runs(custom: kubernetes.client.CustomObjectsApi, namespace: str) -> int:
    return len(custom.list_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                    "taskruns")["items"])


def run(bed: devcluster_cluster.Cluster, dsn: str, n: int, concurrency: int, rounds: int) -> None:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(bed.kubeconfig),
                                       client_configuration=configuration)
    with kubernetes.client.ApiClient(configuration) as api:
        core = kubernetes.client.CoreV1Api(api)
        custom = kubernetes.client.CustomObjectsApi(api)
        # Warm both paths (connections, discovery, the apiserver's caches).
        time_sequential(custom, new_namespace(core, custom), 10)
        asyncio.run(time_batch(bed, dsn, new_namespace(core, custom), 10, concurrency))
        sequential, batch = [], []
        for index in range(rounds):
            one_by_one = new_namespace(core, custom)
            sequential.append(time_sequential(custom, one_by_one, n))
            batched = new_namespace(core, custom)
            batch.append(asyncio.run(time_batch(bed, dsn, batched, n, concurrency)))
            assert count_runs(custom, one_by_one) == n and count_runs(custom, batched) == n
            print(f"round {index + 1}: sequential {sequential[-1]:.2f}s, "
                  f"batch {batch[-1]:.2f}s", flush=True)
    seq, bat = statistics.median(sequential), statistics.median(batch)
    print(f"\n{n} TaskRuns, median of {rounds} rounds:")
    print(f"  sequential creates (plain client): {seq:.2f}s  ({n / seq:.0f} runs/s)")
    print(f"  batch_trigger (concurrency {concurrency}): {bat:.2f}s  ({n / bat:.0f} runs/s)")
    print(f"  ratio sequential / batch: {seq / bat:.2f}x")


if __name__ == "__main__":
    main()

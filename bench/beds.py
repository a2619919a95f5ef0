"""What the benchmarks share: a test bed with Postgres and the CRDs, and kubectl.

`started()` starts the local test bed (real control plane, process node) and an
embedded Postgres in a temporary folder, installs the CRDs, and stops everything
when the block ends, however it ends. Benchmarks start the operator inside it.
Not a test helper: nothing here asserts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kubernetes

from devcluster import cluster, postgres

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def kubectl(bed: cluster.Cluster, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
    result = subprocess.run([str(BIN / "kubectl"), *args], env=bed.env(), input=stdin,
                            capture_output=True, text=True, timeout=timeout, check=True)
    return result.stdout


def api_client(bed: cluster.Cluster, connections: int = 16) -> kubernetes.client.ApiClient:
    """A client of the test bed's API server as its admin, for a few threads at once."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(bed.kubeconfig),
                                       client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return kubernetes.client.ApiClient(configuration)


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def operator_counters(port: int, counters: dict[str, str]) -> dict[str, float]:
    """The operator's metrics named in `counters` (key -> metric name) as its /metrics
    on `port` has them now, each summed over its labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    found = dict.fromkeys(counters, 0.0)
    names = {metric: key for key, metric in counters.items()}
    for line in text.decode().splitlines():
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric in names:
            found[names[metric]] += float(line.rsplit(" ", 1)[1])
    return found


@contextmanager
def started(controller_manager_args: tuple[str, ...] = ()) -> Iterator[
        tuple[cluster.Cluster, postgres.PostgresServer, Path]]:
    """(test bed, Postgres, state folder), with the CRDs established."""
    with tempfile.TemporaryDirectory(prefix="durakube-bench-") as folder:
        state = Path(folder)
        bed = cluster.start(state / "cluster", controller_manager_args=controller_manager_args)
        try:
            database = postgres.start(state / "postgres")
            try:
                kubectl(bed, "apply", "-f", str(ROOT / "crds"))
                time.sleep(3)
                kubectl(bed, "wait", "--for=condition=Established", "--timeout=60s",
                        "-f", str(ROOT / "crds"))
                yield bed, database, state
            finally:
                database.stop()
        finally:
            bed.stop()

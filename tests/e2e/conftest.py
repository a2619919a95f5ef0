"""End-to-end fixtures: the CRDs installed on the test bed and the operator running.

The operator runs as its real entry point (`durakube-operator`) in a separate
process, with the admin kubeconfig and its own Postgres database, so a test can
SIGKILL it and start it again as a crash would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from helpers import OperatorProcess, kubectl, wait_for

from devcluster import cluster as devcluster_cluster
from devcluster import postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds(cluster: devcluster_cluster.Cluster) -> None:
    kubectl(cluster, "apply", "-f", str(ROOT / "crds"))
    # Right after apply, a CRD may have no status yet and kubectl wait refuses it: retry.
    wait_for(lambda: kubectl(cluster, "wait", "--for=condition=Established", "--timeout=30s",
                             "-f", str(ROOT / "crds"), check=False).returncode == 0,
             timeout=90, what="the CRDs established")


@pytest.fixture(scope="session")
def operator_database(pg_server: postgres.PostgresServer) -> str:
    return pg_server.create_database("durakube")


@pytest.fixture(scope="session")
def operator(cluster: devcluster_cluster.Cluster, crds: None, operator_database: str,
             session_dir: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster, operator_database, session_dir / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(f"--- operator log tail ---\n{process.log_tail()}")


@pytest.fixture
def custom(kube: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube)


@pytest.fixture
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)



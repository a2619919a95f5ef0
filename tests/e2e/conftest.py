"""End-to-end fixtures: the operator installed on the test bed with its Helm chart.

`helm install` of charts/durakube puts the CRDs, the RBAC and two replicas of the
operator (from the operator image, which the process node runs from the project's
virtual environment) on the test bed, with a Postgres database of their own. The
operator runs as its ServiceAccount, so every end-to-end test exercises the
chart's permissions; a test may SIGKILL the leader as a crash would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from helpers import InstalledOperator

from devcluster import cluster as devcluster_cluster
from devcluster import postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def operator_database(pg_server: postgres.PostgresServer) -> str:
    return pg_server.create_database("durakube")


@pytest.fixture(scope="session")
def operator(cluster: devcluster_cluster.Cluster, operator_database: str,
             session_dir: Path) -> Iterator[InstalledOperator]:
    installed = InstalledOperator(cluster, operator_database, session_dir)
    installed.install()
    try:
        yield installed
    finally:
        print(f"--- operator log tail ---\n{installed.log_tail()}")
        if installed.failovers:
            print("operator failovers after SIGKILL of the leader: "
                  + ", ".join(f"{seconds:.1f}s" for seconds in installed.failovers))


@pytest.fixture
def custom(kube: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube)


@pytest.fixture
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)



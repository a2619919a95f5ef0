"""Fixtures of the real-node lane: one test bed per session (started on first use)
whose only node is a real kubelet with containerd, and the operator installed on it
from its real image.

The test bed (devcluster.cluster with `real_node`) listens on the pod network's
gateway address, and so does a Postgres server of its own, so that the operator's
and the workers' containers reach both from their network namespaces. The images
come from `make images` (devcluster/realnode/images.py). Fixture names start with
`real_` so that they never mix with the process node's session fixtures.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import kubernetes
import pytest
from helpers import InstalledOperator

from devcluster import cluster as devcluster_cluster
from devcluster import postgres

REAL_NODE = "real-1"
WORKER_LOGIN = "durakube_worker_real_login"
OPERATOR_LOGIN = "durakube_operator_real_login"
TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        shown = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in TIMINGS.items())
        terminalreporter.write_line(f"real node start-up: {shown}")


@pytest.fixture(scope="session")
def real_cluster(session_dir: Path) -> Iterator[devcluster_cluster.Cluster]:
    """The control plane with one real node (kubelet, kube-proxy, containerd)."""
    began = time.monotonic()
    bed = devcluster_cluster.start(session_dir / "real-cluster", nodes=(), real_node=REAL_NODE)
    TIMINGS["control plane and real node"] = time.monotonic() - began
    TIMINGS.update(bed.timings)
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def real_postgres(session_dir: Path,
                  real_cluster: devcluster_cluster.Cluster) -> Iterator[postgres.PostgresServer]:
    network = real_cluster.pod_network
    assert network is not None
    server = postgres.start(session_dir / "real-postgres", host=network.gateway,
                            trusted_network=str(network.subnet))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def real_database(real_postgres: postgres.PostgresServer) -> dict[str, str]:
    """The operator's database with the three logins of a real install (the owner, a
    member of durakube_operator, a member of durakube_worker), and the test tasks'
    table of side effects that the workers' login may write."""
    owner = real_postgres.create_database("durakube")
    real_postgres.psql(f"""
        CREATE ROLE durakube_operator NOLOGIN;
        CREATE ROLE durakube_worker NOLOGIN;
        CREATE ROLE {OPERATOR_LOGIN} LOGIN IN ROLE durakube_operator;
        CREATE ROLE {WORKER_LOGIN} LOGIN IN ROLE durakube_worker;""")
    real_postgres.psql(f"""
        CREATE TABLE public.test_effects (
            run_id text NOT NULL, step text NOT NULL, count integer NOT NULL,
            PRIMARY KEY (run_id, step));
        GRANT SELECT, INSERT, UPDATE ON public.test_effects TO {WORKER_LOGIN}""", database="durakube")
    parts = urlsplit(owner)
    return {
        "owner": owner,
        "operator": urlunsplit(parts._replace(netloc=f"{OPERATOR_LOGIN}@{parts.hostname}:{parts.port}")),
        "worker": urlunsplit(parts._replace(netloc=f"{WORKER_LOGIN}@{parts.hostname}:{parts.port}")),
    }


@pytest.fixture(scope="session")
def real_operator(real_cluster: devcluster_cluster.Cluster, real_database: dict[str, str],
                  session_dir: Path) -> Iterator[InstalledOperator]:
    """`helm install` of charts/durakube: two replicas from the operator image."""
    folder = session_dir / "real-operator"
    folder.mkdir()
    began = time.monotonic()
    installed = InstalledOperator(real_cluster, real_database["owner"], folder,
                                  operator_url=real_database["operator"],
                                  worker_url=real_database["worker"])
    installed.install()
    TIMINGS["operator install"] = time.monotonic() - began
    try:
        yield installed
    finally:
        print(f"--- operator log tail (real node) ---\n{installed.log_tail()}")
        installed.uninstall()


@pytest.fixture(scope="session")
def real_kube(real_cluster: devcluster_cluster.Cluster) -> Iterator[kubernetes.client.ApiClient]:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(real_cluster.kubeconfig),
                                       client_configuration=config)
    with kubernetes.client.ApiClient(config) as client:
        yield client


@pytest.fixture
def real_core(real_kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(real_kube)


@pytest.fixture
def real_custom(real_kube: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(real_kube)


@pytest.fixture
def real_namespace(real_core: kubernetes.client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"r-{uuid.uuid4().hex[:10]}"
    real_core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": name}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            real_core.read_namespaced_service_account("default", name)
            break
        except kubernetes.client.ApiException:
            time.sleep(0.1)
    yield name
    real_core.delete_namespace(name)

"""Session fixtures: the real components every test of the product runs against.

Postgres starts once per test session (a fresh database per test where isolation
matters); the Kubernetes test bed (control plane and process node) starts once,
on first use, for the end-to-end tests only, so a run of unit tests alone stays
fast.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import kubernetes
import pytest

from devcluster import cluster as devcluster_cluster
from devcluster import postgres


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    """The session's folder: the test bed's state, and the process node's container logs.
    Removed at the end, unless DURAKUBE_KEEP_TEST_DIR is set (to read those logs after a
    failure; its path is printed)."""
    path = Path(tempfile.mkdtemp(prefix="durakube-test-"))
    try:
        yield path
    finally:
        if os.environ.get("DURAKUBE_KEEP_TEST_DIR"):
            print(f"kept the session's folder (DURAKUBE_KEEP_TEST_DIR): {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


# Start-up times of the real components, printed at the end of the run.
TIMINGS: dict[str, float] = {}


class _Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Stoppable)


def _started(name: str, start: Callable[[], S]) -> Iterator[S]:
    """Starts a service for a session fixture, records how long it took, stops it after."""
    began = time.monotonic()
    service = start()
    TIMINGS[name] = time.monotonic() - began
    try:
        yield service
    finally:
        service.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        shown = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in TIMINGS.items())
        terminalreporter.write_line(f"test bed start-up: {shown}")


@pytest.fixture(scope="session")
def pg_server(session_dir: Path) -> Iterator[postgres.PostgresServer]:
    """One real Postgres server for the whole session."""
    yield from _started("Postgres", lambda: postgres.start(session_dir / "postgres"))


@pytest.fixture
def database_dsn(pg_server: postgres.PostgresServer) -> str:
    """A fresh, empty database of its own for one test."""
    return pg_server.create_database()


@pytest.fixture(scope="session")
def login_dsn(pg_server: postgres.PostgresServer) -> Callable[[str, str], str]:
    """`login_dsn(database_dsn, group)`: the DSN, on that DSN's database, of a login role
    that is a member of `group` (durakube_worker, durakube_operator), as a deployment
    makes one; created on first use. Roles belong to the whole server, so every test
    database shares it; the group roles exist once a database is migrated."""
    return functools.partial(_login_dsn, pg_server)


def _login_dsn(pg_server: postgres.PostgresServer, database_dsn: str, group: str) -> str:
    login = f"{group}_test_login"
    pg_server.psql(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{login}') THEN
                CREATE ROLE {login} LOGIN IN ROLE {group};
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$""")
    parts = urlsplit(database_dsn)
    return urlunsplit(parts._replace(netloc=f"{login}@{parts.hostname}:{parts.port}"))


@pytest.fixture(scope="session")
def cluster(session_dir: Path) -> Iterator[devcluster_cluster.Cluster]:
    """The real test bed: etcd, kube-apiserver, controller-manager, scheduler and one
    process node, started on first use and stopped at the end of the session."""
    yield from _started("control plane and process node",
                        lambda: devcluster_cluster.start(session_dir / "cluster"))


@pytest.fixture(scope="session")
def kube(cluster: devcluster_cluster.Cluster) -> Iterator[kubernetes.client.ApiClient]:
    """A Kubernetes API client authenticated as the cluster's admin."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(cluster.kubeconfig),
                                       client_configuration=config)
    with kubernetes.client.ApiClient(config) as client:
        yield client


@pytest.fixture
def namespace(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    yield from _fresh_namespace(kube)


@pytest.fixture
def other_namespace(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    """A second fresh namespace: another tenant."""
    yield from _fresh_namespace(kube)


def _fresh_namespace(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    core = kubernetes.client.CoreV1Api(kube)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": name}))
    # Pods are admitted only once the service-account controller made "default".
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except kubernetes.client.ApiException:
            time.sleep(0.1)
    yield name
    core.delete_namespace(name)

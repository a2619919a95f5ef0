"""Session fixtures: the real components every test of the product runs against.

Postgres starts once per test session (a fresh database per test where isolation
matters); the Kubernetes test bed (control plane and process node) starts once,
on first use, for the end-to-end and chaos tests only, so a run of unit tests alone
stays fast.

The operator is installed on the test bed with its Helm chart (`operator`), once for
the end-to-end (tests/e2e/) and chaos (tests/chaos/) tests alike: the CRDs, the RBAC
and two replicas of the operator (from the operator image, which the process node
runs from the project's virtual environment), with a Postgres database of their own
and three logins as a real install has them: the owner migrates, the operator runs
as a member of durakube_operator, and attempt pods get a member of durakube_worker.
The operator runs as its ServiceAccount, so every such test exercises the chart's
permissions; a test may SIGKILL the leader as a crash would. Its fault points
(operator/README.md) are armed for namespaces named `faults-<point>-*` only. Its traces
go to a receiver of the session (`collecting`), for runs created inside a sampled trace.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import kubernetes
import pytest
from collecting import SpanCollector
from helpers import InstalledOperator

from devcluster import cluster as devcluster_cluster
from devcluster import postgres

# The session node restarts a crashed container after 1 s, doubling up to 10 s (a
# kubelet's 10 s up to 5 minutes): the tests that kill the operator's leader, or end it
# at a fault point, wait for the lease to expire, not for a back-off on top of it.
NODE_ARGS = ("--backoff-initial", "1", "--backoff-max", "10")

# The login login_dsn makes in durakube_worker.
WORKER_LOGIN = "durakube_worker_test_login"


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
            # The real node's image store alone is over a gigabyte, which took 7 to 20 s
            # to remove at the end of every run: `rm` goes on after pytest has exited.
            # Never across a mount point the test bed failed to undo.
            subprocess.Popen(["rm", "-rf", "--one-file-system", str(path)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)


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
                        lambda: devcluster_cluster.start(session_dir / "cluster", node_args=NODE_ARGS))


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


@pytest.fixture(scope="session")
def operator_database(pg_server: postgres.PostgresServer) -> str:
    return pg_server.create_database("durakube")


@pytest.fixture(scope="session")
def database_logins(pg_server: postgres.PostgresServer, operator_database: str,
                    login_dsn: Callable[[str, str], str]) -> dict[str, str]:
    """The operator's and the workers' logins on the operator's database, as an
    administrator makes them before the install: the group roles first (the migration
    finds them and grants them their rights), then a login in each."""
    pg_server.psql("""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'durakube_operator') THEN
                CREATE ROLE durakube_operator NOLOGIN;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'durakube_worker') THEN
                CREATE ROLE durakube_worker NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$""")
    logins = {group: login_dsn(operator_database, group)
              for group in ("durakube_operator", "durakube_worker")}
    # The test tasks' own tables of side effects (tasks/effects.py), which the workers'
    # login may write: nothing of Durakube's. test_step_runs has a row per execution of a
    # step, with the attempt that ran it (the chaos tests' invariant); a row of test_holds
    # holds the chaos tasks that name it (tests/e2e/tasks/chaotic.py).
    pg_server.psql(f"""
        CREATE TABLE IF NOT EXISTS public.test_effects (
            run_id text NOT NULL, step text NOT NULL, count integer NOT NULL,
            PRIMARY KEY (run_id, step));
        GRANT SELECT, INSERT, UPDATE ON public.test_effects TO {WORKER_LOGIN};
        CREATE TABLE IF NOT EXISTS public.test_step_runs (
            run_id text NOT NULL, step text NOT NULL, attempt integer NOT NULL,
            at timestamptz NOT NULL DEFAULT clock_timestamp());
        GRANT SELECT, INSERT ON public.test_step_runs TO {WORKER_LOGIN};
        CREATE TABLE IF NOT EXISTS public.test_holds (name text PRIMARY KEY);
        GRANT SELECT ON public.test_holds TO {WORKER_LOGIN}""",
        database=urlsplit(operator_database).path.lstrip("/"))
    return logins


@pytest.fixture(scope="session")
def span_collector() -> Iterator[SpanCollector]:
    """The OTLP/HTTP receiver that the installed operator and its attempt pods send spans to."""
    collector = SpanCollector()
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture(scope="session")
def operator(cluster: devcluster_cluster.Cluster, operator_database: str,
             database_logins: dict[str, str], session_dir: Path,
             span_collector: SpanCollector) -> Iterator[InstalledOperator]:
    installed = InstalledOperator(cluster, operator_database, session_dir,
                                  operator_url=database_logins["durakube_operator"],
                                  worker_url=database_logins["durakube_worker"],
                                  otlp_endpoint=span_collector.endpoint)
    installed.install()
    try:
        yield installed
    finally:
        print(f"--- operator log tail ---\n{installed.log_tail()}")
        if installed.failovers:
            print("operator failovers after SIGKILL of the leader: "
                  + ", ".join(f"{seconds:.1f}s" for seconds in installed.failovers))
        # While Postgres still runs (it stops after this fixture): a replica stopped
        # without its database takes seconds longer to end.
        installed.uninstall()


@pytest.fixture
def custom(kube: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube)


@pytest.fixture
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)



"""End-to-end fixtures: the operator installed on the test bed with its Helm chart.

`helm install` of charts/durakube puts the CRDs, the RBAC and two replicas of the
operator (from the operator image, which the process node runs from the project's
virtual environment) on the test bed, with a Postgres database of their own and
three logins as a real install has them: the owner migrates, the operator runs as a
member of durakube_operator, and attempt pods get a member of durakube_worker. The
operator runs as its ServiceAccount, so every end-to-end test exercises the
chart's permissions; a test may SIGKILL the leader as a crash would. Its traces go to
a receiver of the session (`collecting`), for runs created inside a sampled trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes
import pytest
from collecting import SpanCollector
from helpers import InstalledOperator

from devcluster import cluster as devcluster_cluster
from devcluster import postgres

ROOT = Path(__file__).resolve().parents[2]
# The login tests/conftest.py's login_dsn makes in durakube_worker.
WORKER_LOGIN = "durakube_worker_test_login"


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
    # The test tasks' own table of side effects (tasks/effects.py), which the workers'
    # login may write: nothing of Durakube's.
    pg_server.psql(f"""
        CREATE TABLE IF NOT EXISTS public.test_effects (
            run_id text NOT NULL, step text NOT NULL, count integer NOT NULL,
            PRIMARY KEY (run_id, step));
        GRANT SELECT, INSERT, UPDATE ON public.test_effects TO {WORKER_LOGIN}""",
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


@pytest.fixture
def custom(kube: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube)


@pytest.fixture
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)



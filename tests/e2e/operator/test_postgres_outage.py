"""Postgres goes away and comes back: the operator reports it and carries on, and a run
with a step in flight across the outage succeeds without running a step twice."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import kubernetes
import pytest
from helpers import InstalledOperator, get_taskrun, wait_for, wait_for_phase
from test_taskrun_lifecycle import create, effects, run_manifest, task_manifest

from devcluster import postgres

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

# How long Postgres stays down once the operator has noticed.
OUTAGE_SECONDS = 8


def readiness(operator: InstalledOperator) -> int:
    """The status /readyz answers (either replica: they share the port), 0 when none does."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/readyz",
                                    timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0


def restarts(core: kubernetes.client.CoreV1Api) -> int:
    pods = core.list_namespaced_pod(InstalledOperator.NAMESPACE,
                                    label_selector="app.kubernetes.io/name=durakube").items
    return sum(status.restart_count for pod in pods for status in pod.status.container_statuses or [])


def test_a_postgres_outage_is_a_pause(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator,
        pg_server: postgres.PostgresServer) -> None:
    restarted_before = restarts(core)
    create(custom, namespace, task_manifest("sleepy", "sleepy", retry={"maxAttempts": 1}),
           run_manifest("outlasting", "sleepy", {"seconds": 30}))
    wait_for(lambda: get_taskrun(custom, namespace, "outlasting").get("status", {})
             .get("currentStep") == "first", timeout=90, what="the first step recorded")

    pg_server.stop()
    try:
        wait_for(lambda: readiness(operator) == 503, timeout=30,
                 what="the operator reporting Postgres unreachable")
        time.sleep(OUTAGE_SECONDS)  # the outage itself: nothing to wait for but time
    finally:
        pg_server.restart()
    wait_for(lambda: readiness(operator) == 200, timeout=60, what="the operator ready again")

    run = wait_for_phase(custom, namespace, "outlasting", {"Succeeded", "Failed"}, timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    # The step in flight finished in the same attempt; nothing ran twice.
    assert (run["status"]["attempt"], run["status"].get("infrastructureFailures", 0)) == (1, 0)
    assert effects(operator.database_url, run["metadata"]["uid"]) == {"first": 1, "second": 1}
    # No replica crashed over it.
    assert restarts(core) == restarted_before

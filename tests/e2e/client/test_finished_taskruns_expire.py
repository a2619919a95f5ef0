"""Retention end to end: a finished TaskRun whose ttlSecondsAfterFinished ran out is
deleted by the operator, its attempt pod and Secret go with it (the controller-manager's
garbage collector), and `durakube get`, `list` and `steps` still show the run from its
history in Postgres; a run without a TTL of its own keeps its TaskRun (the operator's
default is 7 days)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes
import pytest
from clientbed import install_tasks
from helpers import InstalledOperator, wait_for, wait_for_phase

from devcluster import cluster as devcluster_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

DURAKUBE = str(Path(sys.executable).parent / "durakube")


def create_run(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str, task: str,
               labels: dict[str, str] | None = None, **spec: Any) -> str:
    body = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taskRef": {"name": task}, "payload": {"word": name}, **spec}}
    created = custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                     "taskruns", body)
    return str(created["metadata"]["uid"])


def taskrun_exists(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str) -> bool:
    try:
        custom.get_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns", name)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def owned_objects(core: kubernetes.client.CoreV1Api, namespace: str, uid: str) -> list[str]:
    """The attempt pods of the run with this uid (their secrets are in the namespace's
    key rings, which outlive a run)."""
    selector = f"durakube.io/run-uid={uid}"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [f"pod/{pod.metadata.name}" for pod in pods]


def retention_row(database_url: str, run_id: str) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        connection = await asyncpg.connect(database_url)
        try:
            row = await connection.fetchrow(
                "SELECT * FROM durakube.run_retention WHERE run_id = $1", run_id)
        finally:
            await connection.close()
        return None if row is None else dict(row)

    return asyncio.run(read())


def test_expired_taskruns_are_deleted_and_their_history_is_still_shown(
        cluster: devcluster_cluster.Cluster, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, namespace: str, operator: InstalledOperator) -> None:
    install_tasks(custom, namespace, "echoing")
    # A Task whose runs keep their TaskRun for no time, unless they say otherwise.
    task = {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": "echo-brief"},
            "spec": {**custom.get_namespaced_custom_object(
                "durakube.io", "v1alpha1", namespace, "tasks", "echo")["spec"],
                "ttlSecondsAfterFinished": 0}}
    custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "tasks", task)

    expiring = create_run(custom, namespace, "expiring", "echo", ttlSecondsAfterFinished=0,
                          labels={"durakube.io/tag-nightly": "true"})
    by_task = create_run(custom, namespace, "by-task", "echo-brief")
    kept = create_run(custom, namespace, "kept", "echo")
    kept_by_run = create_run(custom, namespace, "kept-by-run", "echo-brief",
                             ttlSecondsAfterFinished=3600)

    for name in ("kept", "kept-by-run"):
        assert wait_for_phase(custom, namespace, name, {"Succeeded", "Failed"})["status"]["phase"] \
            == "Succeeded"
    for name, uid in (("expiring", expiring), ("by-task", by_task)):
        wait_for(lambda name=name: not taskrun_exists(custom, namespace, name), timeout=90,
                 what=f"TaskRun {name} deleted after its TTL")
        # Its attempt pod is collected with it.
        wait_for(lambda uid=uid: not owned_objects(core, namespace, uid), timeout=90,
                 what=f"the pod of {name} collected")
        row = retention_row(operator.database_url, uid)
        assert row is not None and row["taskrun_gone_at"] is not None, row

    env = {**cluster.env(), "DURAKUBE_DATABASE_URL": operator.database_url}

    def durakube(*args: str) -> str:
        result = subprocess.run([DURAKUBE, "-n", namespace, *args], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"durakube {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    shown = json.loads(durakube("get", "expiring", "-o", "json"))
    assert (shown["phase"], shown["runId"], shown["source"]) == ("Succeeded", expiring, "history")
    assert shown["output"] == {"word": "expiring"}
    # Waiting for a run whose TaskRun is gone finds it finished in its history.
    assert json.loads(durakube("wait", "expiring", "--timeout", "30", "-o", "json")) == \
        {"word": "expiring"}
    steps = durakube("steps", "expiring").splitlines()
    assert steps[1].split()[:3] == ["1", "measure", "succeeded"]
    listed = {run["name"]: run for run in json.loads(durakube("list", "-o", "json"))}
    assert {"expiring", "by-task", "kept", "kept-by-run"} <= set(listed)
    assert (listed["by-task"]["phase"], listed["by-task"]["source"]) == ("Succeeded", "history")
    assert listed["kept"]["source"] == "api"
    # Its tags outlive the TaskRun: the history lists it by tag.
    tagged = json.loads(durakube("list", "--tag", "nightly", "-o", "json"))
    assert [(run["name"], run["source"], run["tags"]) for run in tagged] == \
        [("expiring", "history", ["nightly"])]
    # Logs are read through the run's history too (no pod is left to read them from).
    durakube("logs", "expiring")

    # The runs without a TTL of their own, or with a long one, keep their TaskRun, pod
    # and Secret; their expiry is recorded for later.
    for name, uid, ttl in (("kept", kept, timedelta(days=7)),
                           ("kept-by-run", kept_by_run, timedelta(hours=1))):
        assert taskrun_exists(custom, namespace, name)
        assert len(owned_objects(core, namespace, uid)) == 1
        row = retention_row(operator.database_url, uid)
        assert row is not None and row["taskrun_gone_at"] is None
        left = row["taskrun_expires_at"] - datetime.now(UTC)
        assert ttl - timedelta(minutes=5) < left <= ttl, (name, left)

"""The real controllers drive pods through the process node: a Deployment's
ReplicaSet, a Job to completion."""

from __future__ import annotations

import time

import kubernetes
import pytest
from conftest import Pods

pytestmark = pytest.mark.e2e


def test_deployment_with_two_replicas_gets_two_running_pods(pods: Pods) -> None:
    apps = kubernetes.client.AppsV1Api(pods.core.api_client)
    apps.create_namespaced_deployment(pods.namespace, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "main", "image": "busybox",
                                     "command": ["sleep", "600"]}]}}}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        deployment = apps.read_namespaced_deployment("web", pods.namespace)
        if (deployment.status.ready_replicas or 0) == 2:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"deployment not ready: {deployment.status}")
    listed = pods.core.list_namespaced_pod(pods.namespace, label_selector="app=web")
    assert [p.status.phase for p in listed.items] == ["Running", "Running"]


def test_job_runs_to_completion(pods: Pods) -> None:
    batch = kubernetes.client.BatchV1Api(pods.core.api_client)
    batch.create_namespaced_job(pods.namespace, {
        "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox",
                            "command": ["sh", "-c", "echo job done"]}]}}}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = batch.read_namespaced_job("once", pods.namespace)
        if job.status.succeeded == 1:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"job did not complete: {job.status}")
    conditions = {c.type: c.status for c in job.status.conditions or []}
    assert conditions.get("Complete") == "True"

"""Version pinning end to end: a run keeps the code it started with across a suspension,
whatever happens to its Task meanwhile, and a replay keeps it unless told otherwise.

The process node maps an image's repository to a command (`devcluster/node/images.py`)
and reports `<repository>@sha256:<digest of the image's name>` as its imageID, as a kubelet
reports the repository digest an image pulled from a registry resolved to (for an image
loaded onto the node it reports a bare `sha256:` image id, which pins nothing: the real
node's tests run so). The image the Task is changed to is mapped to nothing: an
attempt that used it could not run the task.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from helpers import (
    InstalledOperator,
    attempt_pods,
    create,
    event_reasons,
    get_taskrun,
    run_manifest,
    wait_for,
    wait_for_phase,
)
from test_taskrun_lifecycle import TEST_IMAGE, task_manifest

from devcluster import cluster as devcluster_cluster
from durakube.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

CHANGED_IMAGE = "ghcr.io/durakube/not-a-mapped-image:2"
REPOSITORY = TEST_IMAGE.rsplit(":", 1)[0]


def suspend(custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
            namespace: str, task: str, run: str, key: str) -> dict[str, Any]:
    """A run of `task` that waits for an event on `key`, once suspended without a pod."""
    create(custom, namespace, task_manifest(task, "await-event"), run_manifest(run, task, {"key": key}))
    suspended = wait_for_phase(custom, namespace, run, {"Suspended", "Failed", "Succeeded"})
    assert suspended["status"]["phase"] == "Suspended", suspended["status"]
    wait_for(lambda: not attempt_pods(core, namespace), what="the suspended attempt's pod removed")
    return suspended


def pod_image(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod(name, namespace).spec.containers[0].image)


def test_resume_and_replay_run_the_image_the_run_started_with(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
        operator: InstalledOperator) -> None:
    suspended = suspend(custom, core, namespace, "approver", "pinned", "go")
    pinned = suspended["status"]["pinned"]
    assert (pinned["image"], pinned["entrypoint"], pinned["modules"]) == (
        TEST_IMAGE, "await-event", ["behaviours"])
    digest = pinned["imageDigest"]
    assert digest.startswith("sha256:")
    custom.patch_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "tasks",
                                          "approver", {"spec": {"image": CHANGED_IMAGE}})

    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace,
                database_url=operator.database_url) as client:
        client.send_event("go", {"approved": True})
        run = wait_for_phase(custom, namespace, "pinned", {"Succeeded", "Failed"})
        assert run["status"]["phase"] == "Succeeded", run["status"]
        assert run["status"]["output"] == {"timedOut": False, "data": {"approved": True}}
        assert pod_image(core, namespace, "pinned-2") == f"{REPOSITORY}@{digest}"
        assert client.get("pinned").pinned_image == f"{REPOSITORY}@{digest}"

        # A replay keeps the pinned code; one on the latest Task takes the changed image.
        kept = client.replay("pinned")
        latest = client.replay("pinned", latest=True)
        # (Its pod cannot run the task, and is gone soon: its run's snapshot says what it ran.)
        started = wait_for(lambda: get_taskrun(custom, namespace, latest.name).get("status", {})
                           .get("pinned"), what="the first attempt of the replay on the latest Task")
        # (A digest, if its pod reported one by now, is the changed image's, not the original's.)
        assert started["image"] == CHANGED_IMAGE and started.get("imageDigest") != digest
        client.cancel(latest)
        wait_for_phase(custom, namespace, kept.name, {"Suspended", "Failed", "Succeeded"})
        client.send_event("go", {"approved": False})
        replayed = wait_for_phase(custom, namespace, kept.name, {"Succeeded", "Failed"})
    assert replayed["status"]["phase"] == "Succeeded", replayed["status"]
    assert replayed["status"]["pinned"]["imageDigest"] == digest
    # Its first attempt suspended (its pod is gone); the one that resumed ran the same image.
    assert pod_image(core, namespace, f"{kept.name}-2") == f"{REPOSITORY}@{digest}"


def test_run_whose_task_was_deleted_resumes_from_its_snapshot(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
        operator: InstalledOperator) -> None:
    suspend(custom, core, namespace, "short-lived", "orphan", "later")
    custom.delete_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "tasks",
                                           "short-lived")
    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace,
                database_url=operator.database_url) as client:
        client.send_event("later", {"n": 1})
    run = wait_for_phase(custom, namespace, "orphan", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"] == {"timedOut": False, "data": {"n": 1}}
    assert "TaskDeleted" in event_reasons(core, namespace, "orphan", "TaskDeleted")

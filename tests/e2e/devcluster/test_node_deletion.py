"""Graceful deletion through the process node: SIGTERM, the grace period, SIGKILL,
final status, then the node confirms the deletion so the pod object disappears."""

from __future__ import annotations

import pytest
from conftest import Pods, container_status, shell

from devcluster import cluster as devcluster_cluster
from devcluster.node import logs

pytestmark = pytest.mark.e2e

TRAPPING = "trap 'echo got SIGTERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done"
IGNORING = "trap '' TERM; echo ready; while true; do sleep 0.1; done"


def wait_until_running(pods: Pods, name: str) -> None:
    pods.wait_for(name, lambda p: p is not None and p["status"].get("phase") == "Running" and
                  "ready" in pods.core.read_namespaced_pod_log(name, pods.namespace),
                  what="running and ready")


def test_deleted_pod_gets_sigterm_and_disappears(
        pods: Pods, cluster: devcluster_cluster.Cluster) -> None:
    pods.create("trapping", [shell("main", TRAPPING)], terminationGracePeriodSeconds=30)
    wait_until_running(pods, "trapping")
    pods.core.delete_namespaced_pod("trapping", pods.namespace)
    pods.wait_for_gone("trapping", timeout=20)
    text = logs.read(cluster.state_dir / "nodes" / "node-1", pods.namespace, "trapping", "main")
    assert "got SIGTERM" in text


def test_process_ignoring_sigterm_is_killed_after_the_grace_period(pods: Pods) -> None:
    pods.create("ignoring", [shell("main", IGNORING)], terminationGracePeriodSeconds=2,
                restartPolicy="Always")
    wait_until_running(pods, "ignoring")
    pods.core.delete_namespaced_pod("ignoring", pods.namespace)
    final = pods.wait_for("ignoring", lambda p: p is None or "terminated" in
                          container_status(p)["state"], timeout=20, what="termination")
    if final is not None:  # caught between the final status and the confirmation
        assert container_status(final)["state"]["terminated"]["exitCode"] == 137
    pods.wait_for_gone("ignoring", timeout=20)


def test_pod_with_finalizer_stays_until_the_finalizer_is_removed(pods: Pods) -> None:
    pods.create("finalized", [shell("main", "sleep 600")])
    pods.core.patch_namespaced_pod("finalized", pods.namespace,
                                   {"metadata": {"finalizers": ["durakube.io/test"]}})
    pods.wait_for_phase("finalized", "Running")
    pods.core.delete_namespaced_pod("finalized", pods.namespace)
    pod = pods.wait_for("finalized", lambda p: p is not None and
                        p["status"].get("phase") == "Failed", timeout=20, what="Failed")
    assert pod is not None and pod["metadata"]["deletionTimestamp"]
    pods.core.patch_namespaced_pod("finalized", pods.namespace,
                                   {"metadata": {"finalizers": None}})
    pods.wait_for_gone("finalized", timeout=20)

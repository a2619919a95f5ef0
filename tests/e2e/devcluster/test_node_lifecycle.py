"""A process node that dies is handled by the real control plane (NotReady, then
eviction); one restarted under the same name reconciles the pods it had."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import kubernetes
import pytest
from conftest import Pods, container_status, shell
from helpers import wait_for
from nodes import extra_nodes, kill_agent, node_ready

from devcluster import cluster as devcluster_cluster

pytestmark = pytest.mark.e2e


@pytest.fixture
def extra_node(cluster: devcluster_cluster.Cluster,
               kube: kubernetes.client.ApiClient) -> Iterator[Callable[[str], devcluster_cluster.Component]]:
    """Starts more nodes; stops them and deletes their Node objects afterwards."""
    with extra_nodes(cluster, kubernetes.client.CoreV1Api(kube)) as start:
        yield start


def test_restarted_node_reports_lost_containers_as_terminated(
        pods: Pods, extra_node: Callable[[str], devcluster_cluster.Component]) -> None:
    agent = extra_node("node-restart")
    pods.create("survivor", [shell("main", "sleep 600")], nodeName="node-restart")
    pods.wait_for_phase("survivor", "Running", timeout=30)
    kill_agent(agent)
    extra_node("node-restart")
    pod = pods.wait_for_phase("survivor", "Failed", timeout=30)
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "ContainerStatusUnknown")


def test_lost_node_becomes_not_ready_and_its_pods_are_evicted(
        pods: Pods, extra_node: Callable[[str], devcluster_cluster.Component]) -> None:
    agent = extra_node("node-lost")
    pods.create("stranded", [shell("main", "sleep 600")], nodeName="node-lost",
                restartPolicy="Always")
    pods.wait_for_phase("stranded", "Running", timeout=30)
    kill_agent(agent)
    # The node-lifecycle controller notices the Lease is no longer renewed...
    wait_for(lambda: node_ready(pods.core, "node-lost") == "Unknown", timeout=60,
             what="node NotReady")
    # ...taints the node, and the taint-eviction controller deletes the pod once
    # its (20 s in this test bed) toleration of the taint runs out.
    pod = pods.wait_for("stranded", lambda p: p is None or bool(
        p["metadata"].get("deletionTimestamp")), timeout=60, what="eviction")
    if pod is not None:
        conditions = {c["type"]: c for c in pod["status"].get("conditions", [])}
        assert conditions.get("DisruptionTarget", {}).get("status") == "True"

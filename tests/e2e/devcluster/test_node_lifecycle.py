"""A process node that dies is handled by the real control plane (NotReady, then
eviction); one restarted under the same name reconciles the pods it had."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator

import kubernetes
import pytest
from conftest import Pods, container_status, shell

from devcluster import cluster as devcluster_cluster
from devcluster.node import cgroups

pytestmark = pytest.mark.e2e


def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"no {what} after {timeout}s")


def node_ready(core: kubernetes.client.CoreV1Api, name: str) -> str:
    try:
        node = core.read_node(name)
    except kubernetes.client.ApiException:
        return "Missing"
    return next((c.status for c in node.status.conditions or [] if c.type == "Ready"),
                "Missing")


@pytest.fixture
def extra_node(cluster: devcluster_cluster.Cluster,
               kube: kubernetes.client.ApiClient) -> Iterator[Callable[[str], object]]:
    """Starts more nodes; stops them and deletes their Node objects afterwards."""
    core = kubernetes.client.CoreV1Api(kube)
    names: list[str] = []

    def start(name: str) -> devcluster_cluster.Component:
        component = cluster.start_node(name)
        names.append(name)
        wait(f"node {name} Ready", lambda: node_ready(core, name) == "True", 60)
        return component

    yield start
    for name in set(names):
        component = cluster.components.pop(f"node-{name}", None)
        if component is not None:
            component.stop()
        # A SIGKILLed agent takes its containers' main processes along (parent-death
        # signal), not their children: clear what is left in the node's cgroups.
        state_dir = cluster.state_dir / "nodes" / name
        cgroups.remove_stale_cgroups(cgroups.parent_name(name, state_dir), remove_parent=True)
        with contextlib.suppress(kubernetes.client.ApiException):
            core.delete_node(name)


def kill_agent(component: object) -> None:
    assert isinstance(component, devcluster_cluster.Component)
    os.kill(component.process.pid, signal.SIGKILL)
    component.process.wait()


def test_restarted_node_reports_lost_containers_as_terminated(
        pods: Pods, extra_node: Callable[[str], object]) -> None:
    agent = extra_node("node-restart")
    pods.create("survivor", [shell("main", "sleep 600")], nodeName="node-restart")
    pods.wait_for_phase("survivor", "Running", timeout=30)
    kill_agent(agent)
    extra_node("node-restart")
    pod = pods.wait_for_phase("survivor", "Failed", timeout=30)
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "ContainerStatusUnknown")


def test_lost_node_becomes_not_ready_and_its_pods_are_evicted(
        pods: Pods, extra_node: Callable[[str], object]) -> None:
    agent = extra_node("node-lost")
    pods.create("stranded", [shell("main", "sleep 600")], nodeName="node-lost",
                restartPolicy="Always")
    pods.wait_for_phase("stranded", "Running", timeout=30)
    kill_agent(agent)
    # The node-lifecycle controller notices the Lease is no longer renewed...
    wait("node NotReady", lambda: node_ready(pods.core, "node-lost") == "Unknown", 60)
    # ...taints the node, and the taint-eviction controller deletes the pod once
    # its (20 s in this test bed) toleration of the taint runs out.
    pod = pods.wait_for("stranded", lambda p: p is None or bool(
        p["metadata"].get("deletionTimestamp")), timeout=60, what="eviction")
    if pod is not None:
        conditions = {c["type"]: c for c in pod["status"].get("conditions", [])}
        assert conditions.get("DisruptionTarget", {}).get("status") == "True"

"""A run whose node is lost resumes from its checkpoint on a healthy node.

The node's agent is SIGKILLed (its Lease stops, as when a machine dies). On a real
cluster, and here, the node goes NotReady, the taint manager evicts the pod, and
the pod stays Terminating because no kubelet confirms the deletion: waiting for it
would strand the run until the node came back. The operator counts such a pod as
ended, with reason NodeLost, and resumes in a new pod elsewhere.
"""

from __future__ import annotations

import kubernetes
import pytest
from helpers import InstalledOperator, get_taskrun, wait_for, wait_for_phase
from nodes import extra_nodes, kill_agent
from test_taskrun_lifecycle import create, effects, event_reasons, run_manifest, task_manifest

from devcluster import cluster as devcluster_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def set_schedulable(core: kubernetes.client.CoreV1Api, names: list[str], schedulable: bool) -> None:
    for name in names:
        core.patch_node(name, {"spec": {"unschedulable": not schedulable}})


def test_a_run_on_a_lost_node_resumes_on_a_healthy_one(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
        operator: InstalledOperator) -> None:
    healthy = [node.metadata.name for node in core.list_node().items]
    with extra_nodes(cluster, core) as start_node:
        doomed = start_node("node-doomed")
        # The first attempt can only land on the node about to be lost.
        set_schedulable(core, healthy, False)
        try:
            create(custom, namespace, task_manifest("sleepy", "sleepy", retry={"maxAttempts": 1}),
                   run_manifest("stranded", "sleepy", {"seconds": 600}))
            wait_for(lambda: get_taskrun(custom, namespace, "stranded").get("status", {})
                     .get("currentStep") == "first", timeout=60, what="the first step recorded")
            assert core.read_namespaced_pod("stranded-1", namespace).spec.node_name == "node-doomed"
        finally:
            set_schedulable(core, healthy, True)
        kill_agent(doomed)

        # Node-monitor grace (16 s here) and the NoExecute toleration (20 s), then at once.
        run = wait_for_phase(custom, namespace, "stranded", {"Succeeded", "Failed"}, timeout=120)
        assert run["status"]["phase"] == "Succeeded", run["status"]
        assert run["status"]["infrastructureFailures"] == 1
        assert "NodeLost" in event_reasons(core, namespace, "stranded", "NodeLost")
        second = core.read_namespaced_pod("stranded-2", namespace)
        assert second.spec.node_name in healthy
        # The step that finished before the loss did not run again.
        assert effects(operator.database_url, run["metadata"]["uid"]) == {"first": 1, "second": 1}
        # The lost pod is left to Kubernetes (removed when its node returns or goes).
        lost = core.read_namespaced_pod("stranded-1", namespace)
        assert lost.metadata.deletion_timestamp is not None

"""Runs on a real kubelet: the project's images in containerd, real cgroups and
network namespaces.

The operator runs from its image, installed with the chart; attempt pods run the
examples image or a user's derived image (image/Dockerfile), as non-root with a
read-only root filesystem. What the process node can only imitate is checked here:
a SIGKILLed container, an OOM kill by the memory cgroup, the writable folders of a
hardened pod, a derived image's `pip install`, a suspended run holding no container,
and a pod reaching the operator's webhook through its Service.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from helpers import (
    InstalledOperator,
    attempt_pods,
    container_pids,
    create,
    create_examples_database_secret,
    effects,
    event_reasons,
    get_taskrun,
    kubectl,
    run_manifest,
    wait_for,
    wait_for_phase,
)

from devcluster import cluster as devcluster_cluster
from devcluster.realnode import images, runtime

pytestmark = [pytest.mark.e2e, pytest.mark.realnode, pytest.mark.usefixtures("real_operator")]

ROOT = Path(__file__).resolve().parents[3]
TASKS_IMAGE = images.TEST_TASKS.name


def task_manifest(name: str, entrypoint: str, modules: list[str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": TASKS_IMAGE, "entrypoint": entrypoint, "modules": modules, **spec}}







def node_folder(cluster: devcluster_cluster.Cluster) -> Path:
    return cluster.state_dir / "real-node"


def test_demo_taskrun_runs_in_the_examples_image_beside_the_operator_image(
        real_cluster: devcluster_cluster.Cluster, real_namespace: str,
        real_custom: kubernetes.client.CustomObjectsApi, real_core: kubernetes.client.CoreV1Api,
        real_operator: InstalledOperator) -> None:
    create_examples_database_secret(real_core, real_namespace, real_operator.database_url)
    kubectl(real_cluster, "apply", "-n", real_namespace, "-f",
            str(ROOT / "examples" / "process-document.yaml"))
    run = wait_for_phase(real_custom, real_namespace, "process-quarterly-report",
                         {"Succeeded", "Failed"}, timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"]["documentId"] == "quarterly-report"
    assert run["status"]["completedSteps"] == 4
    pod = real_core.read_namespaced_pod(run["status"]["podName"], real_namespace)
    assert pod.spec.node_name == "real-1"
    [status] = pod.status.container_statuses
    assert status.image == images.EXAMPLES.name
    assert status.image_id.startswith("sha256:")
    assert status.state.terminated.exit_code == 0
    operators = real_core.list_namespaced_pod(
        InstalledOperator.NAMESPACE, label_selector="app.kubernetes.io/name=durakube").items
    assert operators and all(p.status.container_statuses[0].image == images.OPERATOR.name
                             and p.status.container_statuses[0].ready for p in operators)


def test_sigkilled_container_resumes_from_its_checkpoint_in_a_new_pod(
        real_namespace: str, real_custom: kubernetes.client.CustomObjectsApi,
        real_core: kubernetes.client.CoreV1Api, real_operator: InstalledOperator) -> None:
    create(real_custom, real_namespace, task_manifest("sleepy", "sleepy", ["behaviours"]),
           run_manifest("killed", "sleepy", {"seconds": 600}))
    wait_for(lambda: get_taskrun(real_custom, real_namespace, "killed").get("status", {})
             .get("currentStep") == "first", timeout=120, what="the first step recorded")
    pids = container_pids("DURAKUBE_POD_NAME", "killed-1")
    assert pids, "the worker process of pod killed-1 is not on this machine"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    run = wait_for_phase(real_custom, real_namespace, "killed", {"Succeeded", "Failed"}, timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["attempt"] == 2
    assert run["status"]["infrastructureFailures"] == 1
    # The first step finished in the killed container and was replayed, not re-run.
    assert effects(real_operator.database_url, run["metadata"]["uid"]) == {"first": 1, "second": 1}
    killed = real_core.read_namespaced_pod("killed-1", real_namespace)
    assert killed.status.container_statuses[0].state.terminated.exit_code == 128 + signal.SIGKILL
    assert sorted(p.metadata.name for p in attempt_pods(real_core, real_namespace)) == [
        "killed-1", "killed-2"]


def test_memory_cgroup_oom_kill_is_retried_on_the_infrastructure_budget(
        real_namespace: str, real_custom: kubernetes.client.CustomObjectsApi,
        real_core: kubernetes.client.CoreV1Api) -> None:
    create(real_custom, real_namespace,
           task_manifest("hungry", "allocate", ["containing"], retry={"maxAttempts": 1},
                         podTemplate={"resources": {"limits": {"memory": "192Mi"}}}),
           run_manifest("oom", "hungry", {"mebibytes": 512}))
    run = wait_for_phase(real_custom, real_namespace, "oom", {"Succeeded", "Failed"}, timeout=180)
    # maxAttempts is 1, yet the run goes on: an OOM kill does not use the user's attempts.
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["attempt"] == 2
    assert run["status"]["infrastructureFailures"] == 1
    assert run["status"]["output"] == {"attempt": 2, "heldMebibytes": 0}
    first = real_core.read_namespaced_pod("oom-1", real_namespace).status.container_statuses[0]
    assert first.state.terminated.reason == "OOMKilled"
    assert "OOMKilled" in event_reasons(real_core, real_namespace, "oom", "OOMKilled")


def test_hardened_attempt_pod_writes_only_to_tmp_and_its_home(
        real_namespace: str, real_custom: kubernetes.client.CustomObjectsApi,
        real_core: kubernetes.client.CoreV1Api) -> None:
    create(real_custom, real_namespace, task_manifest("sandbox", "describe-sandbox", ["containing"]),
           run_manifest("sandbox", "sandbox"))
    run = wait_for_phase(real_custom, real_namespace, "sandbox", {"Succeeded", "Failed"}, timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"] == {
        "uid": 65532, "gid": 65532, "home": "/home/durakube", "rootWritable": False,
        "appWritable": False, "tmpWritable": True, "homeWritable": True}
    pod = real_core.read_namespaced_pod("sandbox-1", real_namespace)
    container = pod.spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert pod.spec.security_context.run_as_non_root is True


def test_derived_image_runs_a_task_that_imports_its_own_requirement(
        real_namespace: str, real_custom: kubernetes.client.CustomObjectsApi) -> None:
    create(real_custom, real_namespace, task_manifest("sizes", "describe-size", ["containing"]),
           run_manifest("size", "sizes", {"bytes": 3 * 1024 * 1024}))
    run = wait_for_phase(real_custom, real_namespace, "size", {"Succeeded", "Failed"}, timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"]["size"] == "3.0 MiB"
    # Installed by the derived image's `pip install`, into the worker image's environment.
    assert run["status"]["output"]["module"].startswith("/opt/durakube/venv/lib/python3.11/site-packages/")


def test_suspended_run_holds_no_container_until_it_resumes(
        real_cluster: devcluster_cluster.Cluster, real_namespace: str,
        real_custom: kubernetes.client.CustomObjectsApi, real_core: kubernetes.client.CoreV1Api,
        real_operator: InstalledOperator) -> None:
    create(real_custom, real_namespace,
           task_manifest("napper", "nap-and-resume", ["behaviours"]),
           run_manifest("nap", "napper", {"seconds": 30}))
    wait_for_phase(real_custom, real_namespace, "nap", {"Suspended"}, timeout=180)
    # While the run waits, nothing of it runs in containerd, not even its pod's sandbox.
    wait_for(lambda: not runtime.running_containers(node_folder(real_cluster), real_namespace),
             timeout=15, what="no running container of the namespace in containerd")
    assert get_taskrun(real_custom, real_namespace, "nap")["status"]["phase"] == "Suspended"
    assert not attempt_pods(real_core, real_namespace)
    run = wait_for_phase(real_custom, real_namespace, "nap", {"Succeeded", "Failed"}, timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert effects(real_operator.database_url, run["metadata"]["uid"]) == {"before": 1, "after": 1}


def test_a_pod_reaches_the_operator_webhook_through_its_service(
        real_namespace: str, real_custom: kubernetes.client.CustomObjectsApi,
        real_core: kubernetes.client.CoreV1Api) -> None:
    create(real_custom, real_namespace, task_manifest("waiter", "await-event", ["behaviours"]),
           run_manifest("waiter", "waiter", {"key": "parcel"}))
    wait_for_phase(real_custom, real_namespace, "waiter", {"Suspended"}, timeout=180)
    [service] = [s for s in real_core.list_namespaced_service(InstalledOperator.NAMESPACE).items
                 if any(port.name == "webhook" for port in s.spec.ports)]
    port = next(p.port for p in service.spec.ports if p.name == "webhook")
    secret = real_core.read_namespaced_secret(f"{InstalledOperator.RELEASE}-webhook",
                                              InstalledOperator.NAMESPACE)
    url = f"http://{service.spec.cluster_ip}:{port}/v1/namespaces/{real_namespace}/events/parcel"
    sender = """
import os, urllib.request
request = urllib.request.Request(os.environ["URL"], data=b'{"ok": true}', headers={
    "Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=20) as response:
    print(response.status, response.read().decode())
"""
    real_core.create_namespaced_secret(real_namespace, kubernetes.client.V1Secret(
        metadata={"name": "webhook-token"}, data={"secret": secret.data["secret"]}))
    real_core.create_namespaced_pod(real_namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sender"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "send", "image": TASKS_IMAGE, "command": ["python", "-c", sender],
            "env": [{"name": "URL", "value": url},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {
                        "name": "webhook-token", "key": "secret"}}}]}]}})

    def finished() -> str | None:
        phase = real_core.read_namespaced_pod("sender", real_namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, timeout=120, what="the sender pod finished")
    log = real_core.read_namespaced_pod_log("sender", real_namespace)
    assert phase == "Succeeded", log
    status, body = log.split(" ", 1)
    assert status == "202" and json.loads(body)["deliveredTo"] == 1, log
    run = wait_for_phase(real_custom, real_namespace, "waiter", {"Succeeded", "Failed"}, timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"] == {"timedOut": False, "data": {"ok": True}}

"""TaskRuns end to end: kubectl apply -> operator -> attempt pods -> Postgres -> status.

Every test runs on the real test bed (control plane, process node, Postgres) with
the operator as its real entry point in its own process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes
import pytest
from helpers import (
    InstalledOperator,
    attempt_pods,
    create,
    create_examples_database_secret,
    effects,
    event_reasons,
    get_taskrun,
    kubectl,
    load_yaml,
    run_manifest,
    wait_for,
    wait_for_phase,
)

from devcluster import cluster as devcluster_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

ROOT = Path(__file__).resolve().parents[3]
TEST_IMAGE = "ghcr.io/durakube/test-tasks:dev"


def task_manifest(name: str, entrypoint: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": TEST_IMAGE, "entrypoint": entrypoint, "modules": ["behaviours"],
                     **spec}}


def condition(run: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in run["status"]["conditions"] if c["type"] == "Succeeded")


def test_example_taskrun_applied_with_kubectl_succeeds(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
        operator: InstalledOperator) -> None:
    create_examples_database_secret(core, namespace, operator.database_url)
    kubectl(cluster, "apply", "-n", namespace, "-f", str(ROOT / "examples" / "process-document.yaml"))
    run = wait_for_phase(custom, namespace, "process-quarterly-report", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert condition(run)["status"] == "True"
    assert run["status"]["output"]["documentId"] == "quarterly-report"
    assert run["status"]["output"]["dimensions"] == 64
    assert run["status"]["completedSteps"] == 4
    assert run["status"]["currentStep"] == "store_embedding"
    assert run["status"]["attempt"] == 1
    table = kubectl(cluster, "get", "taskruns", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "TASK", "QUEUE", "ATTEMPT", "STEP", "REASON", "AGE"]
    assert "Succeeded" in table.splitlines()[1]
    # The short name and the category reach the same objects.
    assert "process-quarterly-report" in kubectl(cluster, "get", "tr", "-n", namespace).stdout
    assert "process-quarterly-report" in kubectl(cluster, "get", "durakube", "-n", namespace).stdout


def test_retryable_error_backs_off_then_succeeds(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    create(custom, namespace,
           task_manifest("flaky", "flaky", retry={"maxAttempts": 5, "minTimeout": "1s",
                                                   "maxTimeout": "2s", "randomize": False}),
           run_manifest("flaky-1", "flaky", {"succeed_on": 3}))
    backing_off = wait_for_phase(custom, namespace, "flaky-1", {"BackingOff", "Succeeded"})
    if backing_off["status"]["phase"] == "BackingOff":
        assert backing_off["status"]["nextAttemptAt"]
        assert backing_off["status"]["lastError"]["retryable"] is True
    run = wait_for_phase(custom, namespace, "flaky-1", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["attempt"] == 3
    assert run["status"]["output"] == {"attempt": 3}
    # The step before the failure ran once; later attempts replayed it.
    assert effects(operator.database_url, run["metadata"]["uid"]) == {"before": 1}


def test_retries_exhausted_fails_the_run(
        namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    create(custom, namespace,
           task_manifest("flaky", "flaky", retry={"maxAttempts": 2, "minTimeout": "1s",
                                                   "maxTimeout": "1s", "randomize": False}),
           run_manifest("flaky-2", "flaky", {"succeed_on": 10}))
    run = wait_for_phase(custom, namespace, "flaky-2", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Failed"
    assert condition(run)["reason"] == "RetriesExhausted"
    assert run["status"]["attempt"] == 2
    assert "transient failure on attempt 2" in condition(run)["message"]


def test_task_retry_policy_sets_the_back_off(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    # The decorator of "flaky" backs off 1 to 2 s; the Task's 30 s must govern instead.
    create(custom, namespace,
           task_manifest("flaky", "flaky", retry={"maxAttempts": 2, "minTimeout": "30s",
                                                   "maxTimeout": "30s", "randomize": False}),
           run_manifest("flaky-slow", "flaky", {"succeed_on": 2}))
    run = wait_for_phase(custom, namespace, "flaky-slow", {"BackingOff", "Succeeded", "Failed"})
    assert run["status"]["phase"] == "BackingOff", run["status"]
    ended = attempt_finished_at(operator.database_url, run["metadata"]["uid"], 1)
    due = datetime.fromisoformat(run["status"]["nextAttemptAt"])
    # 30 s from when the operator saw the outcome, truncated to the second.
    assert 28 <= (due - ended).total_seconds() < 45, (ended, due)


def attempt_finished_at(database_url: str, run_id: str, attempt: int) -> datetime:
    """When the worker recorded the attempt's outcome, from Postgres."""
    async def read() -> datetime:
        connection = await asyncpg.connect(database_url)
        try:
            finished: datetime = await connection.fetchval(
                "SELECT finished_at FROM durakube.attempts WHERE run_id = $1 AND attempt = $2",
                run_id, attempt)
        finally:
            await connection.close()
        return finished

    return asyncio.run(read())


def test_uncaught_exception_fails_at_once_without_retry(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api) -> None:
    create(custom, namespace, task_manifest("broken", "broken"),
           run_manifest("broken-1", "broken", {"item": "invoice-7"}))
    run = wait_for_phase(custom, namespace, "broken-1", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Failed"
    assert run["status"]["attempt"] == 1
    assert run["status"]["lastError"]["type"] == "ValueError"
    assert run["status"]["lastError"]["message"] == "cannot process invoice-7"
    assert run["status"]["lastError"]["retryable"] is False
    assert len(attempt_pods(core, namespace)) == 1
    reasons = event_reasons(core, namespace, "broken-1", "Running", "Failed")
    assert "Running" in reasons and "Failed" in reasons


def test_attempt_timeout_retries_from_checkpoint(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    create(custom, namespace,
           task_manifest("sleepy", "sleepy", timeout="3s",
                         retry={"maxAttempts": 2, "minTimeout": "1s", "randomize": False}),
           run_manifest("sleepy-1", "sleepy", {"seconds": 600}))
    run = wait_for_phase(custom, namespace, "sleepy-1", {"Succeeded", "Failed", "TimedOut"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["attempt"] == 2
    assert "TimedOut" in event_reasons(core, namespace, "sleepy-1", "TimedOut")
    assert effects(operator.database_url, run["metadata"]["uid"]) == {"first": 1, "second": 1}


def test_invalid_payload_fails_before_any_pod(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api) -> None:
    task, _ = load_yaml((ROOT / "examples" / "process-document.yaml").read_text())
    create(custom, namespace, task,
           run_manifest("bad-payload", "process-document", {"documentId": "NOT VALID!"}))
    run = wait_for_phase(custom, namespace, "bad-payload", {"Failed", "Succeeded"})
    assert condition(run)["reason"] == "InvalidPayload"
    assert "payload.documentId" in condition(run)["message"]
    assert attempt_pods(core, namespace) == []


def test_pod_security_of_the_namespace_applies_to_attempt_pods(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api) -> None:
    core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    privileged = {"securityContext": {"privileged": True, "allowPrivilegeEscalation": True}}
    create(custom, namespace, task_manifest("plain", "nap"),
           task_manifest("privileged", "nap", podTemplate=privileged),
           run_manifest("allowed", "plain", {"seconds": 0}),
           run_manifest("refused", "privileged", {"seconds": 0}))
    # The operator's own pods meet the restricted level: a plain task runs.
    assert wait_for_phase(custom, namespace, "allowed", {"Succeeded", "Failed"})["status"][
        "phase"] == "Succeeded"
    # A Task asking for more fails once, with the policy named, instead of retrying.
    run = wait_for_phase(custom, namespace, "refused", {"Failed"})
    assert condition(run)["reason"] == "PodRefused"
    assert 'violates PodSecurity "restricted' in condition(run)["message"]
    assert run["status"]["attempt"] == 1
    assert [pod.metadata.name for pod in attempt_pods(core, namespace)] == ["allowed-1"]


def test_missing_task_fails_with_a_clear_reason(
        namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    create(custom, namespace, run_manifest("orphan", "no-such-task"))
    run = wait_for_phase(custom, namespace, "orphan", {"Failed"})
    assert condition(run)["reason"] == "TaskNotFound"
    assert "no-such-task" in condition(run)["message"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"timeout": "5 minutes"}, "spec.timeout"),
    ({"priority": 5000}, "spec.priority"),
    ({"retry": {"maxAttempts": 0}}, "spec.retry.maxAttempts"),
    ({"taskRef": {"name": "Bad_Name"}}, "spec.taskRef.name"),
    ({"payloadRef": "sha256:" + "0" * 64}, "give spec.payload or spec.payloadRef, not both"),
    ({"idempotencyKey": "k"}, 'unknown field "spec.idempotencyKey"'),
], ids=["duration", "priority", "max-attempts", "task-name", "payload-and-ref", "no-such-field"])
def test_crd_schema_refuses_malformed_taskruns(
        cluster: devcluster_cluster.Cluster, namespace: str, spec: dict[str, Any],
        message: str) -> None:
    body = run_manifest("malformed", "whatever")
    body["spec"].update(spec)
    result = kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=json.dumps(body),
                     check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_taskrun_spec_is_fixed_once_created_except_cancel(
        cluster: devcluster_cluster.Cluster, namespace: str) -> None:
    kubectl(cluster, "apply", "-n", namespace, "-f", "-",
            input=json.dumps(run_manifest("fixed", "no-such-task", {"a": 1})))

    def patch(spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return kubectl(cluster, "patch", "taskrun", "fixed", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"spec": spec}), check=False)

    for change in ({"payload": {"a": 2}}, {"queue": "elsewhere"}, {"taskRef": {"name": "other"}},
                   {"priority": 7}):
        refused = patch(change)
        assert refused.returncode != 0, change
        assert "cannot change once created, except spec.cancel" in refused.stderr
    assert patch({"cancel": True}).returncode == 0
    uncancel = patch({"cancel": False})
    assert uncancel.returncode != 0 and "cannot be uncanceled" in uncancel.stderr


def test_cancel_stops_the_pod_and_ends_canceled(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api) -> None:
    create(custom, namespace, task_manifest("sleepy", "sleepy"),
           run_manifest("cancel-me", "sleepy", {"seconds": 600}))
    wait_for(lambda: get_taskrun(custom, namespace, "cancel-me").get("status", {})
             .get("currentStep") == "first", what="the first step recorded")
    custom.patch_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns",
                                          "cancel-me", {"spec": {"cancel": True}})
    run = wait_for_phase(custom, namespace, "cancel-me", {"Canceled"})
    assert condition(run)["status"] == "False"
    wait_for(lambda: all(pod.status.phase in ("Succeeded", "Failed")
                         for pod in attempt_pods(core, namespace))
             or not attempt_pods(core, namespace), what="the attempt pod stopped")


def test_deleting_a_taskrun_removes_its_pods_and_keeps_its_history(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    create(custom, namespace, task_manifest("flaky", "flaky"),
           run_manifest("short-lived", "flaky", {"succeed_on": 1}))
    run = wait_for_phase(custom, namespace, "short-lived", {"Succeeded"})
    custom.delete_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns",
                                           "short-lived")
    wait_for(lambda: not attempt_pods(core, namespace), what="the garbage collector")

    async def history() -> Any:
        connection = await asyncpg.connect(operator.database_url)
        try:
            return await connection.fetchrow(
                "SELECT output, (SELECT count(*) FROM durakube.steps s WHERE s.run_id = r.run_id)"
                " AS steps FROM durakube.runs r WHERE run_id = $1", run["metadata"]["uid"])
        finally:
            await connection.close()

    row = asyncio.run(history())
    assert json.loads(row["output"]) == {"attempt": 1}
    assert row["steps"] == 1


def test_deleted_pod_is_an_infrastructure_failure_resumed_from_checkpoint(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    create(custom, namespace, task_manifest("sleepy", "sleepy", retry={"maxAttempts": 1}),
           run_manifest("evicted", "sleepy", {"seconds": 600}))
    wait_for(lambda: get_taskrun(custom, namespace, "evicted").get("status", {})
             .get("currentStep") == "first", what="the first step recorded")
    core.delete_namespaced_pod("evicted-1", namespace)
    run = wait_for_phase(custom, namespace, "evicted", {"Succeeded", "Failed"})
    # maxAttempts is 1, yet the run goes on: a lost pod does not use the user's attempts.
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["infrastructureFailures"] == 1
    assert effects(operator.database_url, run["metadata"]["uid"]) == {"first": 1, "second": 1}


def test_an_oom_killed_attempt_resumes_with_the_tasks_larger_memory(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    # The process node enforces memory limits with the kernel's memory cgroups: 200 MiB in
    # a 160 MiB limit is a real OOM kill; the Task's next resources allow 600 MiB.
    create(custom, namespace,
           task_manifest("hungry", "hungry", retry={"maxAttempts": 1},
                         podTemplate={"resources": {"limits": {"memory": "160Mi"},
                                                    "requests": {"memory": "32Mi"}}},
                         outOfMemory={"resources": [{"limits": {"memory": "600Mi"}}]}),
           run_manifest("glutton", "hungry", {"mb": 200}))
    run = wait_for_phase(custom, namespace, "glutton", {"Succeeded", "Failed"})
    status = run["status"]
    # maxAttempts is 1, yet the run goes on: an OOM kill is on the infrastructure budget.
    assert status["phase"] == "Succeeded", status
    assert (status["attempt"], status["oomKills"], status["infrastructureFailures"]) == (2, 1, 1)
    assert status["output"] == {"filled": 200, "attempt": 2}
    larger = {"limits": {"memory": "600Mi"}, "requests": {"memory": "32Mi"}}
    assert status["resources"] == larger
    assert "OOMKilled" in event_reasons(core, namespace, "glutton", "OOMKilled")
    pods = {pod.metadata.name: pod for pod in attempt_pods(core, namespace)}
    first, second = pods["glutton-1"], pods["glutton-2"]
    assert first.status.container_statuses[0].state.terminated.reason == "OOMKilled"
    assert first.spec.containers[0].resources.limits == {"memory": "160Mi"}
    assert second.spec.containers[0].resources.limits == larger["limits"]
    # The step completed before the kill did not run again; the one it killed ran again.
    assert effects(operator.database_url, run["metadata"]["uid"]) == {"before": 1, "fill": 2}

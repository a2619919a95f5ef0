"""Long waits end to end: runs suspend without a pod and resume on timers, events, tokens.

The approval example is approved through each delivery path: the Python SDK's
store call, a TaskEvent applied with kubectl, and the operator's webhook. Its token
reaches the approver the way the example hands it out (a row of its own table),
never through the TaskRun, its Events or the operator's logs.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes
import pytest
from helpers import (
    InstalledOperator,
    create_examples_database_secret,
    get_taskrun,
    kubectl,
    load_yaml,
    wait_for,
    wait_for_phase,
)
from test_taskrun_lifecycle import attempt_pods, create, effects, run_manifest, task_manifest

from devcluster import cluster as devcluster_cluster
from durakube.client import Client
from durakube.store import pools, waitpoints

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

ROOT = Path(__file__).resolve().parents[3]
SUSPEND_ALL_WITHIN = 240


def start_approval(custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
                   namespace: str, operator: InstalledOperator) -> str:
    """Applies the approval example and returns the token once the run waits for it."""
    create_examples_database_secret(core, namespace, operator.database_url)
    for body in load_yaml((ROOT / "examples" / "approval-workflow.yaml").read_text()):
        create(custom, namespace, body)
    run = wait_for_phase(custom, namespace, "approve-q3-report", {"Suspended", "Failed"})
    assert run["status"]["phase"] == "Suspended", run["status"]
    waiting = run["status"]["waitingFor"]
    assert waiting["kind"] == "token" and "token" not in waiting
    # Waiting holds no pod at all, not even a finished one.
    wait_for(lambda: not attempt_pods(core, namespace), what="the suspended attempt's pod removed")
    return approval_token(operator.database_url)


def approval_token(database_url: str) -> str:
    """The token as the example hands it to its approver: in examples.reports."""
    async def read() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            return str(await connection.fetchval(
                "SELECT token FROM examples.reports WHERE report_id = 'q3-report'"))
        finally:
            await connection.close()

    return asyncio.run(read())


def assert_token_not_shown(cluster: devcluster_cluster.Cluster, namespace: str,
                           operator: InstalledOperator, token: str) -> None:
    """Whoever may read the TaskRun, its Events, its steps or the operator's logs cannot
    approve."""
    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace,
                database_url=operator.database_url) as client:
        recorded = [step.to_json() for step in client.steps("approve-q3-report")]
    shown = [kubectl(cluster, "get", "taskrun", "approve-q3-report", "-n", namespace,
                     "-o", "json").stdout,
             kubectl(cluster, "get", "events", "-n", namespace, "-o", "json").stdout,
             operator.log_tail(lines=2000), json.dumps(recorded)]
    assert "create-token" in [step["name"] for step in recorded]
    assert token.startswith("wpt_")
    for text in shown:
        assert token not in text


def finish_approval(custom: kubernetes.client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    run = wait_for_phase(custom, namespace, "approve-q3-report", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"] == {"status": "published", "reportId": "q3-report"}
    assert run["status"]["attempt"] == 2
    return run


def test_approval_completed_through_the_python_sdk(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
        operator: InstalledOperator) -> None:
    token = start_approval(custom, core, namespace, operator)
    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace,
                database_url=operator.database_url) as client:
        run_id = client.complete_token(token, {"approved": True})
        finish_approval(custom, namespace)
        assert run_id == get_taskrun(custom, namespace, "approve-q3-report")["metadata"]["uid"]
        with pytest.raises(waitpoints.TokenAlreadyCompleted):
            client.complete_token(token, {"approved": False})


def test_approval_completed_with_a_task_event(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
        operator: InstalledOperator) -> None:
    token = start_approval(custom, core, namespace, operator)
    manifest = (ROOT / "examples" / "approve.yaml").read_text().replace(
        "wpt_REPLACE_WITH_THE_TOKEN_0000", token)
    kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=manifest)
    finish_approval(custom, namespace)
    assert_token_not_shown(cluster, namespace, operator, token)
    event = custom.get_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskevents",
                                                "approve-q3-report")
    assert event["status"]["phase"] == "Delivered"


def test_approval_completed_through_the_webhook(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
        operator: InstalledOperator) -> None:
    # The token is its own credential: completing it needs no other.
    token = start_approval(custom, core, namespace, operator)

    def post(path: str, data: Any) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(operator.webhook_url + path, method="POST",
                                         data=json.dumps(data).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert post("/v1/tokens/wpt_notarealtoken0000000000/complete", {})[0] == 404
    status, body = post(f"/v1/tokens/{token}/complete", {"approved": True})
    assert status == 200, body
    finish_approval(custom, namespace)
    status, body = post(f"/v1/tokens/{token}/complete", {"approved": True})
    assert status == 409 and "completed already" in body["error"]
    assert token not in body["error"]
    assert_token_not_shown(cluster, namespace, operator, token)


def test_task_event_with_bad_spec_is_refused_by_the_schema(
        cluster: devcluster_cluster.Cluster, namespace: str) -> None:
    manifest = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskEvent",
                "metadata": {"name": "both"}, "spec": {"key": "k", "token": "wpt_" + "a" * 20}}
    result = kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest),
                     check=False)
    assert result.returncode != 0 and "exactly one of spec.key" in result.stderr


def test_three_second_sleep_resumes_in_a_new_pod_without_rerunning_steps(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    create(custom, namespace, task_manifest("napper", "nap-and-resume"),
           run_manifest("sleeper", "napper", {"seconds": 3}))
    suspended = wait_for_phase(custom, namespace, "sleeper", {"Suspended", "Succeeded"})
    assert suspended["status"]["phase"] == "Suspended"
    assert suspended["status"]["waitingFor"]["kind"] == "sleep"
    run = wait_for_phase(custom, namespace, "sleeper", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"] == {"attempt": 2}
    assert effects(operator.database_url, run["metadata"]["uid"]) == {"before": 1, "after": 1}
    assert [p.metadata.name for p in attempt_pods(core, namespace)] == ["sleeper-2"]


def test_wait_timeout_resumes_the_run_with_an_error_it_handles(
        namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    create(custom, namespace, task_manifest("waiter", "await-event"),
           run_manifest("times-out", "waiter", {"key": "never-sent", "timeout": "3s"}))
    run = wait_for_phase(custom, namespace, "times-out", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"]["timedOut"] is True
    assert "never-sent" in run["status"]["output"]["message"]


def test_event_sent_before_the_wait_is_buffered_not_lost(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    key = f"order-{namespace}"

    async def send() -> waitpoints.Delivery:
        pool = await pools.connect(operator.database_url)
        try:
            return await waitpoints.send_event(pool, key, {"paid": True}, namespace=namespace)
        finally:
            await pool.close()

    assert asyncio.run(send()).buffered
    create(custom, namespace, task_manifest("waiter", "await-event"),
           run_manifest("early-bird", "waiter", {"key": key, "timeout": "1h"}))
    run = wait_for_phase(custom, namespace, "early-bird", {"Succeeded", "Failed"})
    assert run["status"]["output"] == {"timedOut": False, "data": {"paid": True}}
    assert run["status"]["attempt"] == 1  # taken from the buffer: no suspension needed


def test_cancel_a_suspended_run(namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    create(custom, namespace, task_manifest("waiter", "await-event"),
           run_manifest("never", "waiter", {"key": f"nothing-{namespace}", "timeout": "7d"}))
    wait_for_phase(custom, namespace, "never", {"Suspended"})
    custom.patch_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns", "never",
                                          {"spec": {"cancel": True}})
    run = wait_for_phase(custom, namespace, "never", {"Canceled"})
    assert run["status"]["attempt"] == 1


async def bring_timers_forward(database_url: str, namespace: str) -> int:
    """Makes the pending timers of the namespace's runs due now; how many there were."""
    connection = await asyncpg.connect(database_url)
    try:
        status = await connection.execute("""
            UPDATE durakube.waitpoints w SET wake_at = now() - interval '1 second'
            FROM durakube.runs r
            WHERE r.run_id = w.run_id AND r.namespace = $1 AND w.completed_at IS NULL""",
            namespace)
    finally:
        await connection.close()
    return int(status.split()[-1])


# Runs enough to overflow their queue's limit when they all wake at once: the woken runs
# that find no slot wait in line and are admitted as slots come free.
RESUMING_RUNS = 100
RESUMING_LIMIT = 40


@pytest.mark.timeout(900)  # 240 s to suspend, 450 s to resume at most, and the checks
def test_operator_killed_with_100_runs_suspended_resumes_each_exactly_once(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    names = [f"timer-{i}" for i in range(RESUMING_RUNS)]
    # Far out: no timer falls due before the test brings them all forward at once.
    wake = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    create(custom, namespace, task_manifest("napper", "nap-and-resume"),
           {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskQueue",
            "metadata": {"name": "resumers"}, "spec": {"concurrencyLimit": RESUMING_LIMIT}},
           *[run_manifest(name, "napper", {"until": wake}, queue="resumers") for name in names])
    phases: dict[str, int] = {}

    def count_phases() -> list[dict[str, Any]]:
        runs = custom.list_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                    "taskruns")["items"]
        phases.clear()
        phases.update(Counter(str((run.get("status") or {}).get("phase")) for run in runs))
        return list(runs)

    def all_suspended() -> bool:
        count_phases()
        return phases.get("Suspended") == RESUMING_RUNS

    wait_for(all_suspended, timeout=SUSPEND_ALL_WITHIN, interval=1,
             what=f"{RESUMING_RUNS} runs suspended")
    operator.kill()
    wait_for(lambda: not [p for p in attempt_pods(core, namespace)], timeout=60,
             what="no pod while suspended")
    # The timers fall due while no operator runs: time passes, as far as they know, by
    # bringing their deadlines forward rather than by waiting for them.
    assert asyncio.run(bring_timers_forward(operator.database_url, namespace)) == RESUMING_RUNS
    operator.start()

    most_pods = most_queued = 0

    def all_succeeded() -> list[dict[str, Any]] | None:
        nonlocal most_pods, most_queued
        live = [p for p in attempt_pods(core, namespace) if p.status.phase in ("Pending", "Running")]
        queue = custom.get_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                    "taskqueues", "resumers")
        most_pods = max(most_pods, len(live))
        most_queued = max(most_queued, (queue.get("status") or {}).get("queued", 0))
        runs = count_phases()
        return runs if phases.get("Succeeded") == RESUMING_RUNS else None

    # A hundred workers on two cores, at most forty at once: about a minute; a slow round
    # is not a stuck one, and a failure says which it was.
    try:
        runs = wait_for(all_succeeded, timeout=450, interval=1,
                        what=f"{RESUMING_RUNS} runs resumed and succeeded")
    except pytest.fail.Exception:
        pytest.fail(f"{RESUMING_RUNS} runs not all resumed and succeeded; by phase: {phases}")
    # Woken all at once, the runs overflowed their queue: some waited in line, and no
    # more pods ran at once than its limit.
    print(f"resuming: at most {most_queued} runs in line and {most_pods} pods at once")
    assert most_queued > 0
    assert most_pods <= RESUMING_LIMIT
    for run in runs:
        assert run["status"]["attempt"] == 2, run["metadata"]["name"]
        assert effects(operator.database_url, run["metadata"]["uid"]) == {"before": 1, "after": 1}
    assert get_taskrun(custom, namespace, "timer-0")["status"]["resumes"] == 1

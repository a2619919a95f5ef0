"""The Python client end to end: trigger, wait, outputs, failures, idempotency, batches,
large payloads, history, cancel and replay, on the real test bed with the operator."""

from __future__ import annotations

import asyncio
import json
import random
import string
import time

import kubernetes
import pytest
import yaml
from clientbed import (
    EXAMPLES_IMAGE,
    aclient,
    client,
    echoing,
    install_queue,
    install_task,
    install_tasks,
    process_document,
)
from helpers import InstalledOperator, create_examples_database_secret, get_taskrun

from devcluster import cluster as devcluster_cluster
from devcluster import kubeconfigs
from durakube import errors, resources
from durakube.client import (
    AsyncClient,
    Client,
    DatabaseUnreachable,
    PermissionDenied,
    RunFailed,
    RunSummary,
    RunWaitTimedOut,
    TaskRunNotFound,
    UnknownTask,
)
from durakube.store import payloads

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
__all__ = ["aclient", "client"]  # fixtures, imported for pytest


def test_example_triggered_with_the_function_and_waited(
        client: Client, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, namespace: str, operator: InstalledOperator) -> None:
    # The example keeps its embeddings in a database of its own, named by a Secret.
    create_examples_database_secret(core, namespace, operator.database_url)
    install_tasks(custom, namespace, "process_document", image=EXAMPLES_IMAGE,
                  podTemplate={"env": [{"name": "EXAMPLES_DATABASE_URL", "valueFrom": {
                      "secretKeyRef": {"name": "examples-database", "key": "url"}}}]})
    seen: list[RunSummary] = []
    handle = client.trigger(process_document.process_document, {"documentId": "quarterly-report"},
                            tags=["demo"])
    assert handle.created and handle.task == "process-document"
    summary = client.wait(handle, timeout=90, on_progress=seen.append)
    assert summary.phase == "Succeeded", summary
    assert summary.completed_steps == 4
    assert seen[-1].phase == "Succeeded"
    steps = client.steps(handle)
    for step in steps:
        print(f"{step.seq} {step.name} {step.status} {step.duration_ms:.1f}ms {step.result_preview}")
    assert [step.name for step in steps] == [
        "fetch_document", "extract_text", "generate_embedding", "store_embedding"]
    assert all(step.status == "succeeded" and step.attempt == 1 for step in steps)
    output = client.output(handle)
    assert output["documentId"] == "quarterly-report" and output["dimensions"] == 64
    assert [run.name for run in client.list(tags=["demo"])] == [handle.name]


def test_trigger_and_wait_returns_the_typed_output(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_tasks(custom, namespace, "echoing")
    greeted = client.trigger_and_wait(echoing.greet, echoing.Greeting(name="ada", times=2),
                                      timeout=60)
    assert isinstance(greeted, echoing.Greeted)
    assert greeted == echoing.Greeted(message="hello ada hello ada", length=19)
    # By id, the output is plain JSON.
    assert client.trigger_and_wait("greet", {"name": "bo"}, timeout=60) == {
        "message": "hello bo", "length": 8}


def test_failing_run_raises_run_failed_with_the_task_error(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_task(custom, namespace, "broken", "broken", "behaviours")
    with pytest.raises(RunFailed) as caught:
        client.trigger_and_wait("broken", {"item": "invoice-7"}, timeout=60)
    failure = caught.value
    assert failure.phase == "Failed"
    assert failure.reason == "Failed"
    assert failure.error_type == "ValueError"
    assert failure.error_message == "cannot process invoice-7"
    assert "cannot process invoice-7" in str(failure)


def test_unknown_task_and_invalid_payload_are_refused_before_anything_is_created(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_tasks(custom, namespace, "echoing")
    with pytest.raises(UnknownTask, match=r"no Task 'no-such-task'.*'echo', 'greet'"):
        client.trigger("no-such-task", {})
    with pytest.raises(errors.InvalidPayload, match="name"):
        client.trigger(echoing.greet, {"times": 9})
    # By id, the Task's input schema (from the same model) refuses it too.
    with pytest.raises(errors.InvalidPayload, match="times"):
        client.trigger("greet", {"name": "x", "times": 9})
    assert custom.list_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                "taskruns")["items"] == []


async def test_twenty_concurrent_triggers_with_one_key_create_one_run(
        aclient: AsyncClient, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_tasks(custom, namespace, "echoing")
    handles = await asyncio.gather(*(
        aclient.trigger("echo", {"n": 1}, idempotency_key="order-1234") for _ in range(20)))
    assert len({h.name for h in handles}) == 1
    assert len({h.run_id for h in handles}) == 1
    assert sum(h.created for h in handles) == 1
    items = custom.list_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                 "taskruns")["items"]
    assert [item["metadata"]["name"] for item in items] == [handles[0].name]
    assert items[0]["metadata"]["annotations"]["durakube.io/idempotency-key"] == "order-1234"
    # Another key is another run.
    other = await aclient.trigger("echo", {"n": 2}, idempotency_key="order-1235")
    assert other.created and other.name != handles[0].name


async def test_batch_trigger_of_200_runs_creates_them_all(
        aclient: AsyncClient, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_task(custom, namespace, "nap", "nap", "behaviours")
    install_queue(custom, namespace, "bulk", 20)
    started = time.monotonic()
    handles = await aclient.batch_trigger(
        [("nap", {"seconds": 0, "tenant": f"t{i}"}) for i in range(200)], concurrency=16)
    print(f"batch_trigger of 200 runs: {time.monotonic() - started:.2f}s")
    assert len(handles) == 200 and len({h.name for h in handles}) == 200
    items = custom.list_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                 "taskruns")["items"]
    assert len(items) == 200
    # A sample runs to the end (the first ones created are admitted first).
    for handle in handles[:5]:
        assert (await aclient.wait(handle, timeout=120)).phase == "Succeeded"
    assert await aclient.output(handles[0]) == {"slept": 0, "tenant": "t0"}


def test_two_megabyte_payload_round_trips_by_reference(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_tasks(custom, namespace, "echoing")
    rng = random.Random(7)
    payload = {"rows": ["".join(rng.choices(string.printable, k=1000)) for _ in range(2000)],
                "unicode": "żółć ✓ 🚀", "nested": {"n": [1, 2.5, None, True]}}
    assert payloads.encoded_size(payload) > 2_000_000
    handle = client.trigger("echo", payload)
    run = get_taskrun(custom, namespace, handle.name)
    assert run["spec"]["payloadRef"] == payloads.reference_of(payload)
    assert "payload" not in run["spec"] or run["spec"]["payload"] == {}
    assert len(json.dumps(run)) < 4096
    summary = client.wait(handle, timeout=90)
    assert summary.phase == "Succeeded", summary
    assert client.output(handle) == payload
    assert len(json.dumps(get_taskrun(custom, namespace, handle.name))) < 8192


def test_wait_times_out_then_cancel_ends_the_run(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_task(custom, namespace, "nap", "nap", "behaviours")
    handle = client.trigger("nap", {"seconds": 120})
    with pytest.raises(RunWaitTimedOut) as caught:
        client.wait(handle, timeout=2)
    assert isinstance(caught.value, TimeoutError)
    # The wait gave up on a run that was still going, and said in which phase.
    still = client.get(handle)
    assert still.finished_at is None and still.phase not in resources.FINAL_PHASES
    assert caught.value.phase is None or caught.value.phase not in resources.FINAL_PHASES
    client.cancel(handle)
    summary = client.wait(handle, timeout=60)
    assert summary.phase == "Canceled"
    with pytest.raises(RunFailed, match="Canceled"):
        client.output(handle)


def test_history_outlives_the_taskrun_and_replay_runs_again(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_tasks(custom, namespace, "echoing")
    first = client.trigger("echo", {"word": "again"})
    assert client.wait(first, timeout=60).phase == "Succeeded"
    replayed = client.replay(first)
    assert replayed.name != first.name
    assert client.result(replayed, timeout=60) == {"word": "again"}
    custom.delete_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns",
                                           first.name)
    gone = client.get(first)
    assert gone.source == "history" and gone.phase == "Succeeded" and gone.run_id == first.run_id
    listed = {run.name: run for run in client.list()}
    assert listed[first.name].source == "history"
    assert listed[replayed.name].source == "api"
    assert [run.name for run in client.list(phase="Succeeded", limit=1)] == [replayed.name]
    # A replay of a run whose TaskRun is gone takes its payload from the history.
    assert client.result(client.replay(first), timeout=60) == {"word": "again"}
    with pytest.raises(TaskRunNotFound):
        client.get("never-existed")


def test_forbidden_user_gets_permission_denied_with_the_rbac_message(
        cluster: devcluster_cluster.Cluster, namespace: str, tmp_path: object) -> None:
    nobody = cluster.ca.issue("client-nobody", "nobody")
    kubeconfig = kubeconfigs.write(cluster.state_dir / "nobody.kubeconfig", cluster.server,
                                   cluster.ca.cert_path, nobody)
    with Client(kubeconfig=kubeconfig, namespace=namespace) as denied, \
            pytest.raises(PermissionDenied) as caught:
        denied.trigger("echo", {})
    assert isinstance(caught.value, PermissionError)
    assert 'User "nobody" cannot get resource "tasks"' in str(caught.value)


def test_unreachable_database_names_host_and_port_but_not_the_password(
        cluster: devcluster_cluster.Cluster, namespace: str) -> None:
    dsn = "postgresql://durakube:s3cret-pw@127.0.0.1:1/runs"
    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace, database_url=dsn) as broken, \
            pytest.raises(DatabaseUnreachable) as caught:
        broken.list()
    assert "127.0.0.1:1/runs" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert "s3cret-pw" not in yaml.safe_dump(caught.value.to_json())


def test_a_burst_of_debounced_triggers_runs_once_with_the_last_payload(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_tasks(custom, namespace, "echoing")
    burst = []
    for index in range(4):
        burst.append(client.trigger("echo", {"n": index}, debounce=("inbox-7", "3s")))
        time.sleep(0.3)
    apart = client.trigger("echo", {"n": 99}, debounce=("inbox-8", "3s"))
    ended = {handle.name: client.wait(handle, timeout=90) for handle in [*burst, apart]}
    *superseded, last = [ended[handle.name] for handle in burst]
    assert (last.phase, last.output) == ("Succeeded", {"n": 3})
    for summary in superseded:
        assert (summary.phase, summary.reason, summary.attempt) == ("Canceled", "Debounced", 0)
        assert f"run {last.name} came with the same debounce key 'inbox-7'" in (summary.message or "")
    # Another key is another line: it runs whatever the burst did.
    assert (ended[apart.name].phase, ended[apart.name].output) == ("Succeeded", {"n": 99})

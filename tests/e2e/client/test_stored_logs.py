"""Attempt logs outlive their pods, end to end: real worker pods write, Postgres keeps,
and `Client.logs` and `durakube logs` read them back once the pods are gone, whether
the run succeeded, suspended (its pod deleted by the operator) or crashed (SIGKILL).
The bound holds, and JSON records carry the run, the attempt and the step."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import kubernetes
import pytest
from clientbed import client, install_tasks
from helpers import InstalledOperator, wait_for

from devcluster import cluster as devcluster_cluster
from durakube.client import AttemptLog, Client
from durakube.store import logs, pools, schema

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
__all__ = ["client"]  # a fixture, imported for pytest

DURAKUBE = str(Path(sys.executable).parent / "durakube")


def delete_attempt_pods(core: kubernetes.client.CoreV1Api, namespace: str, run_id: str) -> None:
    """Deletes the run's pods and waits until they are gone."""
    selector = f"durakube.io/run-uid={run_id}"
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        core.delete_namespaced_pod(pod.metadata.name, namespace)
    wait_for(lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
             timeout=180, what="the run's pods to be gone")


def stored_logs(operator: InstalledOperator, run_id: str) -> dict[int, logs.StoredLog]:
    """The run's stored logs as Postgres has them (read with the schema owner's login)."""
    async def read() -> dict[int, logs.StoredLog]:
        pool = await pools.connect(operator.database_url, max_size=1)
        try:
            return {log.attempt: log for log in await logs.read_logs(pool, run_id)}
        finally:
            await pool.close()

    return asyncio.run(read())


def by_attempt(logs: list[AttemptLog]) -> dict[int, AttemptLog]:
    assert [log.attempt for log in logs] == sorted(log.attempt for log in logs)
    return {log.attempt: log for log in logs}


def test_the_logs_of_a_succeeded_run_outlive_its_pod(
        client: Client, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, namespace: str, cluster: devcluster_cluster.Cluster,
        operator: InstalledOperator) -> None:
    install_tasks(custom, namespace, "speaking")
    handle = client.trigger("speak", {})
    assert client.wait(handle, timeout=300).phase == "Succeeded"
    delete_attempt_pods(core, namespace, handle.run_id)

    (log,) = client.logs(handle)
    assert (log.attempt, log.pod, log.source) == (1, f"{handle.name}-1", "stored")
    # The operator never reads the log of a pod whose attempt recorded its outcome.
    assert stored_logs(operator, handle.run_id)[1].pod_tail == b""
    assert (f"[run={handle.run_id} attempt=1 step=greet]: hello from attempt 1") in log.text
    for line in ("printed by the task", "written to stderr by the task"):
        assert line in log.text, log.text

    # The CLI reads the same, with a table-reading login and the user's kubeconfig.
    shown = subprocess.run(
        [DURAKUBE, "-n", namespace, "logs", handle.name],
        env={**cluster.env(), "DURAKUBE_DATABASE_URL": operator.database_url},
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"==> attempt 1 (pod {handle.name}-1) (stored; the pod is gone) <==" in shown
    assert "hello from attempt 1" in shown and "printed by the task" in shown


def test_a_suspended_attempt_keeps_its_log_after_the_operator_removes_its_pod(
        client: Client, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    install_tasks(custom, namespace, "speaking")
    handle = client.trigger("speak-then-sleep", {"seconds": 4})
    summary = client.wait(handle, timeout=300)
    assert summary.phase == "Succeeded" and summary.attempt == 2, summary
    logs = by_attempt(client.logs(handle))
    # The first attempt's pod was deleted when the run suspended: its log is the stored one.
    assert logs[1].source == "stored" and logs[1].pod == f"{handle.name}-1"
    assert (f"[run={handle.run_id} attempt=1 step=before]: before the sleep, attempt 1"
            in logs[1].text), logs[1].text
    assert "after the sleep" not in logs[1].text
    assert "attempt=2 step=after]: after the sleep, attempt 2" in logs[2].text
    delete_attempt_pods(core, namespace, handle.run_id)
    logs = by_attempt(client.logs(handle))
    assert [log.source for log in logs.values()] == ["stored", "stored"]
    assert "after the sleep, attempt 2" in logs[2].text


def test_a_crashed_attempt_keeps_what_it_wrote_and_the_end_of_its_pods_log(
        client: Client, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, namespace: str, operator: InstalledOperator) -> None:
    install_tasks(custom, namespace, "speaking")
    handle = client.trigger("speak-then-crash", {"pause": 2.5})
    summary = client.wait(handle, timeout=300)
    assert summary.phase == "Succeeded" and summary.attempt == 2, summary
    delete_attempt_pods(core, namespace, handle.run_id)
    logs = by_attempt(client.logs(handle))
    assert set(logs) == {1, 2} and {log.source for log in logs.values()} == {"stored"}
    # SIGKILL left no outcome and no last flush: what was written more than a second
    # before it is kept all the same, and the end of the pod's log, which the operator
    # read when the pod ended so, has the last words the worker had no time to store.
    assert "step=first]: before the crash, attempt 1" in logs[1].text, logs[1].text
    assert "step=None]: the last words of attempt 1" in logs[1].text, logs[1].text
    assert "after the crash" not in logs[1].text
    stored = stored_logs(operator, handle.run_id)
    assert b"the last words of attempt 1" in stored[1].pod_tail
    assert stored[2].pod_tail == b""  # never read for an attempt that recorded its outcome
    assert "step=second]: after the crash, attempt 2" in logs[2].text
    # The replayed step did not run again, so it did not log again.
    assert "before the crash" not in logs[2].text


def test_a_stored_log_keeps_its_first_and_last_bytes_within_the_bound(
        client: Client, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    install_tasks(custom, namespace, "speaking")
    written = 3 * 1024 * 1024
    handle = client.trigger("flood", {"bytes": written})
    assert client.wait(handle, timeout=300).phase == "Succeeded"
    delete_attempt_pods(core, namespace, handle.run_id)
    (log,) = client.logs(handle)
    assert log.source == "stored"
    kept = log.text.encode()
    marker = kept.index(b"bytes of this attempt's log were dropped here")
    # The head and the tail, and a line between them: nothing else.
    assert len(kept) <= schema.LOG_HEAD_BYTES + schema.LOG_TAIL_BYTES + 200
    # Dropped in Postgres past the bound (and perhaps before, in the worker's buffer, when
    # written faster than shipped: a line says so there too).
    assert log.dropped_bytes > 0
    assert kept.startswith(b"flood line 00000000\n") or b"\nflood line 00000000\n" in kept[:4096]
    assert kept.rstrip().endswith(b"the flood is over") or b"the flood is over\n" in kept[-4096:]
    assert kept.index(b"flood line 00000000") < marker < kept.index(b"the flood is over")


def test_json_records_carry_the_run_attempt_and_step(
        client: Client, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    install_tasks(custom, namespace, "speaking", podTemplate={
        "env": [{"name": "DURAKUBE_LOG_FORMAT", "value": "json"}]})
    handle = client.trigger("speak", {})
    assert client.wait(handle, timeout=300).phase == "Succeeded"
    delete_attempt_pods(core, namespace, handle.run_id)
    (log,) = client.logs(handle)
    records = [json.loads(line) for line in log.text.splitlines() if line.startswith("{")]
    greeting = next(record for record in records if record["message"] == "hello from attempt 1")
    assert (greeting["run_id"], greeting["attempt"], greeting["step"]) == (handle.run_id, 1, "greet")
    assert greeting["logger"] == "durakube.task.speak" and greeting["level"] == "INFO"
    # The worker's own records are JSON too, and carry the run.
    assert any(record["logger"] == "durakube.worker" and record.get("run_id") == handle.run_id
               for record in records)

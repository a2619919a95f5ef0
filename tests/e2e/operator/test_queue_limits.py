"""Queues end to end: exact concurrency limits, per-key fairness, priority, pause.

An independent watcher (a pod watch of the test's own, not the operator's
counters) records how many worker pods of a queue are active at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from typing import Any

import asyncpg
import kubernetes
import pytest
from helpers import InstalledOperator, get_taskrun, wait_for, wait_for_phase
from test_taskrun_lifecycle import attempt_pods, create, run_manifest, task_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def queue_manifest(name: str, limit: int, per_key: int | None = None,
                   paused: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"concurrencyLimit": limit, "paused": paused}
    if per_key is not None:
        spec["concurrencyLimitPerKey"] = per_key
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskQueue", "metadata": {"name": name},
            "spec": spec}


def create_queue(custom: kubernetes.client.CustomObjectsApi, namespace: str,
                 body: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskqueues", body)


class PodWatcher:
    """Watches the attempt pods of a namespace and keeps the most seen active at once."""

    def __init__(self, kube: kubernetes.client.ApiClient, namespace: str) -> None:
        self.core = kubernetes.client.CoreV1Api(kube)
        self.namespace = namespace
        self.active: set[str] = set()
        self.most_active = 0
        self.started: list[str] = []
        self.uids: dict[str, set[str]] = {}  # pod name -> every uid seen under that name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(self.core.list_namespaced_pod, self.namespace,
                                          label_selector="app.kubernetes.io/managed-by=durakube",
                                          timeout_seconds=5):
                    pod = event["object"]
                    name = pod.metadata.name
                    self.uids.setdefault(name, set()).add(pod.metadata.uid)
                    if name not in self.started and event["type"] != "DELETED":
                        self.started.append(name)
                    finished = pod.status.phase in ("Succeeded", "Failed")
                    if event["type"] == "DELETED" or finished:
                        self.active.discard(name)
                    else:
                        self.active.add(name)
                    self.most_active = max(self.most_active, len(self.active))
                    if self._stop.is_set():
                        break
            finally:
                watch.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_all_succeeded(custom: kubernetes.client.CustomObjectsApi, namespace: str,
                       names: list[str], timeout: float) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        runs = custom.list_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                    "taskruns")["items"]
        phases = {r["metadata"]["name"]: (r.get("status") or {}).get("phase") for r in runs}
        failed = [n for n in names if phases.get(n) in ("Failed", "Canceled", "TimedOut", "Expired")]
        assert not failed, f"runs ended badly: {failed}"
        return runs if all(phases.get(n) == "Succeeded" for n in names) else None

    return wait_for(check, timeout, interval=0.5, what=f"{len(names)} runs to succeed")


def test_fifty_runs_never_exceed_a_limit_of_five(
        kube: kubernetes.client.ApiClient, namespace: str,
        custom: kubernetes.client.CustomObjectsApi) -> None:
    create_queue(custom, namespace, queue_manifest("five", 5))
    watcher = PodWatcher(kube, namespace)
    try:
        names = [f"nap-{i}" for i in range(50)]
        create(custom, namespace, task_manifest("nap", "nap", queue="five"),
               *[run_manifest(name, "nap", {"seconds": 1}) for name in names])
        wait_all_succeeded(custom, namespace, names, timeout=300)
    finally:
        watcher.stop()
    assert watcher.most_active <= 5
    assert watcher.most_active >= 2  # the limit was used, not serialised by accident
    assert len(watcher.started) == 50


def test_a_run_backing_off_holds_no_slot(
        namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    create_queue(custom, namespace, queue_manifest("one", 1))
    create(custom, namespace,
           task_manifest("flaky", "flaky", queue="one", retry={"maxAttempts": 3}),
           task_manifest("nap", "nap", queue="one"),
           run_manifest("backs-off", "flaky", {"succeed_on": 2, "retry_in": 3600}))
    wait_for_phase(custom, namespace, "backs-off", {"BackingOff"})
    create(custom, namespace, run_manifest("next", "nap", {"seconds": 0}))
    run = wait_for_phase(custom, namespace, "next", {"Succeeded"}, timeout=60)
    assert run["status"]["attempt"] == 1
    assert get_taskrun(custom, namespace, "backs-off")["status"]["phase"] == "BackingOff"


def test_small_tenant_does_not_wait_for_a_big_one(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    # No per-key limit, so only round-robin across keys can put "small" ahead: the queue
    # stays paused until all 22 runs wait in line, the big tenant's 20 first, and FIFO
    # by creation time would then admit every big run before either small one.
    create_queue(custom, namespace, queue_manifest("tenants", 2, paused=True))
    big = [f"big-{i}" for i in range(20)]
    small = ["small-0", "small-1"]
    create(custom, namespace, task_manifest("nap", "nap", queue="tenants"),
           *[run_manifest(name, "nap", {"seconds": 1, "tenant": "big"}, concurrencyKey="big")
             for name in big])
    # Creation times count in whole seconds: the small runs come a second later.
    time.sleep(1.0)
    create(custom, namespace,
           *[run_manifest(name, "nap", {"seconds": 1, "tenant": "small"},
                          concurrencyKey="small") for name in small])
    created = {name: wait_for_phase(custom, namespace, name, {"Queued"})["metadata"]
               ["creationTimestamp"] for name in [*big, *small]}
    assert min(created[name] for name in small) > max(created[name] for name in big), created
    custom.patch_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskqueues",
                                          "tenants", {"spec": {"paused": False}})
    wait_all_succeeded(custom, namespace, [*big, *small], timeout=180)
    order = attempt_start_order(operator.database_url, namespace)
    assert sorted(order) == sorted([*big, *small])
    # Keys take turns: admission goes big, small, big, small, ... so both small runs
    # start while most of the big backlog still waits. (Two runs admitted in one pass
    # may start in either order, hence five places rather than four.)
    assert max(order.index(name) for name in small) < 5, order


def attempt_start_order(database_url: str, namespace: str) -> list[str]:
    """The namespace's runs in the order their first attempts started, from Postgres."""
    async def read() -> list[str]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch("""
                SELECT r.name FROM durakube.attempts a JOIN durakube.runs r USING (run_id)
                WHERE r.namespace = $1 AND a.attempt = 1 ORDER BY a.started_at""", namespace)
        finally:
            await connection.close()
        return [row["name"] for row in rows]

    return asyncio.run(read())


def test_high_priority_run_submitted_last_is_admitted_first(
        namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    create_queue(custom, namespace, queue_manifest("one", 1))
    create(custom, namespace, task_manifest("nap", "nap", queue="one"),
           run_manifest("occupant", "nap", {"seconds": 600}))
    wait_for_phase(custom, namespace, "occupant", {"Running"})
    create(custom, namespace, *[run_manifest(f"normal-{i}", "nap", {"seconds": 2}) for i in range(3)])
    create(custom, namespace, run_manifest("urgent", "nap", {"seconds": 2}, priority=100))
    names = ["urgent", *[f"normal-{i}" for i in range(3)]]
    wait_for(lambda: all(phase_of(custom, namespace, n) == "Queued" for n in names),
             what="all four runs queued behind the occupant")
    # Free the slot: the next run admitted must be the urgent one, though submitted last.
    custom.patch_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns",
                                          "occupant", {"spec": {"cancel": True}})
    first = wait_for(lambda: next((n for n in names if phase_of(custom, namespace, n)
                                   not in ("Queued", "Pending", None)), None),
                     what="the next run admitted")
    assert first == "urgent"
    for name in names:
        wait_for_phase(custom, namespace, name, {"Succeeded"}, timeout=90)


def phase_of(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str) -> str | None:
    return (get_taskrun(custom, namespace, name).get("status") or {}).get("phase")


def test_paused_queue_admits_nothing_until_unpaused(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api) -> None:
    create_queue(custom, namespace, queue_manifest("held", 3, paused=True))
    create(custom, namespace, task_manifest("nap", "nap", queue="held"),
           *[run_manifest(f"held-{i}", "nap", {"seconds": 0}) for i in range(3)])
    for i in range(3):
        run = wait_for_phase(custom, namespace, f"held-{i}", {"Queued"})
        assert run["status"]["queuePosition"] >= 1
    started = datetime.now()
    while (datetime.now() - started).total_seconds() < 3:  # nothing happens while paused
        assert attempt_pods(core, namespace) == []
    custom.patch_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskqueues",
                                          "held", {"spec": {"paused": False}})
    for i in range(3):
        wait_for_phase(custom, namespace, f"held-{i}", {"Succeeded"}, timeout=60)
    queue = custom.get_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                "taskqueues", "held")
    wait_for(lambda: custom.get_namespaced_custom_object(
        "durakube.io", "v1alpha1", namespace, "taskqueues", "held").get("status", {})
        .get("running") == 0, what="queue status to show no running runs")
    assert queue["spec"]["concurrencyLimit"] == 3


def test_naming_a_queue_no_taskqueue_defines_mints_no_slots(
        kube: kubernetes.client.ApiClient, namespace: str, core: kubernetes.client.CoreV1Api,
        custom: kubernetes.client.CustomObjectsApi) -> None:
    # The namespace's default queue takes one run at a time; every other name is made up.
    create_queue(custom, namespace, queue_manifest("default", 1))
    watcher = PodWatcher(kube, namespace)
    names = [f"sneaky-{i}" for i in range(4)]
    try:
        create(custom, namespace, task_manifest("nap", "nap"),
               *[run_manifest(name, "nap", {"seconds": 1}, queue=f"made-up-{i}")
                 for i, name in enumerate(names)])
        wait_all_succeeded(custom, namespace, names, timeout=180)
    finally:
        watcher.stop()
    assert watcher.most_active == 1
    warned = {e.involved_object.name for e in core.list_namespaced_event(namespace).items
              if e.reason == "QueueNotDefined" and "default queue" in e.message}
    assert warned == set(names)


def test_a_rate_limit_admits_its_starts_per_period_and_no_more(
        namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    rated = queue_manifest("rated", 10)
    rated["spec"]["rateLimit"] = {"starts": 3, "period": "1h"}
    create_queue(custom, namespace, rated)
    names = [f"rated-{i}" for i in range(5)]
    create(custom, namespace, task_manifest("nap", "nap", queue="rated"),
           *[run_manifest(name, "nap", {"seconds": 0}) for name in names])

    def phases() -> list[str]:
        return [get_taskrun(custom, namespace, name).get("status", {}).get("phase", "")
                for name in names]

    wait_for(lambda: phases().count("Succeeded") == 3, timeout=60, what="three runs done")
    # Slots are free (a limit of 10, nothing running), yet the hour admits no fourth run:
    # the admission loop passes every 2 s meanwhile.
    started = time.monotonic()
    while time.monotonic() - started < 5:
        assert sorted(phases()) == ["Queued", "Queued", "Succeeded", "Succeeded", "Succeeded"]
        time.sleep(0.5)
    custom.patch_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskqueues",
                                          "rated", {"spec": {"rateLimit": None}})
    wait_for(lambda: phases().count("Succeeded") == 5, timeout=60, what="the other two admitted")

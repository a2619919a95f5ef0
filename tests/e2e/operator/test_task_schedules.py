"""TaskSchedules end to end: runs created on time, once per time, by the leader alone.

The operator is the chart-installed one (two replicas, a Lease). A watch of the
test's own sees every TaskRun the schedules create, with every uid ever seen under
each name, so a time fired twice (a run deleted and created again, or two names for
one time) would show; SIGKILLing the leader in the middle shows that the standby
catches up the times missed during the failover, each once.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime
from typing import Any

import kubernetes
import pytest
from helpers import InstalledOperator, create, kubectl, wait_for
from test_taskrun_lifecycle import task_manifest

from devcluster import cluster as devcluster_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

GROUP, VERSION = "durakube.io", "v1alpha1"
FINAL = {"Succeeded", "Failed", "Canceled", "TimedOut", "Expired"}
SCHEDULED_TIME = "durakube.io/scheduled-time"


def schedule_manifest(name: str, task: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskSchedule", "metadata": {"name": name},
            "spec": {"taskRef": {"name": task}, **spec}}


class RunWatcher:
    """Every TaskRun of a namespace as a watch sees it: uids per name, the scheduled time of
    each, and the most that were active (not finished) at once."""

    def __init__(self, kube: kubernetes.client.ApiClient, namespace: str) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(kube)
        self.namespace = namespace
        self.uids: dict[str, set[str]] = {}
        self.times: dict[str, str] = {}
        self.phases: dict[str, str | None] = {}
        self.active: set[str] = set()
        self.deleted: set[str] = set()
        self.most_active = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                                          self.namespace, "taskruns", timeout_seconds=5):
                    run = event["object"]
                    meta = run["metadata"]
                    name = meta["name"]
                    self.uids.setdefault(name, set()).add(meta["uid"])
                    self.times[name] = (meta.get("annotations") or {}).get(SCHEDULED_TIME, "")
                    phase = (run.get("status") or {}).get("phase")
                    self.phases[name] = phase
                    if event["type"] == "DELETED":
                        self.deleted.add(name)
                    if event["type"] == "DELETED" or phase in FINAL:
                        self.active.discard(name)
                    else:
                        self.active.add(name)
                    self.most_active = max(self.most_active, len(self.active))
                    if self._stop.is_set():
                        break
            finally:
                watch.stop()

    def succeeded(self) -> list[str]:
        return sorted(name for name, phase in self.phases.items() if phase == "Succeeded")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def get_schedule(custom: kubernetes.client.CustomObjectsApi, namespace: str,
                 name: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "taskschedules", name))


def create_schedule(custom: kubernetes.client.CustomObjectsApi, namespace: str,
                    body: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "taskschedules", body)


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_every_time_fires_once_across_a_leader_kill(
        kube: kubernetes.client.ApiClient, namespace: str, cluster: devcluster_cluster.Cluster,
        custom: kubernetes.client.CustomObjectsApi, operator: InstalledOperator) -> None:
    create(custom, namespace, task_manifest("nap", "nap"))
    watcher = RunWatcher(kube, namespace)
    try:
        create_schedule(custom, namespace, schedule_manifest(
            "every-3s", "nap", interval="3s", overlapPolicy="Allow", catchupWindow="5m",
            successfulRunsHistoryLimit=100, payload={"seconds": 0, "tenant": "$(scheduledTime)"}))
        wait_for(lambda: len(watcher.succeeded()) >= 2, timeout=60, what="two scheduled runs succeeded")
        operator.kill()
        operator.start()
        killed_at = operator.failovers[-1]
        before = len(watcher.uids)
        # The times of the failover are caught up, then the schedule goes on.
        wait_for(lambda: len(watcher.uids) >= before + max(3, int(killed_at / 3) + 2), timeout=90,
                 what="runs scheduled after the failover")
        schedule = get_schedule(custom, namespace, "every-3s")
        shown = kubectl(cluster, "get", "taskschedules", "-n", namespace).stdout
        # The next time may have moved on while kubectl ran: either one is shown.
        next_times = {schedule["status"]["nextScheduleTime"],
                      get_schedule(custom, namespace, "every-3s")["status"]["nextScheduleTime"]}
    finally:
        watcher.stop()
    # One uid per name: no time's run was ever created twice.
    assert all(len(uids) == 1 for uids in watcher.uids.values()), watcher.uids
    # One name per time, and no time left out between the first and the last (catch-up).
    times = sorted(stamp(text) for text in watcher.times.values())
    assert len(times) == len(set(times)) == len(watcher.uids)
    assert all(later - earlier == 3 for earlier, later in itertools.pairwise(times)), times
    status = schedule["status"]
    assert status["lastRunName"] in watcher.uids
    assert stamp(status["nextScheduleTime"]) > stamp(status["lastScheduleTime"])
    assert status["missed"] == 0 and status["skipped"] == 0
    assert {"type": "Ready", "status": "True", "reason": "Scheduled"}.items() <= \
        status["conditions"][0].items()
    # The payload template: each run got its own scheduled time.
    run = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "taskruns",
                                              status["lastRunName"])
    assert run["spec"]["payload"] == {"seconds": 0, "tenant": status["lastScheduleTime"]}
    assert run["metadata"]["ownerReferences"][0]["kind"] == "TaskSchedule"
    header = shown.splitlines()[0].split()
    assert header[:3] == ["NAME", "SCHEDULE", "INTERVAL"] and "NEXT" in header and "LAST" in header
    assert any(text in shown for text in next_times), (next_times, shown)


def test_overlap_skip_pause_and_history_limit(
        kube: kubernetes.client.ApiClient, namespace: str,
        custom: kubernetes.client.CustomObjectsApi) -> None:
    create(custom, namespace, task_manifest("nap", "nap"))
    watcher = RunWatcher(kube, namespace)
    try:
        # Each run naps 3 s; a time comes every second: Skip lets one run at a time.
        create_schedule(custom, namespace, schedule_manifest(
            "busy", "nap", interval="1s", payload={"seconds": 3}, successfulRunsHistoryLimit=1))
        wait_for(lambda: len(watcher.succeeded()) >= 2, timeout=60, what="two runs succeeded")
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "taskschedules", "busy",
                                              {"spec": {"paused": True}})

        def paused() -> dict[str, Any] | None:
            status = get_schedule(custom, namespace, "busy").get("status") or {}
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            return status if ready.get("reason") == "Paused" else None

        status = wait_for(paused, timeout=30, what="the schedule paused")
        assert "nextScheduleTime" not in status and status["skipped"] >= 2
        created = set(watcher.uids)
        # Paused: the last run ends and no other starts.
        wait_for(lambda: not watcher.active, timeout=30, what="the last run ended")
        assert set(watcher.uids) == created
        unpaused_at = time.time()
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "taskschedules", "busy",
                                              {"spec": {"paused": False}})
        wait_for(lambda: set(watcher.uids) - created, timeout=30, what="a run after the pause")
        # The history limit: of the succeeded runs, only the newest is kept.
        wait_for(lambda: len(watcher.succeeded()) >= 3
                 and len(set(watcher.succeeded()) - watcher.deleted) == 1,
                 timeout=30, what="the older succeeded runs deleted")
        resumed = get_schedule(custom, namespace, "busy")["status"]
    finally:
        watcher.stop()
    assert watcher.most_active == 1
    assert all(len(uids) == 1 for uids in watcher.uids.values())
    # No time of the pause was caught up afterwards: the first run after it is scheduled
    # no earlier than the unpause (its time is a whole second).
    after_pause = [stamp(watcher.times[name]) for name in set(watcher.uids) - created]
    assert min(after_pause) >= int(unpaused_at)
    assert resumed["runs"] >= len(created) + 1
    assert resumed["skipped"] >= status["skipped"]


def test_bad_schedules_are_refused_or_reported(
        namespace: str, cluster: devcluster_cluster.Cluster,
        custom: kubernetes.client.CustomObjectsApi) -> None:
    refused = kubectl(cluster, "apply", "-n", namespace, "-f", "-", check=False, input=f"""
apiVersion: {GROUP}/{VERSION}
kind: TaskSchedule
metadata: {{name: six-fields}}
spec: {{schedule: "0 0 * * * *", taskRef: {{name: nap}}}}
""")
    assert refused.returncode != 0
    assert "spec.schedule must be a cron expression of five fields" in refused.stderr
    # What the schema cannot tell (a minute of 61, a zone that does not exist) the operator
    # reports in the Ready condition, and goes on.
    for name, spec in (("bad-minute", {"schedule": "61 * * * *"}),
                       ("bad-zone", {"schedule": "0 9 * * *", "timeZone": "Mars/Olympus_Mons"})):
        create_schedule(custom, namespace, schedule_manifest(name, "nap", **spec))

    def reported(name: str) -> dict[str, Any] | None:
        conditions = (get_schedule(custom, namespace, name).get("status") or {}).get("conditions", [])
        return next((c for c in conditions if c["reason"] == "InvalidSchedule"), None)

    assert "Bad minute" in wait_for(lambda: reported("bad-minute"), timeout=30)["message"]
    assert "Mars/Olympus_Mons" in wait_for(lambda: reported("bad-zone"), timeout=30)["message"]

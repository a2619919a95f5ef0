"""Two replicas, one leader: SIGKILL the leader mid-work and nothing is lost or doubled.

The operator is the chart-installed one (two replicas, leader election on a Lease).
An independent pod watch (the test's own) checks the queue's limit at every moment
and that each attempt's pod was created once; the TaskRuns' Events show that no
transition was announced twice, as two replicas reconciling at once would.
"""

from __future__ import annotations

from collections import Counter

import kubernetes
import pytest
from helpers import InstalledOperator, wait_for
from test_queue_limits import PodWatcher, create_queue, queue_manifest, wait_all_succeeded
from test_taskrun_lifecycle import create, run_manifest, task_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def test_runs_survive_two_leader_kills_under_a_limit_of_three(
        kube: kubernetes.client.ApiClient, namespace: str, core: kubernetes.client.CoreV1Api,
        custom: kubernetes.client.CustomObjectsApi, operator: InstalledOperator) -> None:
    create_queue(custom, namespace, queue_manifest("three", 3))
    watcher = PodWatcher(kube, namespace)
    killed = []
    try:
        names = [f"nap-{i}" for i in range(30)]
        create(custom, namespace, task_manifest("nap", "nap", queue="three"),
               *[run_manifest(name, "nap", {"seconds": 1}) for name in names])
        for round_ in range(2):
            wait_for(lambda r=round_: len(watcher.started) >= 6 * (r + 1),
                     timeout=180, what="more runs admitted")
            killed.append(operator.kill())
            operator.start()
        wait_all_succeeded(custom, namespace, names, timeout=420)
    finally:
        watcher.stop()
    print(f"failover after SIGKILL of the leader ({', '.join(killed)}): "
          + ", ".join(f"{seconds:.1f}s" for seconds in operator.failovers[-2:]))
    assert watcher.most_active <= 3
    # One pod per attempt, created once: no replica started an attempt another had started.
    assert sorted(watcher.started) == sorted(f"{n}-1" for n in names)
    assert all(len(uids) == 1 for uids in watcher.uids.values()), watcher.uids
    events = core.list_namespaced_event(namespace).items
    announced = Counter((e.involved_object.name, e.reason) for e in events
                        if e.involved_object.kind == "TaskRun")
    assert not [key for key, count in announced.items() if count > 1]
    assert all(announced[(name, "Succeeded")] == 1 for name in names)

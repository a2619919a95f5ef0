"""Child runs end to end: a parent triggers children and waits without holding a pod."""

from __future__ import annotations

import re

import kubernetes
import pytest
from helpers import InstalledOperator, get_taskrun, wait_for, wait_for_phase
from test_taskrun_lifecycle import attempt_pods, create, effects, run_manifest, task_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def test_parent_waits_for_three_children_without_a_pod(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    create(custom, namespace, task_manifest("square", "square"), task_manifest("fan-out", "fan-out"),
           run_manifest("parent", "fan-out", {"seconds": 4}))
    wait_for_phase(custom, namespace, "parent", {"Suspended"})
    # While the children run, the parent holds no pod at all.
    def children_running() -> bool:
        pods = attempt_pods(core, namespace)
        names = {p.metadata.name for p in pods if p.status.phase in ("Pending", "Running")}
        parent_pods = {name for name in names if re.fullmatch(r"parent-\d+", name)}
        return bool(names) and not parent_pods and \
            get_taskrun(custom, namespace, "parent")["status"]["phase"] == "Suspended"

    wait_for(children_running, timeout=60, what="children running while the parent waits")
    run = wait_for_phase(custom, namespace, "parent", {"Succeeded", "Failed"}, timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"] == {"total": 1 + 4 + 9}
    assert effects(operator.database_url, run["metadata"]["uid"]) == {"before": 1, "after": 1}
    for seq_name in ("parent-c2", "parent-c3", "parent-c4"):
        child = get_taskrun(custom, namespace, seq_name)
        assert child["status"]["phase"] == "Succeeded"
        assert child["metadata"]["ownerReferences"][0]["name"] == "parent"


def test_a_failed_child_raises_in_the_parent(
        namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    create(custom, namespace, task_manifest("square", "square"),
           task_manifest("careful", "fan-out-handling-failure"),
           run_manifest("careful-parent", "careful"))
    run = wait_for_phase(custom, namespace, "careful-parent", {"Succeeded", "Failed"}, timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"] == {"failed": "Failed", "message": "refusing to square 7"}

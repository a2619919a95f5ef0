"""Tenant isolation end to end: a task of one namespace goes after a run of another.

The intruder (tests/e2e/tasks/intruding.py) runs in namespace A with every
credential its pod can see; the victim runs in namespace B at the same time. Every
attempt to read or write B's rows, to touch the queue ledger, to change the schema,
or to have a child created in B is refused, and B's run finishes as if alone.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from helpers import InstalledOperator, get_taskrun, query, wait_for, wait_for_phase
from test_taskrun_lifecycle import create, effects, run_manifest, task_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def test_a_task_cannot_reach_another_namespaces_run(
        namespace: str, other_namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    intruder_ns, victim_ns = namespace, other_namespace
    create(custom, victim_ns, task_manifest("sleeper", "sleepy"),
           task_manifest("victim-task", "victim-task", modules=["behaviours", "intruding"]),
           run_manifest("victim", "sleeper", {"seconds": 20}))
    victim = wait_for_phase(custom, victim_ns, "victim", {"Running"})
    victim_id = victim["metadata"]["uid"]
    create(custom, intruder_ns,
           task_manifest("intruder", "intrude", modules=["behaviours", "intruding"]),
           run_manifest("intruder", "intruder",
                        {"victim": victim_id, "victim_namespace": victim_ns}))

    run = wait_for_phase(custom, intruder_ns, "intruder", {"Succeeded", "Failed"}, timeout=180)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    report = json.loads(query(operator.database_url,
                             "SELECT output FROM durakube.runs WHERE run_id = $1",
                             run["metadata"]["uid"])[0]["output"])
    assert int(report.pop("dsns-seen")) >= 1, "the pod sees its database URL"
    child = report.pop("child-in-victim-namespace")
    # Postgres refuses each one for want of privilege (not, say, for a typo in the attack).
    allowed = {name: outcome for name, outcome in report.items()
               if outcome != "refused: InsufficientPrivilegeError"}
    assert not allowed, allowed
    assert len(report) >= 16
    assert child.startswith("refused: ChildRequestRefused: invalid child options"), child
    assert "namespace" in child and "taskRef" in child

    # Nothing was created in B, and the operator kept why it refused.
    taskruns = custom.list_namespaced_custom_object("durakube.io", "v1alpha1", victim_ns,
                                                    "taskruns")["items"]
    assert [item["metadata"]["name"] for item in taskruns] == ["victim"]
    [request] = query(operator.database_url,
                     "SELECT rejected FROM durakube.child_runs WHERE parent_run_id = $1",
                     run["metadata"]["uid"])
    assert "invalid child options" in request["rejected"]

    # B's run, concurrent all along, finishes untouched.
    victim = wait_for_phase(custom, victim_ns, "victim", {"Succeeded", "Failed"}, timeout=120)
    assert victim["status"]["phase"] == "Succeeded", victim["status"]
    assert victim["status"]["output"] == {"attempt": 1}
    assert effects(operator.database_url, victim_id) == {"first": 1, "second": 1}
    steps = query(operator.database_url,
                 "SELECT seq, name, attempt FROM durakube.steps WHERE run_id = $1 ORDER BY seq",
                 victim_id)
    assert [(s["seq"], s["name"], s["attempt"]) for s in steps] == [(1, "first", 1), (2, "second", 1)]
    assert get_taskrun(custom, victim_ns, "victim")["status"]["attempt"] == 1


def test_an_attempts_secret_dies_with_it_and_spent_key_rings_go(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    # The suite's operator mints 8 keys per ring: 9 runs need a second ring.
    create(custom, namespace, task_manifest("sleeper", "sleepy"),
           *(run_manifest(f"short-{i}", "sleeper", {"seconds": 0}) for i in range(9)))
    finished = [wait_for_phase(custom, namespace, f"short-{i}", {"Succeeded", "Failed"})
                for i in range(9)]
    assert all(run["status"]["phase"] == "Succeeded" for run in finished)
    # Each pod read its own key of a ring in the run's namespace, and nothing in its manifest.
    references = set()
    for run in finished:
        pod = core.read_namespaced_pod(run["status"]["podName"], namespace)
        env = {item.name: item for item in pod.spec.containers[0].env}
        assert env["DURAKUBE_ATTEMPT_SECRET"].value is None
        reference = env["DURAKUBE_ATTEMPT_SECRET"].value_from.secret_key_ref
        references.add((reference.name, reference.key))
    assert len(references) == 9  # never one key for two attempts
    rings = {name for name, _ in references}
    assert len(rings) == 2
    # Postgres no longer accepts what they hold: every attempt is over.
    for run in finished:
        [attempt] = query(operator.database_url,
                         "SELECT secret_hash FROM durakube.attempts WHERE run_id = $1",
                         run["metadata"]["uid"])
        assert attempt["secret_hash"] is None

    def listed() -> dict[str, Any]:
        return {item.metadata.name: item for item in core.list_namespaced_secret(
            namespace, label_selector="durakube.io/key-ring=true").items}

    # The ring whose 8 keys are all spent is deleted; the one with keys to hand out stays.
    wait_for(lambda: len(listed()) == 1, timeout=60, what="the spent key ring deleted")
    [kept] = listed().values()
    assert kept.metadata.name in rings and len(kept.data) == 9  # the DSN and 8 keys
    # No Secret holding the operator's own login is left in a tenant's namespace.
    names = [item.metadata.name for item in core.list_namespaced_secret(namespace).items]
    assert "durakube-database" not in names


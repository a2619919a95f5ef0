"""The operator dies at each of its commit points, and every run still ends right: a
scenario of the chaos matrix (test_chaos_matrix.py).

The session's operator has its fault points armed for namespaces named
`faults-<point>-*` (tests/e2e/helpers.py, `InstalledOperator.values`): the leader
ends with `os._exit` the first time it reaches that point for an object of such a
namespace, exactly there, not after a sleep that may or may not land there. A
standby takes over (the killed replica's container restarts as a standby), finds
what the dead one left half done, and finishes it: nothing lost, nothing done twice,
one pod per attempt name, one child per request.

All points are armed at once, each in its own namespace, and met one after the
other: a point's objects are created once the previous point has ended a leader (a
takeover of the Lease), so that no two points are reached in one process, where the
first's exit would cut the other's pass short after its commit and before its point.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import kubernetes
from helpers import (
    FAULT_NAMESPACE_PREFIX,
    InstalledOperator,
    attempt_pods,
    effects,
    run_manifest,
    wait_for,
)
from invariants import (
    FINAL_PHASES,
    PodWatcher,
    Row,
    api_client,
    chaos_task,
    create_objects,
    fresh_namespace,
    operator_settled,
    phase,
    query,
    queue_manifest,
    restarts,
    run_problems,
    step_problems,
    wait_for_runs,
)

from durakube_operator import faults

BEHAVIOURS_IMAGE = "ghcr.io/durakube/test-tasks:dev"


def behaviour_task(name: str) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": BEHAVIOURS_IMAGE, "entrypoint": name, "modules": ["behaviours"]}}


# point -> (objects to create, the run to watch); each makes the point be reached once.
CASES: dict[str, tuple[list[dict[str, Any]], str]] = {
    "slot-granted": ([queue_manifest("chaos", 2), chaos_task("steps", "chaos-steps", "chaos"),
                      run_manifest("admitted", "steps", {"steps": 2, "seconds": 0.2})], "admitted"),
    "attempt-recorded": ([queue_manifest("chaos", 2), chaos_task("steps", "chaos-steps", "chaos"),
                          run_manifest("recorded", "steps", {"steps": 2, "seconds": 0.2})], "recorded"),
    "pod-created": ([queue_manifest("chaos", 2), chaos_task("steps", "chaos-steps", "chaos"),
                     run_manifest("created", "steps", {"steps": 2, "seconds": 0.2})], "created"),
    "child-created": ([behaviour_task("fan-out-handling-failure"), behaviour_task("square"),
                       run_manifest("parent", "fan-out-handling-failure")], "parent"),
    "run-woken": ([behaviour_task("nap-and-resume"),
                   run_manifest("sleeper", "nap-and-resume", {"seconds": 3})], "sleeper"),
}


@contextlib.contextmanager
def namespaces(core: kubernetes.client.CoreV1Api) -> Iterator[dict[str, str]]:
    made = {point: fresh_namespace(core, f"{FAULT_NAMESPACE_PREFIX}{point}") for point in CASES}
    try:
        yield made
    finally:
        for namespace in made.values():
            with contextlib.suppress(kubernetes.client.ApiException):
                core.delete_namespace(namespace)


def operator_fault_points(bed: Any, table: Row) -> list[str]:
    """The scenario of the matrix (`bed` is its `Bed`): after the leader-kill scenario,
    holding off the other whole-bed faults until every run here has ended."""
    assert set(CASES) == set(faults.POINTS), "every fault point has a case"
    if "leader" in bed.done:
        bed.done["leader"].wait(timeout=600)
    with api_client(bed.cluster) as client:
        custom = kubernetes.client.CustomObjectsApi(client)
        core = kubernetes.client.CoreV1Api(client)
        with namespaces(core) as where:
            watchers = {point: PodWatcher(bed.cluster, namespace) for point, namespace in where.items()}
            with bed.lock:
                # A restart of an earlier kill still to come would pass for one of these.
                wait_for(lambda: operator_settled(core), 120, interval=1,
                         what="both operator replicas ready")
                restarted_before = restarts(core)
                taken_over_before = takeovers(bed.operator)
                for point, (objects, _) in CASES.items():
                    before = takeovers(bed.operator)
                    create_objects(custom, where[point], *objects)
                    # The point ends the leader; the standby (or the restarted replica)
                    # takes the Lease over once it expires.
                    wait_for(lambda before=before: takeovers(bed.operator) > before, 120,
                             interval=1, what=f"a new leader after fault point {point}")
                table.runs = len(CASES)
                runs = {point: wait_for_runs(custom, where[point], [name], 420)
                        for point, (_, name) in CASES.items()}
                table.faults = takeovers(bed.operator) - taken_over_before
                table.notes.append(f"container restarts {restarts(core) - restarted_before}")
            for watcher in watchers.values():
                watcher.stop()
            bed.begin_checks()
            extra = {name: (runs[point].get(name, {}).get("status") or {}).get("attempt")
                     for point, (_, name) in CASES.items()}
            table.notes.append("attempts per run: " + ", ".join(f"{n} {a}" for n, a in extra.items()))
            problems = problems_of(runs, where, custom, core, bed.operator)
            for point, watcher in watchers.items():
                problems += [f"{point}: {p}" for p in watcher.problems(limit=2)]
            return problems


def takeovers(operator: InstalledOperator) -> int:
    """How often the Lease changed hands (each replica process takes it under an identity
    of its own, so a replica restarted after a fault point counts as a new holder)."""
    return int((operator.lease().get("spec") or {}).get("leaseTransitions") or 0)


def problems_of(runs: dict[str, dict[str, dict[str, Any]]], where: dict[str, str],
                custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
                operator: InstalledOperator) -> list[str]:
    problems = []
    for point, (_, name) in CASES.items():
        namespace, run = where[point], runs[point].get(name)
        problems += [f"{point}: {p}" for p in run_problems(runs[point], [name])]
        if run is None or phase(run) not in FINAL_PHASES:
            continue
        if point in ("slot-granted", "attempt-recorded", "pod-created"):
            problems += [f"{point}: {p}" for p in step_problems(operator.database_url,
                                                                 [run["metadata"]["uid"]])]
        found = case_problems(point, namespace, name, run, custom, core, operator)
        if found:  # what happened, for the report
            found.append("events: " + "; ".join(
                f"{e.involved_object.name} {e.reason}: {e.message}"
                for e in core.list_namespaced_event(namespace).items))
            found.append(f"attempts: {attempt_rows(operator, run['metadata']['uid'])}")
        problems += [f"{point}: {p}" for p in found]
    return problems


def attempt_rows(operator: InstalledOperator, run_id: str) -> list[dict[str, Any]]:
    return query(operator.database_url, """
        SELECT attempt, pod_name, outcome, secret_hash IS NOT NULL AS live, started_at, finished_at
        FROM durakube.attempts WHERE run_id = $1 ORDER BY attempt""", run_id)


def case_problems(point: str, namespace: str, name: str, run: dict[str, Any],
                  custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api,
                  operator: InstalledOperator) -> list[str]:
    """Nothing lost, nothing done twice: a child per request, every step once (the steps'
    rows above), each wait's effects once. (An attempt in flight when the leader died may
    still end without an outcome and be retried: the table notes the attempts.)"""
    status = run.get("status") or {}
    found = []
    if point == "child-created":
        children = [r["metadata"]["name"] for r in custom.list_namespaced_custom_object(
            "durakube.io", "v1alpha1", namespace, "taskruns",
            label_selector=f"durakube.io/parent-run-uid={run['metadata']['uid']}")["items"]]
        if len(children) != 1:
            found.append(f"children {children} for one request")
        if (status.get("output") or {}).get("failed") != "Failed":
            found.append(f"output {status.get('output')}")
    elif point == "run-woken":
        counts = effects(operator.database_url, run["metadata"]["uid"])
        # The step after the wait ran once; the one before may have been in flight when
        # an attempt was lost (then at least once).
        if counts.get("after") != 1 or not counts.get("before"):
            found.append(f"effects {counts}")
        pods = [pod.metadata.name for pod in attempt_pods(core, namespace)]
        if f"{name}-{status.get('attempt')}" not in pods:
            found.append(f"attempt pods {pods}")
    return found

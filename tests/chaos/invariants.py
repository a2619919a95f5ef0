"""The chaos tests' independent watcher, their invariants and the table they print.

The watcher knows nothing of the operator: it watches a namespace's attempt pods
through the API (re-opening its watch whenever the apiserver goes away), and the
checks read TaskRuns through the API and steps and effect rows from Postgres. The
invariants, for every scenario:

- every run ends in its expected phase, none is left unfinished (no stuck run);
- no completed step re-ran: each execution of a step is a row of
  public.test_step_runs with the attempt that ran it, and none comes from an attempt
  later than the one that recorded the step;
- the queue's limit was never exceeded at any moment the watcher saw;
- exactly one pod per attempt name (a name never had two pods).

`Row`s collect what each scenario did (runs, faults injected, the seed of its random
choices, the result); tests/chaos/conftest.py prints them as a table at the end.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kubernetes
from helpers import InstalledOperator, get_taskrun, query

from devcluster import cluster as devcluster_cluster

# Set to replay a failed scenario's random choices (the table prints each one's seed).
SEED_VARIABLE = "DURAKUBE_CHAOS_SEED"
FINAL_PHASES = {"Succeeded", "Failed", "Canceled", "TimedOut", "Expired"}
ALL = "all"


@dataclass
class Row:
    """One scenario of the table."""

    scenario: str
    invariants: str = ALL
    runs: int = 0
    faults: int = 0
    seed: int | None = None
    result: str = "not run"
    notes: list[str] = field(default_factory=list)
    # Seconds from the start of the scenarios to this one's end (they run at once).
    ended: float | None = None


# Rows in the order the scenarios ran; printed by tests/chaos/conftest.py.
REPORT: dict[str, Row] = {}


def row(scenario: str, invariants: str = ALL) -> Row:
    return REPORT.setdefault(scenario, Row(scenario, invariants))


def seed_for(scenario_row: Row) -> random.Random:
    """The scenario's random source: from DURAKUBE_CHAOS_SEED to replay, else fresh."""
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().getrandbits(32))
    scenario_row.seed = seed
    return random.Random(seed)


def api_client(cluster: devcluster_cluster.Cluster) -> kubernetes.client.ApiClient:
    """An admin client of its own, for one thread."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=config)
    return kubernetes.client.ApiClient(config)


def retrying(create: Callable[[], object], timeout: float = 90) -> None:
    """Creates something, again while the apiserver restarts for another scenario; an
    answer lost in a restart leaves it created: AlreadyExists is done."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            create()
            return
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                return
            if time.monotonic() > deadline or error.status not in (429, 500, 503, 504):
                raise
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def fresh_namespace(core: kubernetes.client.CoreV1Api, prefix: str) -> str:
    """A new namespace (deleted by `delete_namespace`), once its default account exists."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    retrying(lambda: core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": name})))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except Exception:
            time.sleep(0.2)
    return name


class PodWatcher:
    """Watches the attempt pods of one namespace from a thread of its own and keeps:
    every uid seen under each pod name, and the most pods active at once.

    A pod is active from its creation until it finished, was deleted, or is being
    deleted while no longer ready (a lost node's pod, which the operator gives up)."""

    def __init__(self, cluster: devcluster_cluster.Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.uids: dict[str, set[str]] = {}
        self.phases: dict[str, str] = {}
        self.active: set[str] = set()
        self.most_active = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{namespace}")
        self._thread.start()

    def _run(self) -> None:
        with api_client(self.cluster) as client:
            core = kubernetes.client.CoreV1Api(client)
            while not self._stop.is_set():
                watch = kubernetes.watch.Watch()
                try:
                    for event in watch.stream(core.list_namespaced_pod, self.namespace,
                                              label_selector="app.kubernetes.io/managed-by=durakube",
                                              timeout_seconds=5, _request_timeout=15):
                        self._see(event["type"], event["object"])
                        if self._stop.is_set():
                            break
                except Exception:  # the apiserver restarting, a dropped connection: re-watch
                    self.reconnects += 1
                    time.sleep(0.5)
                finally:
                    watch.stop()

    def _see(self, kind: str, pod: Any) -> None:
        name = pod.metadata.name
        self.uids.setdefault(name, set()).add(pod.metadata.uid)
        self.phases[name] = pod.status.phase
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if kind == "DELETED" or pod.status.phase in ("Succeeded", "Failed") or (
                pod.metadata.deletion_timestamp is not None and not ready):
            self.active.discard(name)
        else:
            self.active.add(name)
        self.most_active = max(self.most_active, len(self.active))

    def started(self) -> list[str]:
        return list(self.uids)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)

    def problems(self, limit: int) -> list[str]:
        found = []
        if self.most_active > limit:
            found.append(f"{self.most_active} pods active at once in a queue limited to {limit}")
        doubled = {name: len(uids) for name, uids in self.uids.items() if len(uids) > 1}
        if doubled:
            found.append(f"more than one pod under one attempt's name: {doubled}")
        return found


def wait_for_runs(custom: kubernetes.client.CustomObjectsApi, namespace: str, names: list[str],
                  timeout: float) -> dict[str, dict[str, Any]]:
    """Polls until every run is in a final phase or `timeout` passed; the runs as last read
    (a run missing or unfinished at the end is a stuck run for `run_problems`)."""
    deadline = time.monotonic() + timeout
    runs: dict[str, dict[str, Any]] = {}
    while True:
        try:
            listed = custom.list_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                          "taskruns")["items"]
            runs = {run["metadata"]["name"]: run for run in listed}
        except Exception:  # the apiserver restarting: read again
            pass
        if all(phase(runs.get(name)) in FINAL_PHASES for name in names):
            return runs
        if time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def phase(run: dict[str, Any] | None) -> str | None:
    return ((run or {}).get("status") or {}).get("phase")


def run_problems(runs: dict[str, dict[str, Any]], names: list[str],
                 expected: str = "Succeeded") -> list[str]:
    found = []
    for name in names:
        got = phase(runs.get(name))
        if got not in FINAL_PHASES:
            found.append(f"run {name} stuck in {got}")
        elif got != expected:
            status = runs[name].get("status") or {}
            found.append(f"run {name} ended {got}, not {expected}: {status.get('lastError')}")
    return found


def step_problems(database_url: str, run_ids: list[str]) -> list[str]:
    """Completed steps that ran again in a later attempt, and runs with no step at all."""
    rerun = query(database_url, """
        SELECT s.run_id, s.name, s.attempt AS recorded_by, r.attempt AS ran_again_in
        FROM durakube.steps s JOIN public.test_step_runs r ON r.run_id = s.run_id AND r.step = s.name
        WHERE s.run_id = ANY($1) AND r.attempt > s.attempt""", run_ids)
    found = [f"step {row['name']} of run {row['run_id']}, recorded by attempt {row['recorded_by']}, "
             f"ran again in attempt {row['ran_again_in']}" for row in rerun]
    recorded = {row["run_id"] for row in query(
        database_url, "SELECT DISTINCT run_id FROM durakube.steps WHERE run_id = ANY($1)", run_ids)}
    found += [f"run {run_id} recorded no step" for run_id in set(run_ids) - recorded]
    return found


def ran_steps(database_url: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """Every execution of a step of these runs: run_id, step, attempt."""
    return query(database_url, "SELECT run_id, step, attempt FROM public.test_step_runs "
                               "WHERE run_id = ANY($1) ORDER BY at", run_ids)


def queue_manifest(name: str, limit: int) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskQueue", "metadata": {"name": name},
            "spec": {"concurrencyLimit": limit}}


def chaos_task(name: str, entrypoint: str, queue: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": "ghcr.io/durakube/test-tasks:dev", "entrypoint": entrypoint,
                     "modules": ["chaotic"], "queue": queue, **spec}}


def create_objects(custom: kubernetes.client.CustomObjectsApi, namespace: str,
                   *objects: dict[str, Any]) -> None:
    plurals = {"Task": "tasks", "TaskRun": "taskruns", "TaskQueue": "taskqueues"}
    for body in objects:
        retrying(lambda body=body: custom.create_namespaced_custom_object(
            "durakube.io", "v1alpha1", namespace, plurals[body["kind"]], body))


def run_ids(custom: kubernetes.client.CustomObjectsApi, namespace: str, names: list[str]) -> list[str]:
    return [get_taskrun(custom, namespace, name)["metadata"]["uid"] for name in names]


def operator_pods(core: kubernetes.client.CoreV1Api) -> list[Any]:
    return list(core.list_namespaced_pod(InstalledOperator.NAMESPACE,
                                         label_selector="app.kubernetes.io/name=durakube").items)


def restarts(core: kubernetes.client.CoreV1Api) -> int:
    """Container restarts of the operator's replicas so far."""
    return sum(status.restart_count for pod in operator_pods(core)
               for status in pod.status.container_statuses or [])


def operator_settled(core: kubernetes.client.CoreV1Api) -> bool:
    """Every replica's container runs and is ready: a restart from now on is a new one."""
    pods = operator_pods(core)
    return bool(pods) and all(status.ready for pod in pods
                              for status in pod.status.container_statuses or [])

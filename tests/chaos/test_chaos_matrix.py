"""The chaos matrix: each scenario injects one kind of fault into the real test bed while
runs go on, and an independent watcher checks the invariants (`invariants`).

The scenarios run at once, each in a namespace, queue and thread of its own, started
by the module's fixture for the tests selected; each test waits for its own scenario
and asserts on it. Faults that hit the whole bed (the operator's leader SIGKILLed,
Postgres restarted, etcd and the apiserver restarted) take turns under one lock, each
over once the bed has recovered; the operator's fault points (`commit_points`) take
that lock too, after the leader-kill scenario. The node scenarios use nodes of their
own, which only their runs may use (a nodeSelector on a label of the scenario's pool),
and hold their runs where the fault must find them (a row of public.test_holds, see
tests/e2e/tasks/chaotic.py) until it has been injected, whatever other faults did to
their attempts before. DURAKUBE_CHAOS_SEED replays a scenario's random choices.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import commit_points
import kubernetes
import pytest
from helpers import InstalledOperator, container_pids, get_taskrun, run_manifest, wait_for
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
    ran_steps,
    restarts,
    row,
    run_ids,
    run_problems,
    seed_for,
    step_problems,
    wait_for_runs,
)
from nodes import extra_nodes, kill_agent, node_ready

from devcluster import cluster as devcluster_cluster
from devcluster import postgres

pytestmark = [pytest.mark.e2e]

POOL_LABEL = "durakube.io/chaos-pool"
WORKER_LOGIN = "durakube_worker_test_login"
# How long a scenario may take at most before its runs count as stuck.
RUNS_TIMEOUT = 420.0


@dataclass
class Bed:
    """What every scenario shares: the session's test bed, operator and Postgres."""

    cluster: devcluster_cluster.Cluster
    operator: InstalledOperator
    pg_server: postgres.PostgresServer
    # Faults that hit the whole bed, one at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set when a scenario has finished (another may wait for it).
    done: dict[str, threading.Event] = field(default_factory=dict)

    # Which threads hold `lock` for their checks (released when their scenario returns).
    checking: threading.local = field(default_factory=threading.local)

    @property
    def database_url(self) -> str:
        return self.operator.database_url

    def after(self, scenario: str) -> None:
        """Waits until `scenario` has finished, if it runs in this session."""
        if scenario in self.done:
            self.done[scenario].wait(timeout=RUNS_TIMEOUT)

    def begin_checks(self) -> None:
        """Holds off whole-bed faults while this scenario's checks read the API and
        Postgres; released when the scenario returns."""
        self.lock.acquire()
        self.checking.held = True

    def end_checks(self) -> None:
        if getattr(self.checking, "held", False):
            self.checking.held = False
            self.lock.release()


@dataclass
class Scope:
    """One scenario's namespace, API clients and watcher."""

    namespace: str
    custom: kubernetes.client.CustomObjectsApi
    core: kubernetes.client.CoreV1Api
    watcher: PodWatcher
    limit: int


@contextlib.contextmanager
def scope(bed: Bed, prefix: str, limit: int, *objects: dict[str, Any]) -> Iterator[Scope]:
    """A namespace with a queue "chaos" of `limit` and `objects`, watched while in use."""
    with api_client(bed.cluster) as client:
        custom = kubernetes.client.CustomObjectsApi(client)
        core = kubernetes.client.CoreV1Api(client)
        namespace = fresh_namespace(core, prefix)
        watcher = PodWatcher(bed.cluster, namespace)
        try:
            create_objects(custom, namespace, queue_manifest("chaos", limit), *objects)
            yield Scope(namespace, custom, core, watcher, limit)
        finally:
            watcher.stop()
            with contextlib.suppress(kubernetes.client.ApiException):
                core.delete_namespace(namespace)


def common_problems(bed: Bed, where: Scope, names: list[str],
                    runs: dict[str, dict[str, Any]]) -> list[str]:
    """The invariants every scenario checks: phases, stuck runs, steps, limit, pods."""
    found = run_problems(runs, names)
    ids = [runs[name]["metadata"]["uid"] for name in names if name in runs]
    return found + step_problems(bed.database_url, ids) + where.watcher.problems(where.limit)


def create_runs(where: Scope, task: str, names: list[str], payload: dict[str, Any]) -> None:
    create_objects(where.custom, where.namespace, *[run_manifest(name, task, payload) for name in names])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Polls `check`; a read that fails (the apiserver or Postgres restarting for another
    scenario) counts as "not yet"."""
    def tolerant() -> Any:
        try:
            return check()
        except Exception:
            return None

    return wait_for(tolerant, timeout, interval=0.5, what=what)




def executions(bed: Bed, where: Scope, names: list[str]) -> list[dict[str, Any]]:
    return ran_steps(bed.database_url, run_ids(where.custom, where.namespace, names))


def in_flight(bed: Bed, where: Scope, names: list[str], step: str) -> bool:
    """Whether every run has started `step` in its first attempt."""
    rows = executions(bed, where, names)
    return len({r["run_id"] for r in rows if r["step"] == step and r["attempt"] == 1}) == len(names)


def all_final(where: Scope, names: list[str]) -> bool:
    try:
        listed = where.custom.list_namespaced_custom_object("durakube.io", "v1alpha1", where.namespace,
                                                            "taskruns")["items"]
    except Exception:
        return False
    phases = {run["metadata"]["name"]: phase(run) for run in listed}
    return all(phases.get(name) in FINAL_PHASES for name in names)


def pooled(pool: str) -> dict[str, Any]:
    """A Task's pod template for the nodes of `pool` (and only them)."""
    return {"podTemplate": {
        "nodeSelector": {POOL_LABEL: pool},
        "tolerations": [{"key": POOL_LABEL, "operator": "Equal", "value": pool,
                         "effect": "NoSchedule"}]}}


def in_pool(pool: str) -> dict[str, Any]:
    """A node of `pool` from its registration on: labelled for the pool's Tasks, and
    tainted against every other pod, so that no other scenario's pod lands on a node
    this one kills or pauses (and waits out the node-lost eviction)."""
    return {"labels": {POOL_LABEL: pool}, "taints": (f"{POOL_LABEL}={pool}:NoSchedule",)}


def readiness(operator: InstalledOperator) -> int:
    """The status /readyz answers (either replica: they share the port), 0 when none does."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/readyz",
                                    timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0


def process_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its (stopped) parent has not reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# The scenarios. Each returns the problems it found (none: every invariant held).


def worker_sigkill(bed: Bed, table: Row) -> list[str]:
    rng = seed_for(table)
    # 24 runs of five 0.4 s steps, each killed at most twice: 48 chances for the 20 kills,
    # so runs that end between the pick and the kill (a busy machine) still leave enough.
    names = [f"kill-{i}" for i in range(24)]
    with scope(bed, "chaos-kill", 5, chaos_task("steps", "chaos-steps", "chaos")) as where:
        create_runs(where, "steps", names, {"steps": 5, "seconds": 0.4})
        table.runs = len(names)
        kills: Counter[str] = Counter()
        deadline = time.monotonic() + RUNS_TIMEOUT
        while table.faults < 20 and time.monotonic() < deadline:
            running = sorted(name for name, phase in list(where.watcher.phases.items())
                             if phase == "Running" and kills[name.rsplit("-", 1)[0]] < 2)
            if not running:
                if all_final(where, names):
                    break  # every run ended before enough kills: reported below
                time.sleep(0.2)
                continue
            pod = rng.choice(running)
            time.sleep(rng.uniform(0.0, 0.8))  # a random moment of the attempt
            pids = container_pids("DURAKUBE_POD_NAME", pod)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if pids:
                table.faults += 1
                kills[pod.rsplit("-", 1)[0]] += 1
        runs = wait_for_runs(where.custom, where.namespace, names, RUNS_TIMEOUT)
        bed.begin_checks()
        found = common_problems(bed, where, names, runs)
        if table.faults < 20:
            found.append(f"only {table.faults} workers could be killed")
        resumed = sum((runs[n].get("status") or {}).get("infrastructureFailures", 0)
                      for n in names if n in runs)
        table.notes.append(f"{resumed} attempts resumed from a checkpoint")
        if not resumed:
            found.append("no kill hit a worker before its outcome")
        return found


def operator_sigkill(bed: Bed, table: Row) -> list[str]:
    names = [f"admit-{i}" for i in range(30)]
    with scope(bed, "chaos-leader", 3, chaos_task("steps", "chaos-steps", "chaos")) as where:
        create_runs(where, "steps", names, {"steps": 1, "seconds": 1})
        table.runs = len(names)
        for round_ in range(4):
            wait_until(lambda r=round_: len(where.watcher.started()) >= 5 + 6 * r, RUNS_TIMEOUT,
                       "more runs admitted")
            with bed.lock:
                bed.operator.kill()
                table.faults += 1
                bed.operator.start()
        runs = wait_for_runs(where.custom, where.namespace, names, RUNS_TIMEOUT)
        bed.begin_checks()
        found = common_problems(bed, where, names, runs)
        table.notes.append("failovers " + ", ".join(f"{s:.0f}s" for s in bed.operator.failovers[-4:]))
        # No transition announced twice, as two replicas reconciling at once would (runs
        # another scenario's fault made retry announce Running again: left out).
        events = where.core.list_namespaced_event(where.namespace).items
        announced = Counter((e.involved_object.name, e.reason) for e in events
                            if e.involved_object.kind == "TaskRun")
        once = {n for n in names if (runs.get(n, {}).get("status") or {}).get("attempt") == 1}
        found += [f"{name}: {reason} announced {count} times"
                  for (name, reason), count in announced.items() if count > 1 and name in once]
        found += [f"{name}: Succeeded announced {announced[(name, 'Succeeded')]} times"
                  for name in names if announced[(name, "Succeeded")] > 1]
        return found


@dataclass
class Hold:
    """A row of public.test_holds, which holds the runs that name it (tasks/chaotic.py)."""

    database_url: str
    name: str = field(default_factory=lambda: uuid.uuid4().hex)

    def release(self) -> None:
        query(self.database_url, "DELETE FROM public.test_holds WHERE name = $1 RETURNING name",
              self.name)


@contextlib.contextmanager
def holding_row(bed: Bed) -> Iterator[Hold]:
    """A hold for the runs of a scenario, released at the end in any case."""
    hold = Hold(bed.database_url)
    query(bed.database_url, "INSERT INTO public.test_holds (name) VALUES ($1) RETURNING name", hold.name)
    try:
        yield hold
    finally:
        hold.release()


def holding(bed: Bed, where: Scope, names: list[str], step: str) -> dict[str, int] | None:
    """{run: attempt} once every run's current attempt has started `step`, else None."""
    current = {}
    for name in names:
        run = get_taskrun(where.custom, where.namespace, name)
        current[run["metadata"]["uid"]] = (name, (run.get("status") or {}).get("attempt"))
    started = {(r["run_id"], r["attempt"]) for r in ran_steps(bed.database_url, list(current))
               if r["step"] == step}
    found = {name: attempt for uid, (name, attempt) in current.items() if (uid, attempt) in started}
    return found if len(found) == len(names) else None


def node_lost_for_good(bed: Bed, table: Row) -> list[str]:
    names = [f"lost-{i}" for i in range(5)]
    with scope(bed, "chaos-lost", 5,
               chaos_task("steps", "chaos-steps", "chaos", **pooled("lost"))) as where, \
            extra_nodes(bed.cluster, where.core) as start_node, holding_row(bed) as hold:
        doomed = start_node("chaos-lost-a", **in_pool("lost"))
        create_runs(where, "steps", names, {"steps": 3, "seconds": 0.2, "hold_step": 2,
                                            "hold": hold.name})
        table.runs = len(names)
        lost = wait_until(lambda: holding(bed, where, names, "step-2"), 240, "second steps in flight")
        leaders_before = commit_points.takeovers(bed.operator)
        kill_agent(doomed)
        table.faults = 1
        hold.release()
        start_node("chaos-lost-b", **in_pool("lost"))
        # Node-monitor grace (16 s here) and the NoExecute toleration (20 s), then at once.
        runs = wait_for_runs(where.custom, where.namespace, names, RUNS_TIMEOUT)
        bed.begin_checks()
        found = common_problems(bed, where, names, runs)
        reasons = {e.involved_object.name for e in where.core.list_namespaced_event(where.namespace).items
                   if e.reason == "NodeLost"}
        unannounced = [name for name in names if name not in reasons]
        if unannounced and commit_points.takeovers(bed.operator) > leaders_before:
            # Events are best effort: a leader that another scenario kills between the
            # runs' NodeLost transitions and the sending of their Events takes them along.
            table.notes.append(f"NodeLost Events of {len(unannounced)} runs went with a killed leader")
        else:
            found += [f"{name}: no NodeLost event" for name in unannounced]
        for name, attempt in lost.items():
            try:
                pod = where.core.read_namespaced_pod(f"{name}-{attempt}", where.namespace)
            except kubernetes.client.ApiException as error:
                if error.status != 404:
                    raise
                pod = None  # deleted already: Kubernetes may finish a lost node's deletions
            if pod is not None and pod.metadata.deletion_timestamp is None:
                found.append(f"{name}-{attempt} on the lost node is not being deleted")
            last = (runs.get(name, {}).get("status") or {}).get("podName")
            node = where.core.read_namespaced_pod(last, where.namespace).spec.node_name if last else None
            if node != "chaos-lost-b":
                found.append(f"{last} did not run on the node that joined")
        return found


def node_lost_and_back(bed: Bed, table: Row) -> list[str]:
    names = [f"back-{i}" for i in range(5)]
    with scope(bed, "chaos-back", 5,
               chaos_task("steps", "chaos-steps", "chaos", **pooled("back"))) as where, \
            extra_nodes(bed.cluster, where.core) as start_node, holding_row(bed) as hold:
        node = start_node("chaos-back-a", **in_pool("back"))
        create_runs(where, "steps", names, {"steps": 3, "seconds": 0.2, "hold_step": 2,
                                            "hold": hold.name})
        table.runs = len(names)
        wait_until(lambda: holding(bed, where, names, "step-2"), 240, "second steps in flight")
        kill_agent(node)
        table.faults = 1
        hold.release()
        wait_until(lambda: node_ready(where.core, "chaos-back-a") != "True", 120, "the node not ready")
        node.start_again()
        runs = wait_for_runs(where.custom, where.namespace, names, RUNS_TIMEOUT)
        bed.begin_checks()
        found = common_problems(bed, where, names, runs)
        for name in names:
            status = runs.get(name, {}).get("status") or {}
            if not status.get("infrastructureFailures"):
                found.append(f"{name}: the lost attempt was not counted as an infrastructure failure")
        elsewhere = [pod.metadata.name for pod in where.core.list_namespaced_pod(where.namespace).items
                     if pod.spec.node_name != "chaos-back-a"]
        if elsewhere:
            found.append(f"pods ran outside the pool: {elsewhere}")
        return found


ZOMBIE_WRITES = ("step", "wait", "child", "outcome")


def zombie(bed: Bed, table: Row) -> list[str]:
    names = [f"zombie-{then}" for then in ZOMBIE_WRITES]
    # Its workers must still hold when they are paused; a restart of the shared Postgres
    # ended one of them before it could be (once in a run here): after that scenario.
    bed.after("postgres")
    with scope(bed, "chaos-zombie", 5,
               chaos_task("zombie", "chaos-zombie", "chaos", **pooled("zombie")),
               chaos_task("chaos-steps", "chaos-steps", "chaos")) as where, \
            extra_nodes(bed.cluster, where.core) as start_node, holding_row(bed) as hold:
        paused_node = start_node("chaos-zombie-a", **in_pool("zombie"))
        create_objects(where.custom, where.namespace, *[
            run_manifest(f"zombie-{then}", "zombie", {"then": then, "hold": hold.name})
            for then in ZOMBIE_WRITES])
        table.runs = len(names)
        paused = wait_until(lambda: holding(bed, where, names, "hold"), 240, "every worker holding")
        # Pause each worker, then cut its node off (its agent paused: no heartbeat, and its
        # processes live on). Kubernetes gives the pods up; new attempts start elsewhere.
        workers = {name: container_pids("DURAKUBE_POD_NAME", f"{name}-{attempt}")
                   for name, attempt in paused.items()}
        for pids in workers.values():
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
        table.faults = sum(1 for pids in workers.values() if pids)
        os.kill(paused_node.process.pid, signal.SIGSTOP)
        try:
            start_node("chaos-zombie-b", **in_pool("zombie"))
            wait_until(lambda: all((((get_taskrun(where.custom, where.namespace, name).get("status")
                                      or {}).get("attempt") or 0) > attempt)
                                   for name, attempt in paused.items()), RUNS_TIMEOUT,
                       "newer attempts")
            hold.release()
            for pids in workers.values():
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            # Refused at their first write, the old workers stop at once.
            wait_until(lambda: all(process_gone(pid) for pids in workers.values() for pid in pids),
                       60, "the resumed workers to exit")
            runs = wait_for_runs(where.custom, where.namespace, names, RUNS_TIMEOUT)
        finally:
            kill_agent(paused_node)
        bed.begin_checks()
        found = run_problems(runs, names) + where.watcher.problems(where.limit)
        ids = {name: runs[name]["metadata"]["uid"] for name in names if name in runs}
        found += step_problems(bed.database_url, list(ids.values()))
        for name, run_id in ids.items():
            found += zombie_problems(bed, where, name, run_id, paused[name])
        if not all(workers.values()):
            found.append(f"workers not found to pause: {[n for n, p in workers.items() if not p]}")
        return found


def zombie_problems(bed: Bed, where: Scope, name: str, run_id: str, attempt: int) -> list[str]:
    """What the paused `attempt` of `name` must not have written once resumed."""
    found = []
    steps = [r["name"] for r in query(bed.database_url, "SELECT name FROM durakube.steps "
                                      "WHERE run_id = $1 AND attempt = $2", run_id, attempt)]
    if set(steps) - {"before"}:
        found.append(f"{name}: the paused attempt {attempt} recorded steps {steps}")
    outcome = query(bed.database_url, "SELECT outcome FROM durakube.attempts WHERE run_id = $1 "
                                      "AND attempt = $2", run_id, attempt)
    if outcome and outcome[0]["outcome"] is not None:
        found.append(f"{name}: the paused attempt recorded the outcome {outcome[0]['outcome']}")
    after = [r for r in ran_steps(bed.database_url, [run_id])
             if r["attempt"] == attempt and r["step"] == "after"]
    if after:
        found.append(f"{name}: the paused attempt went on past its refused write")
    children = query(bed.database_url, "SELECT parent_attempt FROM durakube.child_runs "
                                       "WHERE parent_run_id = $1", run_id)
    if any(c["parent_attempt"] == attempt for c in children):
        found.append(f"{name}: the paused attempt requested a child")
    if name == "zombie-child":
        listed = where.custom.list_namespaced_custom_object(
            "durakube.io", "v1alpha1", where.namespace, "taskruns",
            label_selector=f"durakube.io/parent-run-uid={run_id}")["items"]
        if len(children) != 1 or len(listed) != 1:
            found.append(f"{name}: {len(children)} child requests and {len(listed)} child runs, not 1")
    if name == "zombie-wait":
        waits = query(bed.database_url, "SELECT seq FROM durakube.waitpoints WHERE run_id = $1", run_id)
        if len(waits) != 1:
            found.append(f"{name}: {len(waits)} waits recorded, not 1")
    return found


def postgres_restart(bed: Bed, table: Row) -> list[str]:
    names = [f"pg-{i}" for i in range(10)]
    with scope(bed, "chaos-pg", 10, chaos_task("steps", "chaos-steps", "chaos")) as where:
        create_runs(where, "steps", names, {"steps": 3, "seconds": 6})
        table.runs = len(names)
        wait_until(lambda: len({r["run_id"] for r in executions(bed, where, names)}) >= 5, 240,
                   "steps in flight")
        with bed.lock:
            # The attempt each run is in when Postgres goes: it must be the one that ends it.
            attempts = {r["run_id"]: r["attempt"] for r in executions(bed, where, names)}
            wait_until(lambda: operator_settled(where.core), 120, "both operator replicas ready")
            restarted_before = restarts(where.core)
            bed.pg_server.stop()
            table.faults = 1
            try:
                wait_until(lambda: readiness(bed.operator) == 503, 30,
                           "the operator reporting Postgres unreachable")
            finally:
                bed.pg_server.restart()
            wait_until(lambda: readiness(bed.operator) == 200, 60, "the operator ready again")
            crashed = restarts(where.core) - restarted_before
        runs = wait_for_runs(where.custom, where.namespace, names, RUNS_TIMEOUT)
        bed.begin_checks()
        found = common_problems(bed, where, names, runs)
        if crashed:
            found.append(f"{crashed} operator replicas crashed over the outage")
        # How many attempts in flight across the outage went on to their end (a worker
        # waits Postgres out for up to DURAKUBE_STORE_RETRY_SECONDS); the others resumed
        # from their checkpoints in a new attempt. Reported, not asserted: on the shared,
        # busy bed some of them end without an outcome, which a single run on a quiet bed
        # did not show; why is still open.
        same = sum(1 for name in names
                   if attempts.get(((runs.get(name) or {}).get("metadata") or {}).get("uid"))
                   == ((runs.get(name) or {}).get("status") or {}).get("attempt"))
        table.notes.append(f"{same} of {len(attempts)} runs in flight ended in the same attempt")
        return found


def connections_terminated(bed: Bed, table: Row) -> list[str]:
    rng = seed_for(table)
    names = [f"cut-{i}" for i in range(5)]
    bed.after("postgres")  # its runs must not lose a connection: after them
    with scope(bed, "chaos-cut", 5, chaos_task("steps", "chaos-steps", "chaos")) as where:
        create_runs(where, "steps", names, {"steps": 8, "seconds": 0.8})
        table.runs = len(names)
        wait_until(lambda: executions(bed, where, names), 240, "steps in flight")
        while table.faults < 5 and not all_final(where, names):
            time.sleep(rng.uniform(0.3, 1.2))
            cut = query(bed.database_url, """
                SELECT count(pg_terminate_backend(pid)) AS cut FROM pg_stat_activity
                WHERE usename = $1 AND application_name <> 'test-effects'""", WORKER_LOGIN)
            if cut[0]["cut"]:
                table.faults += 1
        runs = wait_for_runs(where.custom, where.namespace, names, RUNS_TIMEOUT)
        bed.begin_checks()
        found = common_problems(bed, where, names, runs)
        if table.faults < 5:
            found.append(f"only {table.faults} rounds found workers' connections to terminate")
        return found


def apiserver_restart(bed: Bed, table: Row) -> list[str]:
    before = [f"api-{i}" for i in range(5)]
    after = [f"api-{i}" for i in range(5, 10)]
    with scope(bed, "chaos-api", 5, chaos_task("steps", "chaos-steps", "chaos")) as where:
        create_runs(where, "steps", before, {"steps": 3, "seconds": 1.5})
        table.runs = len(before) + len(after)
        wait_until(lambda: len({r["run_id"] for r in executions(bed, where, before)}) >= 3, 240,
                   "steps in flight")
        with bed.lock:
            bed.cluster.restart_control_plane("etcd", "kube-apiserver")
            table.faults = 1
            bed.operator.wait_for_leader(since=time.time())
        # Created after the restart: the operator learns of them only from its watch.
        create_runs(where, "steps", after, {"steps": 3, "seconds": 1.5})
        runs = wait_for_runs(where.custom, where.namespace, before + after, RUNS_TIMEOUT)
        bed.begin_checks()
        table.notes.append(f"watcher re-opened its watch {where.watcher.reconnects} times")
        return common_problems(bed, where, before + after, runs)


# test name -> (row of the table, invariants, scenario)
SCENARIOS: dict[str, tuple[str, str, Callable[[Bed, Row], list[str]]]] = {
    "test_worker_sigkill_at_random_moments": (
        "worker SIGKILL at random moments", "all", worker_sigkill),
    "test_operator_sigkill_during_admission_under_a_limit": (
        "operator SIGKILL during admission under a limit", "all + no Event twice", operator_sigkill),
    "test_node_lost_for_good_second_node_joins": (
        "node lost for good, second node joins", "all + NodeLost, resumed on the new node",
        node_lost_for_good),
    "test_node_lost_and_back": ("node lost and back", "all", node_lost_and_back),
    "test_zombie_worker_is_fenced": (
        "worker paused, new attempt, worker resumed (zombie)", "all + fenced writes refused", zombie),
    "test_postgres_restart_mid_run": (
        "Postgres restart mid-run, steps in flight", "all + no operator crash", postgres_restart),
    "test_workers_connections_terminated": (
        "workers' database connections terminated (no outage)", "all", connections_terminated),
    "test_operator_dies_at_each_commit_point": (
        "operator exits at each commit point (fault points)",
        "all + one pod per attempt, one child per request", commit_points.operator_fault_points),
    "test_apiserver_and_etcd_restart_mid_run": (
        "etcd and apiserver restart mid-run", "all + runs created after it", apiserver_restart),
}


class Matrix:
    """The scenarios selected, each running in a thread of its own."""

    def __init__(self, bed: Bed, selected: list[str]) -> None:
        self.bed = bed
        self.results: dict[str, list[str] | BaseException] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.started = time.monotonic()
        for test in selected:
            title, invariants, _ = SCENARIOS[test]
            row(title, invariants)
            bed.done[SCENARIO_KEYS.get(test, test)] = threading.Event()
        for test in selected:
            thread = threading.Thread(target=self._run, args=(test,), daemon=True, name=test)
            self.threads[test] = thread
            thread.start()

    def _run(self, test: str) -> None:
        title, _, scenario = SCENARIOS[test]
        try:
            self.results[test] = scenario(self.bed, row(title))
        except BaseException as error:  # pytest.fail in a thread raises Failed
            self.results[test] = error
        finally:
            row(title).ended = time.monotonic() - self.started
            self.bed.end_checks()
            self.bed.done[SCENARIO_KEYS.get(test, test)].set()

    def check(self, test: str) -> None:
        title = SCENARIOS[test][0]
        self.threads[test].join(timeout=560)  # within pytest's own timeout of a test
        result = self.results.get(test)
        table = row(title)
        if isinstance(result, BaseException):
            table.result = f"error: {type(result).__name__}"
            raise result
        if result is None:
            table.result = "did not finish"
            pytest.fail(f"scenario {title!r} did not finish")
        table.result = "FAIL" if result else "pass"
        assert not result, f"{title} (seed {table.seed}): " + "; ".join(result)


SCENARIO_KEYS = {"test_postgres_restart_mid_run": "postgres",
                 "test_operator_sigkill_during_admission_under_a_limit": "leader"}


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest, cluster: devcluster_cluster.Cluster,
           operator: InstalledOperator, pg_server: postgres.PostgresServer) -> Iterator[Matrix]:
    selected = [item.name for item in request.session.items
                if item.module is request.module and item.name in SCENARIOS]
    running = Matrix(Bed(cluster, operator, pg_server), selected)
    yield running
    for thread in running.threads.values():
        thread.join(timeout=60)


def test_worker_sigkill_at_random_moments(matrix: Matrix) -> None:
    matrix.check("test_worker_sigkill_at_random_moments")


def test_operator_sigkill_during_admission_under_a_limit(matrix: Matrix) -> None:
    matrix.check("test_operator_sigkill_during_admission_under_a_limit")


def test_node_lost_for_good_second_node_joins(matrix: Matrix) -> None:
    matrix.check("test_node_lost_for_good_second_node_joins")


def test_node_lost_and_back(matrix: Matrix) -> None:
    matrix.check("test_node_lost_and_back")


def test_zombie_worker_is_fenced(matrix: Matrix) -> None:
    matrix.check("test_zombie_worker_is_fenced")


def test_postgres_restart_mid_run(matrix: Matrix) -> None:
    matrix.check("test_postgres_restart_mid_run")


def test_workers_connections_terminated(matrix: Matrix) -> None:
    matrix.check("test_workers_connections_terminated")


def test_apiserver_and_etcd_restart_mid_run(matrix: Matrix) -> None:
    matrix.check("test_apiserver_and_etcd_restart_mid_run")


def test_operator_dies_at_each_commit_point(matrix: Matrix) -> None:
    matrix.check("test_operator_dies_at_each_commit_point")

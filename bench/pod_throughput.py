"""Pod starts: Durakube's operator against the Kubernetes Job controller, in one run.

Starts one test bed (its controller-manager at the bench's client QPS and burst),
Postgres and the operator (its real entry point, at the same QPS and burst, as a
user of its own so that the apiserver can count its requests), cordons the node so
that every pod stays Pending and the two cores measure the control path only, then
measures each side with the same client (the Python kubernetes client, a few
threads, one POST per object):

- throughput: N one-pod Jobs created as fast as the client can, time from the first
  create to the N-th pod seen by a watch; then the same for N TaskRuns; in R rounds a
  side, the two taking turns (figures scatter by a tenth from run to run on two shared
  cores): the table shows each side's median round by controller CPU per pod, and each
  round's CPU per pod is printed above it;
- CPU per started pod: utime+stime of the kube-controller-manager (Jobs) and of the
  operator (TaskRuns) over each phase, until both are quiet again;
- API requests per pod: the controller's own (the apiserver's flow-control counters
  by flow schema: the operator's user falls under `global-default`, the
  controller-manager under `kube-controller-manager` and `kube-system-service-accounts`),
  and all apiserver requests during the phase, with the busiest verbs and resources;
- admission latency: Jobs, then TaskRuns, created at a steady rate R for D seconds;
  from each create's response to its pod's ADDED event on a watch, p50 and p99.

Prints figures and ratios against the Job controller measured in the same run; it
asserts nothing about time.

    .venv/bin/python bench/pod_throughput.py [--runs 500] [--rate 20] [--seconds 60]
                                             [--qps 50] [--burst 100] [--rounds 3]
                                             [--skip-latency]

About 13 minutes with the defaults on 2 cores (`make bench-pods`); a quick check:
`--runs 100 --rate 10 --seconds 10 --rounds 1`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import beds  # bench/beds.py: run as a script, bench/ is on the path
import kubernetes
from kubernetes.watch import watch as kubewatch

from devcluster import cluster, kubeconfigs, ports

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NODE = "node-1"
CLIENT_THREADS = 8
OPERATOR_USER = "durakube-operator"
OPERATOR_METRICS_PORT = ports.free_port()
# The operator's own counters (its /metrics), summed over their labels: what a run cost it.
OPERATOR_COUNTERS = {
    "passes": "durakube_reconcile_duration_seconds_count",
    "pass_seconds": "durakube_reconcile_duration_seconds_sum",
    "statements": "durakube_postgres_query_duration_seconds_count",
    "statement_seconds": "durakube_postgres_query_duration_seconds_sum",
    "api_calls": "durakube_api_request_duration_seconds_count",
    "api_seconds": "durakube_api_request_duration_seconds_sum",
}
# Flow schemas (the apiserver's default set) that each controller's requests fall under.
OPERATOR_FLOWS = ("global-default",)
CONTROLLER_MANAGER_FLOWS = ("kube-controller-manager", "kube-system-service-accounts")
JOB_LABEL = "batch.kubernetes.io/job-name"
RUN_LABEL = "durakube.io/run"
TASK = {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": "echo"},
        "spec": {"image": "ghcr.io/durakube/test-tasks:dev", "entrypoint": "echo", "modules": ["echoing"]}}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def job(name: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}}


def taskrun(name: str) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun", "metadata": {"name": name},
            "spec": {"taskRef": {"name": "echo"}, "payload": {"text": name}}}


@dataclass(frozen=True)
class Peer:
    """One side of the comparison: what it creates and how its pods are labelled."""

    title: str
    collection: str  # the URL path of the objects' collection, with {namespace}
    build: Callable[[str], dict[str, Any]]
    label: str  # the pods' label whose value names their Job or TaskRun
    flows: tuple[str, ...]


JOBS = Peer("Job controller", "/apis/batch/v1/namespaces/{namespace}/jobs", job, JOB_LABEL,
            CONTROLLER_MANAGER_FLOWS)
RUNS = Peer("Durakube", "/apis/durakube.io/v1alpha1/namespaces/{namespace}/taskruns", taskrun, RUN_LABEL,
            OPERATOR_FLOWS)


class Client:
    """The bench's one client (the test bed's admin): raw POSTs and GETs, no models, so
    that both peers cost the client the same per object."""

    def __init__(self, kubeconfig: Path) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = CLIENT_THREADS + 4
        self.api = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(self.api)

    def request(self, method: str, path: str, body: Any = None, accept: str = "application/json") -> bytes:
        headers = {"Accept": accept, "Content-Type": "application/json"}
        request = self.api.param_serialize(method=method, resource_path=path, body=body,
                                           header_params=headers, auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=30)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return bytes(data)

    def create(self, peer: Peer, namespace: str, name: str) -> float:
        """Creates one object; the time its create returned (it exists from then on)."""
        self.request("POST", peer.collection.format(namespace=namespace), peer.build(name))
        return time.monotonic()

    def metrics(self) -> str:
        return self.request("GET", "/metrics", accept="text/plain").decode()


class PodStream:
    """The events of the pods of one namespace that carry a label, as a watch delivers
    them: each goes to `on_event` with the time it arrived (in the stream's thread), and
    `on_end` once the stream ends. The watch is open when the constructor returns, so no
    pod created later is missed; subclasses set their fields before calling it."""

    def __init__(self, client: Client, namespace: str, label: str, timeout: float) -> None:
        self.label = label
        listing = client.core.list_namespaced_pod(namespace, label_selector=label)
        self._response = client.core.list_namespaced_pod(
            namespace, label_selector=label, watch=True, resource_version=listing.metadata.resource_version,
            timeout_seconds=int(timeout), _preload_content=False)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in kubewatch.iter_resp_lines(self._response):
                received = time.monotonic()
                if line:
                    self.on_event(json.loads(line), received)
        except Exception:  # the stream was shut down, or timed out: the phase reads what it saw
            pass
        finally:
            self.on_end()

    def on_event(self, event: dict[str, Any], received: float) -> None:
        raise NotImplementedError

    def on_end(self) -> None:
        pass

    def close(self) -> None:
        self._response.shutdown()
        self._response.release_conn()
        self._thread.join(timeout=5)


class PodWatch(PodStream):
    """The time each pod's first event arrived, keyed by the label's value (its Job or
    TaskRun)."""

    def __init__(self, client: Client, namespace: str, label: str, timeout: float) -> None:
        self.seen: dict[str, float] = {}
        self.expected = 0
        self.enough = threading.Event()
        super().__init__(client, namespace, label, timeout)

    def on_event(self, event: dict[str, Any], received: float) -> None:
        if event["type"] not in ("ADDED", "MODIFIED"):
            return
        key = (event["object"]["metadata"].get("labels") or {}).get(self.label)
        if key and key not in self.seen:
            self.seen[key] = received
            if self.expected and len(self.seen) >= self.expected:
                self.enough.set()

    def on_end(self) -> None:
        self.enough.set()

    def wait(self, count: int, timeout: float) -> None:
        self.expected = count
        if len(self.seen) >= count:
            return
        self.enough.wait(timeout)


def operator_counters() -> dict[str, float]:
    """OPERATOR_COUNTERS as the operator's /metrics has them now."""
    return beds.operator_counters(OPERATOR_METRICS_PORT, OPERATOR_COUNTERS)


@dataclass
class Snapshot:
    """What one phase is measured by: CPU of the processes and the apiserver's counters
    (and the operator's own, in its phases)."""

    cpu: dict[str, float]
    flows: dict[str, float]
    requests: dict[str, float]
    operator: dict[str, float] = field(default_factory=dict)

    @classmethod
    def take(cls, client: Client, pids: dict[str, int], operator: bool = False) -> Snapshot:
        flows: dict[str, float] = {}
        requests: dict[str, float] = {}
        for line in client.metrics().splitlines():
            if line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
                schema = re.search(r'flow_schema="([^"]*)"', line)
                if schema:
                    flows[schema[1]] = flows.get(schema[1], 0) + float(line.rsplit(" ", 1)[1])
            elif line.startswith("apiserver_request_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                resource = "/".join(filter(None, (labels.get("resource"), labels.get("subresource"))))
                key = f"{labels.get('verb')} {resource}"
                requests[key] = requests.get(key, 0) + float(line.rsplit(" ", 1)[1])
        return cls({name: beds.cpu_seconds(pid) for name, pid in pids.items()}, flows, requests,
                   operator_counters() if operator else {})

    def since(self, before: Snapshot) -> Snapshot:
        def minus(after: dict[str, float], earlier: dict[str, float]) -> dict[str, float]:
            return {k: v - earlier.get(k, 0) for k, v in after.items() if v - earlier.get(k, 0)}
        return Snapshot(minus(self.cpu, before.cpu), minus(self.flows, before.flows),
                        minus(self.requests, before.requests), minus(self.operator, before.operator))


@dataclass
class Throughput:
    pods: int
    seconds: float
    used: Snapshot
    top: list[tuple[str, float]] = field(default_factory=list)


def settle(pids: dict[str, int], timeout: float = 60.0) -> float:
    """Waits until the processes in `pids` are quiet (under 3% of a core over a second), so
    that a phase's measure holds all the work it caused and none of the previous one's.
    Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        before = {pid: beds.cpu_seconds(pid) for pid in pids.values()}
        time.sleep(1)
        if all(beds.cpu_seconds(pid) - used < 0.03 for pid, used in before.items()):
            break
    return time.monotonic() - started


def measure_throughput(client: Client, peer: Peer, namespace: str, count: int, pids: dict[str, int],
                       controllers: dict[str, int]) -> Throughput:
    timeout = 60 + count * 0.5
    watch = PodWatch(client, namespace, peer.label, timeout + 30)
    try:
        settle(controllers)
        before = Snapshot.take(client, pids, operator=peer is RUNS)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(CLIENT_THREADS) as pool:
            list(pool.map(lambda i: client.create(peer, namespace, f"p-{i}"), range(count)))
        watch.wait(count, timeout - (time.monotonic() - started))
        seen = sorted(watch.seen.values())
        last = seen[count - 1] if len(seen) >= count else time.monotonic()
        quiet = settle(controllers)
        print(f"  {len(seen)} pods in {last - started:.1f}s; quiet {quiet:.0f}s later", flush=True)
        used = Snapshot.take(client, pids, operator=peer is RUNS).since(before)
    finally:
        watch.close()
    top = sorted(used.requests.items(), key=lambda item: -item[1])[:8]
    return Throughput(len(seen), last - started, used, top)


@dataclass
class Latency:
    """Milliseconds from each create to its pod; a pod never seen counts as infinite, so
    a percentile that falls on one shows as unseen rather than flattering the rest."""

    created: int
    milliseconds: list[float]

    @property
    def seen(self) -> int:
        return sum(1 for value in self.milliseconds if value != math.inf)

    def percentile(self, fraction: float) -> float | None:
        return percentile(self.milliseconds, fraction) if self.milliseconds else None


def measure_latency(client: Client, peer: Peer, namespace: str, rate: float, seconds: float) -> Latency:
    count = int(rate * seconds)
    watch = PodWatch(client, namespace, peer.label, 6 * seconds + 120)
    created: dict[str, float] = {}

    def create(name: str) -> None:
        created[name] = client.create(peer, namespace, name)

    try:
        with concurrent.futures.ThreadPoolExecutor(CLIENT_THREADS) as pool:
            started = time.monotonic()
            for i in range(count):
                # A steady pace: each create is due at its own time, whatever the previous took.
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
                pool.submit(create, f"l-{i}")
        # A controller slower than the rate drains its backlog after the last create.
        watch.wait(count, max(60.0, 5 * seconds))
    finally:
        watch.close()
    return Latency(len(created), [1000 * (watch.seen[name] - at) if name in watch.seen else math.inf
                                  for name, at in created.items()])


def delete_namespace(bed: cluster.Cluster, namespace: str) -> None:
    """Leftover runs would be resynced by the operator during later phases: remove them."""
    result = subprocess.run([str(BIN / "kubectl"), "delete", "namespace", namespace, "--timeout=180s"],
                            env=bed.env(), capture_output=True, text=True, timeout=200)
    if result.returncode:
        print(f"  namespace {namespace} not gone after 180s; going on", flush=True)


def start_operator(bed: cluster.Cluster, state: Path, database_url: str, qps: int, burst: int,
                   limit: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The operator as a user of its own (bound to cluster-admin), not as the admin of
    system:masters: its requests then have a flow schema to themselves in /metrics."""
    credentials = bed.ca.issue(OPERATOR_USER, OPERATOR_USER)
    config = kubeconfigs.write(state / "operator.kubeconfig", bed.server, bed.ca.cert_path, credentials)
    beds.kubectl(bed, "create", "clusterrolebinding", OPERATOR_USER, "--clusterrole=cluster-admin",
            f"--user={OPERATOR_USER}")
    env = {**bed.env(), "KUBECONFIG": str(config), "DURAKUBE_DATABASE_URL": database_url,
           "DURAKUBE_HEALTH_PORT": str(ports.free_port()), "DURAKUBE_WEBHOOK_PORT": "0",
           "DURAKUBE_METRICS_PORT": str(OPERATOR_METRICS_PORT),
           "DURAKUBE_DEFAULT_CONCURRENCY_LIMIT": str(limit),
           "DURAKUBE_API_QPS": str(qps), "DURAKUBE_API_BURST": str(burst),
           "DURAKUBE_EVENT_QPS": str(qps), **(extra_env or {})}
    log = open(state / "operator.log", "wb")
    return subprocess.Popen([str(BIN / "durakube-operator")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_operator(operator: subprocess.Popen[bytes]) -> None:
    os.killpg(operator.pid, signal.SIGTERM)
    try:
        operator.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print("the operator did not stop within 30s of SIGTERM: killed", flush=True)
        os.killpg(operator.pid, signal.SIGKILL)
        operator.wait(timeout=30)


def warm_up(client: Client, bed: cluster.Cluster) -> None:
    """One Job and one TaskRun to their pods: both controllers are watching and the
    operator's first-run paths (Postgres pool, namespace Secret) are behind us."""
    beds.kubectl(bed, "create", "namespace", "warm-up")
    beds.kubectl(bed, "apply", "-n", "warm-up", "-f", "-", stdin=json.dumps(TASK))
    for peer in (JOBS, RUNS):
        watch = PodWatch(client, "warm-up", peer.label, 150)
        try:
            client.create(peer, "warm-up", "warm-up")
            watch.wait(1, 120)
            if not watch.seen:
                raise SystemExit(f"warm-up: no pod from the {peer.title} after 120s")
        finally:
            watch.close()
    delete_namespace(bed, "warm-up")


def cpu_per_pod(result: Throughput) -> float:
    """Milliseconds of the controller's CPU per pod in one round."""
    return 1000 * result.used.cpu.get("controller", 0) / max(1, result.pods)


def median_round(results: list[Throughput]) -> Throughput:
    """The round whose controller CPU per pod is the median of the rounds': its figures are
    reported together, as one round measured them."""
    return sorted(results, key=cpu_per_pod)[(len(results) - 1) // 2]


def print_rounds(args: argparse.Namespace, rounds: dict[str, list[Throughput]]) -> None:
    """Each round's CPU per pod, so that the scatter behind the median shows."""
    if args.rounds > 1:
        print("controller CPU ms per pod by round (the table shows the median round of each side): "
              + "; ".join(f"{title} " + ", ".join(f"{cpu_per_pod(result):.2f}" for result in rounds[key])
                          for key, title in (("runs", "Durakube"), ("jobs", "Job controller"))))


def row(figure: str, ours: float | None, theirs: float | None, unit: str = "{:.2f}") -> str:
    """One line of the table; the ratio is Durakube's figure over the Job controller's."""
    def shown(value: float | None) -> str:
        return "-" if value is None else unit.format(value) if math.isfinite(value) else "unseen"
    measured = ours is not None and theirs and math.isfinite(ours) and math.isfinite(theirs)
    ratio = f"{ours / theirs:.2f}x" if measured and ours is not None and theirs else "-"
    return f"{figure:<52} {shown(ours):>12} {shown(theirs):>15} {ratio:>8}"


def report(args: argparse.Namespace, throughput: dict[str, Throughput], latency: dict[str, Latency]) -> None:
    ours, theirs = throughput["runs"], throughput["jobs"]

    def flows(result: Throughput, peer: Peer) -> float:
        return sum(result.used.flows.get(schema, 0) for schema in peer.flows)

    print(f"\n{'figure':<52} {'Durakube':>12} {'Job controller':>15} {'ratio':>8}")
    print(row(f"pods created (of {args.runs})", ours.pods, theirs.pods, "{:.0f}"))
    print(row("pods/s, first create to N-th pod (higher is better)",
              ours.pods / ours.seconds, theirs.pods / theirs.seconds, "{:.1f}"))
    print(row("seconds, first create to N-th pod", ours.seconds, theirs.seconds))
    print(row("controller CPU ms per pod (operator / controller-mgr)",
              1000 * ours.used.cpu.get("controller", 0) / args.runs,
              1000 * theirs.used.cpu.get("controller", 0) / args.runs))
    print(row("kube-apiserver CPU ms per pod", 1000 * ours.used.cpu.get("apiserver", 0) / args.runs,
              1000 * theirs.used.cpu.get("apiserver", 0) / args.runs))
    print(row("controller's own API requests per pod", flows(ours, RUNS) / args.runs,
              flows(theirs, JOBS) / args.runs))
    print(row("all apiserver requests per pod during the phase",
              sum(ours.used.requests.values()) / args.runs, sum(theirs.used.requests.values()) / args.runs))
    if latency:
        for name, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            print(row(f"{name} ms, created to pod seen, at {args.rate:g}/s",
                      latency["runs"].percentile(fraction), latency["jobs"].percentile(fraction), "{:.0f}"))
        print(row(f"pods seen of {latency['jobs'].created} created in {args.seconds:g}s",
                  latency["runs"].seen, latency["jobs"].seen, "{:.0f}"))
    cost = ours.used.operator
    if cost.get("passes"):
        print(f"\nthe operator per run: {cost['passes'] / args.runs:.2f} reconcile passes of "
              f"{1000 * cost.get('pass_seconds', 0) / cost['passes']:.1f} ms on average; "
              f"{cost.get('statements', 0) / args.runs:.1f} Postgres statements "
              f"({1000 * cost.get('statement_seconds', 0) / max(1, cost.get('statements', 0)):.2f} ms each); "
              f"{cost.get('api_calls', 0) / args.runs:.2f} API calls "
              f"({1000 * cost.get('api_seconds', 0) / max(1, cost.get('api_calls', 0)):.1f} ms each)")
    for title, result in (("TaskRuns", ours), ("Jobs", theirs)):
        print(f"\nbusiest apiserver requests per pod during the {title} phase (all clients):")
        print("  " + ", ".join(f"{key} {count / args.runs:.2f}" for key, count in result.top))
    print("\nrequests by flow schema per pod: TaskRuns "
          + ", ".join(f"{k} {v / args.runs:.2f}" for k, v in sorted(ours.used.flows.items()))
          + "; Jobs " + ", ".join(f"{k} {v / args.runs:.2f}" for k, v in sorted(theirs.used.flows.items())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="Jobs and TaskRuns in the throughput phases")
    parser.add_argument("--rate", type=float, default=20.0, help="creates per second in the latency phases")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each latency phase")
    parser.add_argument("--qps", type=int, default=50, help="client QPS of both controllers")
    parser.add_argument("--burst", type=int, default=100, help="client burst of both controllers")
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput rounds a side, Jobs and TaskRuns taking turns (the median is shown)")
    parser.add_argument("--skip-latency", action="store_true", help="measure throughput only")
    args = parser.parse_args()
    limits = (f"--kube-api-qps={args.qps}", f"--kube-api-burst={args.burst}")
    # Stopped from outside (timeout, kill): unwind so `finally` stops the test bed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
    print(f"tree {described}; N={args.runs}, rate {args.rate:g}/s for {args.seconds:g}s, "
          f"{CLIENT_THREADS} client threads")
    print(f"controller-manager: {' '.join(limits)} (the Job controller's Events go through "
          f"its one client); operator: DURAKUBE_API_QPS={args.qps} DURAKUBE_API_BURST={args.burst}, "
          f"its Events through a client of their own (as kube-scheduler's) at "
          f"DURAKUBE_EVENT_QPS={args.qps}")
    with beds.started(controller_manager_args=limits) as (bed, database, state):
        operator = None
        try:
            limit = args.runs + int(args.rate * args.seconds) + 10
            operator = start_operator(bed, state, database.create_database("durakube"), args.qps, args.burst,
                                      limit)
            client = Client(bed.kubeconfig)
            beds.kubectl(bed, "cordon", NODE)
            warm_up(client, bed)
            controllers = {"operator": operator.pid,
                           "controller-manager": bed.components["kube-controller-manager"].process.pid}
            rounds: dict[str, list[Throughput]] = {"jobs": [], "runs": []}
            for round_number in range(1, args.rounds + 1):
                for key, peer, pid in (("jobs", JOBS, controllers["controller-manager"]),
                                       ("runs", RUNS, controllers["operator"])):
                    namespace = f"throughput-{key}-{round_number}"
                    beds.kubectl(bed, "create", "namespace", namespace)
                    if peer is RUNS:
                        beds.kubectl(bed, "apply", "-n", namespace, "-f", "-", stdin=json.dumps(TASK))
                    pids = {"controller": pid, "apiserver": bed.components["kube-apiserver"].process.pid}
                    print(f"{peer.title}: creating {args.runs} (round {round_number} of {args.rounds}) ...",
                          flush=True)
                    rounds[key].append(measure_throughput(client, peer, namespace, args.runs, pids,
                                                          controllers))
                    delete_namespace(bed, namespace)
            throughput = {key: median_round(results) for key, results in rounds.items()}
            print_rounds(args, rounds)
            latency: dict[str, Latency] = {}
            if not args.skip_latency:
                for key, peer in (("jobs", JOBS), ("runs", RUNS)):
                    namespace = f"latency-{key}"
                    beds.kubectl(bed, "create", "namespace", namespace)
                    if peer is RUNS:
                        beds.kubectl(bed, "apply", "-n", namespace, "-f", "-", stdin=json.dumps(TASK))
                    settle(controllers)
                    print(f"{peer.title}: {args.rate:g}/s for {args.seconds:g}s ...", flush=True)
                    latency[key] = measure_latency(client, peer, namespace, args.rate, args.seconds)
                    delete_namespace(bed, namespace)
            report(args, throughput, latency)
            return 0
        finally:
            if operator is not None:
                stop_operator(operator)


if __name__ == "__main__":
    sys.exit(main())

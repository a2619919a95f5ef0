"""Helpers of the end-to-end tests: polling, kubectl and helm, the operator as installed."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import kubernetes
import pytest
import yaml

from devcluster import build
from devcluster import cluster as devcluster_cluster
from durakube.store import pools, steps
from durakube_operator import faults

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
T = TypeVar("T")
# Namespaces "faults-<point>-..." are where the operator's fault points are armed.
FAULT_NAMESPACE_PREFIX = "faults-"


def wait_for(check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2,
             what: str = "condition") -> T:
    """Polls `check` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")


def kubectl(cluster: devcluster_cluster.Cluster, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([KUBECTL, *args], env=cluster.env(), input=input,
                            capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


class InstalledOperator:
    """The operator as users install it: `helm install` of charts/durakube on the test bed.

    Two replicas (the chart's default) run on the process node from the operator image,
    as the chart's ServiceAccount, so every end-to-end test exercises the chart's RBAC,
    the leader election and the probes. `kill()` SIGKILLs the leading replica's
    container process, as a crash or an OOM kill would; `start()` waits until a live
    replica holds the Lease again (the standby, or the killed one restarted).
    """

    NAMESPACE = "durakube-system"
    RELEASE = "durakube"

    def __init__(self, cluster: devcluster_cluster.Cluster, database_url: str, folder: Path, *,
                 operator_url: str | None = None, worker_url: str | None = None,
                 otlp_endpoint: str | None = None) -> None:
        # database_url is the schema owner's: the tests read Postgres with it.
        self.cluster, self.database_url, self.folder = cluster, database_url, folder
        self.operator_url, self.worker_url = operator_url, worker_url
        self.otlp_endpoint = otlp_endpoint
        self.webhook_port = _free_port()
        self.metrics_port = _free_port()
        self.health_port = _free_port()
        self.killed_at: float | None = None
        self.failovers: list[float] = []

    def values(self) -> dict[str, Any]:
        return {
            "database": {
                "url": self.operator_url or self.database_url,
                **({"migration": {"url": self.database_url}} if self.operator_url else {}),
                **({"worker": {"url": self.worker_url}} if self.worker_url else {}),
            },
            # The process node's pods share the host's network: ports of their own.
            "ports": {"metrics": self.metrics_port, "health": self.health_port,
                      "webhook": self.webhook_port},
            # Small key rings: the suite's runs make and retire many of them.
            "operator": {"resyncSeconds": 5, "keyRingSize": 8},
            # Traces go to the tests' collector, for runs created inside a sampled trace only
            # (sample ratio 0 for the rest): the other tests' pods never start a tracer.
            **({"tracing": {"otlpEndpoint": self.otlp_endpoint, "sampleRatio": 0}}
               if self.otlp_endpoint else {}),
            # Shorter than the chart's 15/10/2 s, so that the tests that kill the leader
            # wait less for a standby; still retry < renew deadline < lease.
            "leaderElection": {"leaseDurationSeconds": 8, "renewDeadlineSeconds": 5,
                               "retryPeriodSeconds": 1},
            # Each fault point ends the process only in namespaces named after it
            # (tests/chaos/test_operator_fault_points.py): no other test meets them.
            "extraEnv": [{"name": "DURAKUBE_FAULT_POINTS",
                          "value": ",".join(f"{point}@{FAULT_NAMESPACE_PREFIX}{point}-"
                                            for point in faults.POINTS)}],
        }

    def install(self, *extra: str) -> None:
        values = self.folder / "operator-values.yaml"
        values.write_text(yaml.safe_dump(self.values()))
        helm(self.cluster, "upgrade", "--install", self.RELEASE, str(ROOT / "charts" / "durakube"),
             "--namespace", self.NAMESPACE, "--create-namespace", "--values", str(values),
             "--wait", "--timeout", "5m",
             # The CRDs may have been installed by another release of the session's tests.
             "--take-ownership", *extra)
        self.wait_for_leader()

    def uninstall(self) -> None:
        helm(self.cluster, "uninstall", self.RELEASE, "--namespace", self.NAMESPACE, "--wait",
             check=False)

    def lease(self) -> dict[str, Any]:
        out = kubectl(self.cluster, "get", "lease", self.RELEASE, "-n", self.NAMESPACE, "-o", "json",
                      check=False)
        return dict(json.loads(out.stdout)) if out.returncode == 0 else {}

    def leader_pod(self) -> str | None:
        """The pod whose replica holds the Lease (its identity is the pod name and a suffix)."""
        holder = (self.lease().get("spec") or {}).get("holderIdentity") or ""
        return holder.rsplit("_", 1)[0] if holder else None

    def wait_for_leader(self, since: float | None = None, timeout: float = 120) -> str:
        """Waits until a replica renewed the Lease after `since` (a time.time()); its pod."""
        def renewed() -> str | None:
            spec = self.lease().get("spec") or {}
            stamp = spec.get("renewTime")
            if not stamp or not spec.get("holderIdentity"):
                return None
            at = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            return self.leader_pod() if since is None or at > since else None

        return wait_for(renewed, timeout, interval=0.1, what="a replica leading the operator")

    def kill(self) -> str:
        """SIGKILLs the leader's container process (no clean-up runs); returns its pod."""
        pod = self.leader_pod()
        assert pod, "no replica leads"
        pids = container_pids("DURAKUBE_POD_NAME", pod)
        assert pids, f"no process of pod {pod} found"
        self.killed_at = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pod

    def start(self) -> None:
        """After `kill()`: waits until a live replica leads; records the failover time."""
        assert self.killed_at is not None
        self.wait_for_leader(since=self.killed_at)
        self.failovers.append(time.time() - self.killed_at)
        self.killed_at = None

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}"

    def log_tail(self, lines: int = 60) -> str:
        out = kubectl(self.cluster, "logs", "-n", self.NAMESPACE, "-l",
                      "app.kubernetes.io/name=durakube", "--prefix", f"--tail={lines}",
                      "--all-containers", check=False)
        return out.stdout + out.stderr


def container_pids(variable: str, value: str) -> list[int]:
    """Processes on this machine whose environment sets `variable` to `value`: the
    process node runs each container as local processes with the container's env."""
    wanted = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in environ:
            found.append(int(entry.name))
    return found


def helm(cluster: devcluster_cluster.Cluster, *args: str, check: bool = True,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The helm that `make helm` builds, against the test bed as its admin, with helm's
    own folders in the test bed's state folder."""
    try:
        binary = build.binary("helm", "helm")
    except FileNotFoundError as missing:
        pytest.skip(f"these tests need the helm binary: {missing}")
    home = cluster.state_dir / "helm"
    env = {**cluster.env(), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    result = subprocess.run([str(binary), *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def _free_port() -> int:
    from devcluster import ports

    return ports.free_port()


def load_yaml(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def get_taskrun(custom: kubernetes.client.CustomObjectsApi, namespace: str,
                name: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                    "taskruns", name))


def wait_for_phase(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str,
                   phases: set[str], timeout: float = 90.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        run = get_taskrun(custom, namespace, name)
        return run if (run.get("status") or {}).get("phase") in phases else None

    return wait_for(check, timeout, what=f"TaskRun {namespace}/{name} in {sorted(phases)}")


def create_examples_database_secret(core: kubernetes.client.CoreV1Api, namespace: str,
                                    database_url: str) -> None:
    """The Secret the examples' Tasks read their own database's URL from (they keep their
    results there: the workers' login to Durakube's database can create nothing)."""
    core.create_namespaced_secret(namespace, kubernetes.client.V1Secret(
        metadata={"name": "examples-database"}, string_data={"url": database_url}))


# TaskRuns, their pods and their side effects, as the end-to-end tests make and read them.


def run_manifest(name: str, task: str, payload: dict[str, Any] | None = None,
                 **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun", "metadata": {"name": name},
            "spec": {"taskRef": {"name": task}, "payload": payload or {}, **spec}}


def create(custom: kubernetes.client.CustomObjectsApi, namespace: str,
           *objects: dict[str, Any]) -> None:
    for body in objects:
        plural = {"Task": "tasks", "TaskRun": "taskruns", "TaskQueue": "taskqueues"}[body["kind"]]
        custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, plural, body)


def attempt_pods(core: kubernetes.client.CoreV1Api, namespace: str) -> list[Any]:
    return list(core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/managed-by=durakube").items)


def query(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The rows of one statement against the test bed's Postgres, as dicts."""
    async def read() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(database_url)
        try:
            return [dict(row) for row in await connection.fetch(sql, *args)]
        finally:
            await connection.close()

    return asyncio.run(read())


def effects(database_url: str, run_id: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT step, count FROM public.test_effects WHERE run_id = $1", run_id)
        finally:
            await connection.close()
        return {row["step"]: row["count"] for row in rows}

    return asyncio.run(read())


def event_reasons(core: kubernetes.client.CoreV1Api, namespace: str, name: str,
                  *expected: str, timeout: float = 15.0) -> list[str]:
    """The reasons of the Events on `name`, once those `expected` are among them (Events go
    out a moment after the status they describe; the reasons as they are after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        reasons = [event.reason for event in core.list_namespaced_event(namespace).items
                   if event.involved_object.name == name]
        if set(expected) <= set(reasons) or time.monotonic() > deadline:
            return reasons
        time.sleep(0.2)


def read_steps(database_url: str, run_id: str) -> list[steps.Step]:
    """The steps Postgres recorded for the run, in order."""
    async def read() -> list[steps.Step]:
        pool = await pools.connect(database_url, max_size=1)
        try:
            return await steps.load_steps(pool, run_id)
        finally:
            await pool.close()

    return asyncio.run(read())

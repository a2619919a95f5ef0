"""Helpers of the end-to-end tests: polling, kubectl, the operator as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
import yaml

from devcluster import cluster as devcluster_cluster

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
T = TypeVar("T")


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


class OperatorProcess:
    """The operator as a child process that tests may kill and start again."""

    def __init__(self, cluster: devcluster_cluster.Cluster, database_url: str, log: Path) -> None:
        self.webhook_port = _free_port()
        self.metrics_port = _free_port()
        self.env = {**cluster.env(), "DURAKUBE_DATABASE_URL": database_url,
                    "DURAKUBE_METRICS_PORT": str(self.metrics_port),
                    "DURAKUBE_HEALTH_PORT": str(_free_port()),
                    "DURAKUBE_WEBHOOK_PORT": str(self.webhook_port),
                    "DURAKUBE_RESYNC_SECONDS": "5",
                    # One identity across restarts, as a pod's name: a restarted operator
                    # takes its own Lease back at once.
                    "DURAKUBE_POD_NAME": f"operator-{os.getpid()}"}
        self.database_url = database_url
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "durakube-operator")], env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL: no clean-up handler runs, as in a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}"

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


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

"""Helpers for the process node's end-to-end tests: create pods from plain dicts
and poll them (short intervals, generous deadlines) as JSON dicts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

Json = dict[str, Any]


class Pods:
    """Pods of one test namespace, read and written as plain API dicts."""

    def __init__(self, kube: kubernetes.client.ApiClient, namespace: str) -> None:
        self.core = kubernetes.client.CoreV1Api(kube)
        self.namespace = namespace

    def create(self, name: str, containers: list[Json], *, labels: dict[str, str] | None = None,
               **spec: Any) -> Json:
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": labels or {}},
                "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
                         "containers": containers, **spec}}
        self.core.create_namespaced_pod(self.namespace, body)
        return body

    def read(self, name: str) -> Json | None:
        try:
            response = self.core.read_namespaced_pod(name, self.namespace,
                                                     _preload_content=False)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(json.loads(response.data))

    def wait_for(self, name: str, predicate: Callable[[Json | None], bool],
                 timeout: float = 60, what: str = "condition") -> Json | None:
        deadline = time.monotonic() + timeout
        pod = None
        while time.monotonic() < deadline:
            pod = self.read(name)
            if predicate(pod):
                return pod
            time.sleep(0.2)
        raise AssertionError(f"pod {name}: no {what} after {timeout}s; last seen:\n"
                             f"{json.dumps((pod or {}).get('status'), indent=1)}")

    def wait_for_phase(self, name: str, *phases: str, timeout: float = 60) -> Json:
        pod = self.wait_for(name, lambda p: p is not None and p["status"].get("phase") in phases,
                            timeout, f"phase in {phases}")
        assert pod is not None
        return pod

    def wait_for_gone(self, name: str, timeout: float = 60) -> None:
        self.wait_for(name, lambda p: p is None, timeout, "deletion")


def container_status(pod: Json, name: str | None = None, *, init: bool = False) -> Json:
    key = "initContainerStatuses" if init else "containerStatuses"
    statuses = pod["status"].get(key, [])
    return next(s for s in statuses if name is None or s["name"] == name)


def waiting_reason(pod: Json | None) -> str | None:
    """The waiting reason of the pod's first container, None when not waiting."""
    if pod is None or not pod["status"].get("containerStatuses"):
        return None
    return container_status(pod)["state"].get("waiting", {}).get("reason")


def shell(name: str, script: str, **extra: Any) -> Json:
    """A container that runs `script` with the host's sh."""
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


@pytest.fixture
def pods(kube: kubernetes.client.ApiClient, namespace: str) -> Pods:
    return Pods(kube, namespace)

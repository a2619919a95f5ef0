"""Fixtures and helpers of the client's end-to-end tests (imported by its test modules).

The client runs in the test process against the real test bed and the operator's
own Postgres; Task objects come from `durakube.client.manifests`, i.e. from the
@task decorators of the modules the worker image holds.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from helpers import InstalledOperator

from devcluster import cluster as devcluster_cluster
from durakube.client import AsyncClient, Client, manifests

ROOT = Path(__file__).resolve().parents[3]
TASKS_DIR = ROOT / "tests" / "e2e" / "tasks"
TEST_IMAGE = "ghcr.io/durakube/test-tasks:dev"
EXAMPLES_IMAGE = "ghcr.io/durakube/examples:0.1.0"

# The task modules are imported here too, so tests can pass the task functions.
for folder in (TASKS_DIR, ROOT / "examples"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
echoing = importlib.import_module("echoing")
process_document = importlib.import_module("process_document")


def install_tasks(custom: kubernetes.client.CustomObjectsApi, namespace: str, module: str,
                  image: str = TEST_IMAGE, **overrides: Any) -> list[dict[str, Any]]:
    """Creates the Task objects of every @task in `module`, as `durakube manifests` prints them."""
    bodies = manifests.build_task_manifests(module, image=image)
    for body in bodies:
        body["spec"].update(overrides)
        custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "tasks", body)
    return bodies


def install_task(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str,
                 entrypoint: str, module: str, **spec: Any) -> None:
    body = {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": TEST_IMAGE, "entrypoint": entrypoint, "modules": [module], **spec}}
    custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "tasks", body)


def install_queue(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str,
                  limit: int) -> None:
    body = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskQueue", "metadata": {"name": name},
            "spec": {"concurrencyLimit": limit}}
    custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskqueues", body)


@pytest.fixture
def client(cluster: devcluster_cluster.Cluster, namespace: str,
           operator: InstalledOperator) -> Iterator[Client]:
    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace,
                database_url=operator.database_url) as made:
        yield made


@pytest.fixture
async def aclient(cluster: devcluster_cluster.Cluster, namespace: str,
                  operator: InstalledOperator) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(kubeconfig=cluster.kubeconfig, namespace=namespace,
                           database_url=operator.database_url) as made:
        yield made

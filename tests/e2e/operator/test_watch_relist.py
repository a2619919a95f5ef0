"""The operator's re-list (`sweeping`) against the real API server: the metadata-only
list reads every TaskRun, page by page, and a TaskRun deleted while the operator's
cache still held it is found and handled as its deletion event would have been."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes
import pytest
from helpers import create, run_manifest
from kubernetes.aio import client as kubeclient
from kubernetes.aio import config as kubeconfig
from test_taskrun_lifecycle import task_manifest

from devcluster import cluster as devcluster_cluster
from durakube_operator import caching, kubeapi, sweeping

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def cancelled_runs(custom: kubernetes.client.CustomObjectsApi, namespace: str,
                   count: int) -> list[dict[str, Any]]:
    """TaskRuns that end at once, without a pod (created cancelled)."""
    names = [f"relisted-{i}" for i in range(count)]
    create(custom, namespace, task_manifest("relisted", "nap"),
           *[run_manifest(name, "relisted", cancel=True) for name in names])
    return [custom.get_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns", name)
            for name in names]


async def api_of(cluster: devcluster_cluster.Cluster) -> kubeapi.KubeApi:
    configuration = kubeclient.Configuration()
    await kubeconfig.load_kube_config(config_file=str(cluster.kubeconfig),
                                      client_configuration=configuration)
    return kubeapi.KubeApi(kubeclient.ApiClient(configuration), qps=100)


def test_the_metadata_list_reads_every_taskrun_page_by_page(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = cancelled_runs(custom, namespace, 5)
    monkeypatch.setattr(kubeapi, "LIST_PAGE", 2)

    async def listed() -> tuple[list[kubeapi.ObjectKey], list[kubeapi.ObjectKey]]:
        api = await api_of(cluster)
        try:
            return (await api.list_metadata("taskruns", namespace),
                    await api.list_metadata("pods", namespace, "app.kubernetes.io/managed-by=durakube"))
        finally:
            await api.close()

    taskruns, pods = asyncio.run(listed())
    assert sorted((key.name, key.uid) for key in taskruns) == sorted(
        (run["metadata"]["name"], run["metadata"]["uid"]) for run in runs)
    assert all(key.namespace == namespace and key.resource_version.isdigit() for key in taskruns)
    assert pods == []


def test_a_taskrun_deleted_unseen_is_found_by_the_relist(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi) -> None:
    kept, gone = cancelled_runs(custom, namespace, 2)
    custom.delete_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskruns",
                                           gone["metadata"]["name"])

    async def swept() -> tuple[int, list[str], list[tuple[str, str]]]:
        api = await api_of(cluster)
        reads = caching.CachedReads(api, sweep_seconds=300.0)
        reads.taskruns.record(kept)
        reads.taskruns.record(gone)  # held as if its deletion event never came
        deleted: list[str] = []
        changed: list[tuple[str, str]] = []

        async def on_deleted(body: dict[str, Any]) -> None:
            deleted.append(body["metadata"]["uid"])

        sweep = sweeping.SweepLoop(api, reads, (namespace,), 300.0,
                                   changed=lambda ns, name: changed.append((ns, name)), deleted=on_deleted)
        try:
            return await sweep.sweep_taskruns(), deleted, changed
        finally:
            await api.close()

    repairs, deleted, changed = asyncio.run(swept())
    # `kept` may have been patched since it was read (its Canceled status): then it is
    # looked at again, never taken for deleted.
    assert deleted == [gone["metadata"]["uid"]]
    assert changed in ([], [(namespace, kept["metadata"]["name"])]) and repairs == 1 + len(changed)

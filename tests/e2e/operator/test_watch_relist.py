"""The operator's re-list (`sweeping`) and its own pod watch (`watching`) against the
real API server: the metadata-only list reads every TaskRun, page by page, and a
TaskRun deleted while the operator's cache still held it is found and handled as its
deletion event would have been; the pod watch hands over an attempt pod's creation,
changes and deletion, and takes the API server's "too old" for a new list."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from helpers import create, run_manifest
from kubernetes.aio import client as kubeclient
from kubernetes.aio import config as kubeconfig
from test_taskrun_lifecycle import task_manifest

from devcluster import cluster as devcluster_cluster
from durakube_operator import caching, kubeapi, sweeping, watching

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


MANAGED = "app.kubernetes.io/managed-by=durakube"


def unschedulable_pod(name: str) -> dict[str, Any]:
    """An attempt pod (by its label) that no node takes: it stays Pending, and the
    scheduler's Unschedulable condition is one change the watch must bring."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "durakube"}},
            "spec": {"nodeSelector": {"durakube.io/test": "no-such-node"},
                     "containers": [{"name": "main", "image": "ghcr.io/durakube/test-tasks:dev"}]}}


def test_the_pod_watch_brings_an_attempt_pods_life_and_lists_again_when_its_version_is_too_old(
        cluster: devcluster_cluster.Cluster, namespace: str,
        core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_pod(namespace, unschedulable_pod("listed"))

    async def watched() -> tuple[list[tuple[str, str, bool]], bool]:
        api = await api_of(cluster)
        held = caching.ObjectCache()
        seen: list[tuple[str, str, bool]] = []

        def changed(body: dict[str, Any], deleted: bool) -> None:
            meta = body["metadata"]
            conditions = {condition["type"]: condition["status"]
                          for condition in (body.get("status") or {}).get("conditions") or []}
            seen.append((meta["name"], conditions.get("PodScheduled", ""), deleted))
            held.forget(meta["namespace"], meta["name"]) if deleted else held.record(body)

        watch = watching.PodWatch(api, held, (namespace,), MANAGED, changed)
        task = asyncio.create_task(watch.run())
        try:
            await until(lambda: ("listed", "False", False) in seen)
            await asyncio.to_thread(core.create_namespaced_pod, namespace, unschedulable_pod("watched"))
            await until(lambda: ("watched", "False", False) in seen)
            await asyncio.to_thread(core.delete_namespaced_pod, "watched", namespace, grace_period_seconds=0)
            await until(lambda: any(name == "watched" and deleted for name, _, deleted in seen))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A version long compacted away: the API server's answer is "too old" (410).
        try:
            async for _ in watch.stream(namespace, "1"):
                pass
        except watching.Expired:
            expired = True
        else:
            expired = False
        finally:
            await api.close()
        return seen, expired

    seen, expired = asyncio.run(watched())
    # The listed pod first (as created, or already marked unschedulable); the watched one
    # as created, then its Unschedulable condition, then its deletion.
    watched_pod = [(condition, deleted) for name, condition, deleted in seen if name == "watched"]
    assert watched_pod[0] == ("", False) and watched_pod[-1][1]
    assert ("False", False) in watched_pod
    assert seen[0][0] == "listed"
    assert expired


async def until(done: Callable[[], bool], seconds: float = 30.0) -> None:
    for _ in range(int(seconds * 20)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the pod watch did not bring it")

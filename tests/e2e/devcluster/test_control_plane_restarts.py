"""The test bed restarts its control plane in place: etcd and the apiserver come back on
the same ports with the same certificates and data, and everything resumes.

Chaos tests restart the apiserver under a running operator (tests/chaos/); this is the
promise they build on: clients keep their kubeconfigs, objects and resource versions
survive, watches can be opened again, and the node and the controllers carry on.
"""

from __future__ import annotations

import kubernetes
import pytest
from conftest import Pods, shell

from devcluster import cluster as devcluster_cluster

pytestmark = pytest.mark.e2e


def test_etcd_and_the_apiserver_restart_in_place(cluster: devcluster_cluster.Cluster,
                                                 pods: Pods) -> None:
    core = pods.core
    core.create_namespaced_config_map(pods.namespace, {"metadata": {"name": "before"},
                                                       "data": {"n": "1"}})
    since = core.read_namespaced_config_map("before", pods.namespace).metadata.resource_version
    server, port = cluster.server, cluster.api_port
    etcd_pid = cluster.components["etcd"].process.pid

    # Both killed as a crash would (the chaos matrix restarts them in order).
    cluster.restart_control_plane("etcd", "kube-apiserver", crash=True)

    assert (cluster.server, cluster.api_port) == (server, port)
    assert cluster.components["etcd"].process.pid != etcd_pid
    # The same client, with the same credentials, reads what was written before, and
    # etcd's revisions go on from where they were.
    kept = core.read_namespaced_config_map("before", pods.namespace)
    assert kept.data == {"n": "1"}
    assert int(kept.metadata.resource_version) == int(since)
    # A watch from a resource version of after the restarts sees the next change (one from
    # before them is answered 410 Gone by the new apiserver's cache: clients re-list, as
    # kopf does).
    listed = core.list_namespaced_config_map(pods.namespace).metadata.resource_version
    core.patch_namespaced_config_map("before", pods.namespace, {"data": {"n": "2"}})
    watch = kubernetes.watch.Watch()
    seen = []
    for event in watch.stream(core.list_namespaced_config_map, pods.namespace,
                              resource_version=listed, timeout_seconds=20):
        seen.append((event["type"], event["object"].data))
        if event["object"].data == {"n": "2"}:
            watch.stop()
    assert ("MODIFIED", {"n": "2"}) in seen
    # The scheduler, the controllers and the node carry on: a new pod runs to its end.
    pods.create("after", [shell("main", "exit 0")])
    pods.wait_for_phase("after", "Succeeded", timeout=120)

"""More process nodes for a test, and their deaths: a node's agent SIGKILLed is a node lost.

`extra_nodes` starts nodes on the session's test bed and, at the end, stops them,
clears what their killed containers left in the node's cgroups, and deletes their
Node objects, so the next test finds only the bed's own node.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import kubernetes
from helpers import wait_for

from devcluster import cluster as devcluster_cluster
from devcluster.node import cgroups


def node_ready(core: kubernetes.client.CoreV1Api, name: str) -> str:
    """The status of the node's Ready condition ("True", "False", "Unknown"), or "Missing"."""
    try:
        node = core.read_node(name)
    except Exception:  # not there, or the apiserver is restarting: not known to be ready
        return "Missing"
    return next((c.status for c in node.status.conditions or [] if c.type == "Ready"),
                "Missing")


def kill_agent(component: devcluster_cluster.Component) -> None:
    """SIGKILLs the node's agent: it stops renewing its Lease, as a lost node does."""
    os.kill(component.process.pid, signal.SIGKILL)
    component.process.wait()


@contextlib.contextmanager
def extra_nodes(cluster: devcluster_cluster.Cluster, core: kubernetes.client.CoreV1Api
                ) -> Iterator[Callable[..., devcluster_cluster.Component]]:
    """Yields `start(name, labels=None, taints=())`, which starts a node and waits until
    it is Ready (see `Cluster.start_node`)."""
    names: list[str] = []

    def start(name: str, labels: dict[str, str] | None = None,
              taints: tuple[str, ...] = ()) -> devcluster_cluster.Component:
        component = cluster.start_node(name, labels=labels, taints=taints)
        names.append(name)
        wait_for(lambda: node_ready(core, name) == "True", timeout=60, what=f"node {name} Ready")
        return component

    try:
        yield start
    finally:
        for name in set(names):
            component = cluster.components.pop(f"node-{name}", None)
            if component is not None:
                component.stop()
            # A SIGKILLed agent takes its containers' main processes along (parent-death
            # signal), not their children: clear what is left in the node's cgroups.
            state_dir = cluster.state_dir / "nodes" / name
            cgroups.remove_stale_cgroups(cgroups.parent_name(name, state_dir),
                                         remove_parent=True)
            with contextlib.suppress(kubernetes.client.ApiException):
                core.delete_node(name)

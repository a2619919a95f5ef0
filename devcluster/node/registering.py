"""The Node object and its heartbeats: registration, the Lease in
kube-node-lease, and periodic node status.

`register_node` creates the Node (or adopts the one a previous agent of the same
name left) and reports its status; `keep_heartbeat` renews the Lease every
`lease_renew_interval` and re-posts node status every `node_status_interval`.
When the agent dies, the Lease simply stops being renewed: the real
node-lifecycle controller then marks the node NotReady and evicts its pods.

Called by `agent`; it never deletes the Node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from devcluster.node import apicalls, settings, times

Json = dict[str, Any]
logger = logging.getLogger(__name__)

KUBELET_VERSION = "v1.37.2"
LEASE_NAMESPACE = "kube-node-lease"
MAX_PODS = 110


def _architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _read_text(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def measure_capacity(state_dir: Path) -> dict[str, str]:
    """cpu, memory, pods and ephemeral-storage of this machine."""
    memory_kib = 0
    for line in _read_text("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory_kib}Ki",
        "pods": str(MAX_PODS),
        "ephemeral-storage": str(shutil.disk_usage(state_dir).total),
    }


def _os_image() -> str:
    for line in _read_text("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def build_node_status(config: settings.Settings, serving_port: int,
                      capacity: dict[str, str]) -> Json:
    stamp = times.format_time(times.now())

    def condition(kind: str, status: str, reason: str, message: str) -> Json:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}

    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                      "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                      "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID",
                      "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": config.node_name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": serving_port}},
        "nodeInfo": {
            "machineID": _read_text("/etc/machine-id", "0" * 32),
            "systemUUID": _read_text("/sys/class/dmi/id/product_uuid", "0" * 32),
            "bootID": _read_text("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": _os_image(),
            "containerRuntimeVersion": "process://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": _architecture(),
        },
    }


def _merge_conditions(status: Json, previous: Json) -> Json:
    """Keeps lastTransitionTime of conditions whose status did not change."""
    before = {c["type"]: c for c in previous.get("conditions", [])}
    for condition in status["conditions"]:
        old = before.get(condition["type"])
        if old and old.get("status") == condition["status"] and old.get("lastTransitionTime"):
            condition["lastTransitionTime"] = old["lastTransitionTime"]
    return status


async def register_node(client: apicalls.Client, config: settings.Settings,
                        serving_port: int) -> Json:
    """Creates the Node, or adopts an existing one of the same name; then posts
    its status. Retries until the apiserver answers."""
    name = config.node_name
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": _architecture(), "beta.kubernetes.io/os": "linux",
              "beta.kubernetes.io/arch": _architecture(), **config.labels}
    spec = {"taints": config.taints} if config.taints else {}
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": spec}
    while True:
        try:
            try:
                await client.call("POST", "/api/v1/nodes", body)
                logger.info("registered node %s", name)
            except apicalls.ApiError as error:
                if error.status != 409:
                    raise
                logger.info("node %s exists: adopting it", name)
            return await post_node_status(client, config, serving_port)
        except apicalls.ApiError as error:
            logger.warning("node registration failed, retrying: %s", error)
            await asyncio.sleep(2)


async def post_node_status(client: apicalls.Client, config: settings.Settings,
                           serving_port: int) -> Json:
    name = apicalls.quote(config.node_name)
    current = await client.call("GET", f"/api/v1/nodes/{name}")
    status = _merge_conditions(
        build_node_status(config, serving_port, measure_capacity(config.state_dir)),
        current.get("status", {}))
    return await client.call("PATCH", f"/api/v1/nodes/{name}/status", {"status": status},
                             content_type=apicalls.STRATEGIC_MERGE_PATCH)


async def renew_lease(client: apicalls.Client, config: settings.Settings, node_uid: str) -> None:
    name = config.node_name
    path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
    spec = {"holderIdentity": name, "leaseDurationSeconds": config.lease_duration,
            "renewTime": times.format_micro_time(times.now())}
    try:
        await client.call("PATCH", f"{path}/{apicalls.quote(name)}", {"spec": spec},
                          content_type=apicalls.MERGE_PATCH)
    except apicalls.ApiError as error:
        if error.status != 404:
            raise
        await client.call("POST", path, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]},
            "spec": spec,
        })


async def keep_heartbeat(client: apicalls.Client, config: settings.Settings,
                         serving_port: int, node_uid: str) -> None:
    """Renews the Lease and re-posts node status forever (until cancelled).

    `client` must be the heartbeat's own, as the kubelet's heartbeat client is: on the
    node's shared client a renewal would queue behind the status patches and events of
    a burst of pods, and a node that starts 100 pods at once would be declared lost.
    Renewals keep a fixed rate (a slow call does not push the next one back)."""
    loop = asyncio.get_running_loop()
    next_status = loop.time() + config.node_status_interval
    next_renewal = loop.time()
    while True:
        try:
            await renew_lease(client, config, node_uid)
            if loop.time() >= next_status:
                await post_node_status(client, config, serving_port)
                next_status = loop.time() + config.node_status_interval
        except apicalls.ApiError as error:
            logger.warning("heartbeat failed: %s", error)
        next_renewal += config.lease_renew_interval
        late = loop.time() - next_renewal
        if late > 0:
            logger.warning("heartbeat %.1fs late", late)
            next_renewal = loop.time()
        await asyncio.sleep(max(0.0, next_renewal - loop.time()))

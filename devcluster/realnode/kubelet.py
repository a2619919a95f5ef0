"""The kubelet and kube-proxy of the real node: their configuration files and argv.

Both run from the control-plane binary. The kubelet talks to containerd over CRI,
drives cgroups v1 with the cgroupfs driver under a cgroup root of its own (so two
test beds never share one), serves its API on the pod network's gateway address
(the apiserver reaches it there for logs and exec) and keeps everything else
(its root folder, pod logs, certificates) in the state folder. kube-proxy programs
iptables for the Services, masquerading all Service traffic so that a pod reaching
a pod on the same bridge through a Service gets its answers back.

Called by `devcluster.cluster`; writes files and cleans up after the kubelet,
starts nothing itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import time
from pathlib import Path

from devcluster import ports

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_controllers() -> list[Path]:
    """The v1 hierarchies the kubelet writes (each mounted on a folder of its own)."""
    return [path for path in sorted(CGROUP_ROOT.iterdir())
            if path.is_dir() and not path.is_symlink() and (path / "cgroup.procs").exists()]


def make_cgroup_root(name: str) -> None:
    for controller in cgroup_controllers():
        (controller / name).mkdir(exist_ok=True)


def remove_cgroup_root(name: str, patience: float = 10.0) -> None:
    """Removes the cgroups under the root, deepest first, once their killed processes
    are gone (a cgroup with a process in it cannot be removed)."""
    deadline = time.monotonic() + patience
    while True:
        left = [controller / name for controller in cgroup_controllers() if (controller / name).exists()]
        for top in left:
            folders = sorted((Path(root) for root, _, _ in os.walk(top)), key=lambda p: len(p.parts),
                             reverse=True)
            for folder in folders:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def write_kubelet_config(folder: Path, *, address: str, ca: Path, cert: Path, key: Path,
                         runtime_socket: Path, cgroup_root: str) -> tuple[Path, int]:
    """The KubeletConfiguration and the port the kubelet serves on."""
    port = ports.free_port()
    config = folder / "kubelet-config.json"
    config.write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This kind of machine has cgroups v1 only, which kubelet 1.35+ refuses by default.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup_root}",
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "containerRuntimeEndpoint": f"unix://{runtime_socket}",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.free_port(),
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(ca)}},
        # Only holders of a certificate of the test bed's authority get this far.
        "authorization": {"mode": "AlwaysAllow"},
        "podLogsDir": str(folder / "pod-logs"),
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
        "serializeImagePulls": False,
        # Images exist only locally: never collect them; evict on memory pressure only.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "shutdownGracePeriod": "0s",
        "maxPods": 50,
    }, indent=2))
    return config, port


def kubelet_argv(binary: str, folder: Path, config: Path, kubeconfig: Path, name: str,
                 node_ip: str, labels: dict[str, str]) -> list[str]:
    return [binary, "kubelet",
            "--config", str(config),
            "--kubeconfig", str(kubeconfig),
            "--root-dir", str(folder / "root"),
            "--cert-dir", str(folder / "pki"),
            "--hostname-override", name,
            "--node-ip", node_ip,
            "--node-labels", ",".join(f"{k}={v}" for k, v in labels.items()),
            "--v", "1"]


def write_proxy_config(folder: Path, *, kubeconfig: Path, name: str, cluster_cidr: str,
                       gateway: str) -> Path:
    config = folder / "kube-proxy-config.json"
    config.write_text(json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": name,
        "clusterCIDR": cluster_cidr,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{ports.free_port()}",
        "metricsBindAddress": f"127.0.0.1:{ports.free_port()}",
        "nodePortAddresses": [f"{gateway}/32"],
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False,
                     "syncPeriod": "30s", "minSyncPeriod": "0s"},
        # The machine's conntrack settings are left as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }, indent=2))
    return config


def proxy_argv(binary: str, config: Path) -> list[str]:
    return [binary, "kube-proxy", "--config", str(config), "--v", "1"]


def proxy_cleanup_argv(binary: str) -> list[str]:
    """Removes the iptables chains kube-proxy made."""
    return [binary, "kube-proxy", "--cleanup"]


# The iptables chains the kubelet makes on the machine (a localnet guard and canaries
# it watches for flushes); the test bed removes those that were not there before.
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
Chain = tuple[str, str, str]


def kubelet_chains() -> set[Chain]:
    """(tool, table, chain) of every kubelet chain present now."""
    found = set()
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listed = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True, check=False)
            for line in listed.stdout.splitlines():
                words = line.split()
                if words[:1] == ["-N"] and words[1] in KUBELET_CHAINS:
                    found.add((tool, table, words[1]))
    return found


def remove_chains(chains: set[Chain]) -> None:
    """Deletes the rules that jump to each chain, then the chain."""
    for tool, table, chain in chains:
        listed = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True, check=False)
        for line in listed.stdout.splitlines():
            words = shlex.split(line)
            if words[:1] == ["-A"] and words[-2:] == ["-j", chain]:
                subprocess.run([tool, "-t", table, "-D", *words[1:]], capture_output=True, check=False)
        subprocess.run([tool, "-t", table, "-F", chain], capture_output=True, check=False)
        subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)

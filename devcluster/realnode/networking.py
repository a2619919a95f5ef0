"""The real node's pod network: a Linux bridge on this machine and the bridge CNI.

Each pod gets an address of a /24 that nothing else on the machine uses, inside the
network namespace containerd makes for it, on a veth pair to a bridge whose own
address (the subnet's .1) is the gateway. The apiserver, Postgres and the kubelet
listen on that gateway address too, so pods reach them without leaving the machine.
Pods get no default route, only routes to their subnet and the Service range, and
the bridge forwards nothing to another interface: no pod traffic leaves the
machine.

Called by `devcluster.cluster`; needs root (ip, iptables, sysctl).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETWORK_NAME = "durakube"
SUBNETS = ipaddress.IPv4Network("10.244.0.0/16")


@dataclass(frozen=True)
class PodNetwork:
    bridge: str
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for command in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show"]):
        for line in subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines():
            for word in line.split():
                if word[0].isdigit():
                    with contextlib.suppress(ValueError):
                        used.append(ipaddress.ip_network(word, strict=False))
    return [network for network in used if isinstance(network, ipaddress.IPv4Network)]


def create(service_cidr: str) -> PodNetwork:
    """Makes a bridge with the gateway address of an unused /24 of 10.244.0.0/16."""
    used = _used_networks()
    for index, subnet in enumerate(SUBNETS.subnets(new_prefix=24)):
        if index == 0 or any(subnet.overlaps(network) for network in used if network.prefixlen > 0):
            continue
        network = PodNetwork(f"durakube{index}", subnet)
        if subprocess.run(["ip", "link", "show", network.bridge], capture_output=True).returncode == 0:
            continue
        _run("ip", "link", "add", network.bridge, "type", "bridge")
        try:
            _run("ip", "addr", "add", f"{network.gateway}/{subnet.prefixlen}", "dev", network.bridge)
            _run("ip", "link", "set", network.bridge, "up")
            # Routed traffic between pods (a Service's address translated to a pod's) is
            # forwarded by the bridge's interface only, and never out of another one.
            _run("sysctl", "-q", f"net.ipv4.conf.{network.bridge}.forwarding=1")
            _run("iptables", "-I", "FORWARD", *_confinement(network))
        except BaseException:
            delete(network)
            raise
        return network
    raise RuntimeError("no free /24 left in 10.244.0.0/16 for a pod network")


def _confinement(network: PodNetwork) -> list[str]:
    return ["-i", network.bridge, "!", "-o", network.bridge,
            "-m", "comment", "--comment", f"durakube test bed {network.bridge}: pods stay on this machine",
            "-j", "DROP"]


def delete(network: PodNetwork) -> None:
    subprocess.run(["iptables", "-D", "FORWARD", *_confinement(network)], capture_output=True, check=False)
    subprocess.run(["ip", "link", "delete", network.bridge], capture_output=True, check=False)


def write_cni_config(network: PodNetwork, conf_dir: Path, ipam_dir: Path, service_cidr: str) -> None:
    """The bridge CNI's configuration list, read by containerd's CRI plugin."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-durakube.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [{
            "type": "bridge",
            "bridge": network.bridge,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "dataDir": str(ipam_dir),
                "ranges": [[{"subnet": str(network.subnet), "gateway": network.gateway}]],
                # No default route: pods reach their subnet and the Services, nothing else.
                "routes": [{"dst": service_cidr}],
            },
        }],
    }, indent=2))


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)

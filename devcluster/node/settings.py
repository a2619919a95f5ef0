"""The process node's settings, read from its command line by `agent`.

Data only: every other module receives a `Settings` and never parses arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devcluster.node import cgroups


@dataclass(frozen=True)
class Settings:
    node_name: str
    state_dir: Path
    kubeconfig: Path
    serving_cert: Path
    serving_key: Path
    apiserver_port: int
    serving_port: int = 0
    image_map: Path | None = None
    # Kubelet-like restart back-off, capped low for a test bed: the first restart is
    # immediate, then `backoff_initial` doubling up to `backoff_max`.
    backoff_initial: float = 10.0
    backoff_max: float = 40.0
    lease_duration: int = 40
    # The kubelet renews every quarter of its lease; the test bed's controller-manager
    # declares a node lost after 16 s (`cluster.NODE_MONITOR_GRACE_PERIOD`), so renewals
    # come often enough for four of them to fit in that time.
    lease_renew_interval: float = 4.0
    node_status_interval: float = 30.0
    watch_timeout: int = 60
    # How long containers get between SIGTERM and SIGKILL when the agent stops.
    shutdown_grace: float = 5.0
    # Labels and taints the Node gets when it registers (the kubelet's --node-labels and
    # --register-with-taints): a node that joins a pool is never, even for a moment, a
    # node any pod may land on.
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"

    @property
    def cgroup_parent(self) -> str:
        """Name of the node's parent memory cgroup."""
        return cgroups.parent_name(self.node_name, self.state_dir)

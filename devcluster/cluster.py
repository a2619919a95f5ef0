"""Starts and stops one local test bed: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and its nodes, in that order, as envtest does it.

Every component is a real program (the first four from the control-plane binary
built by `devcluster.build`); ports are chosen free at start, so two test beds can
run side by side. All state (certificates, kubeconfigs, etcd data, logs) lives in
one folder given by the caller.

A node is a process node (`devcluster.node`, every container a local process) or
the real node (`devcluster.realnode`: the kubelet and kube-proxy from the same
binary, containerd, runc and the bridge CNI, images built from the project's
Dockerfiles). With a real node, the control plane listens on the pod network's
gateway address instead of loopback, so that pods reach it.

Called by the test fixtures and by `durakube-devcluster`; it knows nothing of
Durakube itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devcluster import build, kubeconfigs, pki, ports
from devcluster.realnode import images, kubelet, networking, runtime

REPO = Path(__file__).resolve().parent.parent
# Images built from this repository (examples/Dockerfile and the tests' task image)
# and the folder each one copies to /app.
PROJECT_IMAGES = {
    "durakube/examples": "examples",
    "durakube/test-tasks": "tests/e2e/tasks",
}

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ISSUER = "https://kubernetes.default.svc.cluster.local"

# How long a NotReady or unreachable node's pods stay before the taint manager evicts
# them (the apiserver's DefaultTolerationSeconds plugin; Kubernetes' default is 300 s).
# Short here so that node-loss tests finish in reasonable time; the path is the real one.
NODE_TOLERATION_SECONDS = 20
NODE_MONITOR_GRACE_PERIOD = "16s"
# The label of the real node, for nodeSelectors of pods that must run there.
REAL_NODE_LABEL = "durakube.io/node-kind"
# kube-proxy's iptables chains are the machine's, not a test bed's: one real node at
# a time per machine, the others wait for this lock.
REAL_NODE_LOCK = Path("/run/lock/durakube-real-node.lock")


class StartError(RuntimeError):
    """A component did not come up; the message names it and the tail of its log."""


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    # How it was started, so that `restart` starts it again the same way.
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, grace: float = 15.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """SIGKILLs the program (and its process group), as a crash would end it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def start_again(self) -> None:
        """Starts the stopped program again with the same command line and environment:
        the same ports, certificates and data folder."""
        assert not self.alive(), f"{self.name} is still running"
        assert self.argv, f"{self.name} was not started by this test bed"
        self.process = _launch(self.argv, self.log, self.env)


@dataclass
class Cluster:
    """A running test bed. `kubeconfig` is the admin's (system:masters)."""

    state_dir: Path
    api_port: int
    kubeconfig: Path
    ca: pki.Authority
    components: dict[str, Component] = field(default_factory=dict)
    # Where the control plane listens: loopback, or the real node's pod gateway.
    address: str = "127.0.0.1"
    pod_network: networking.PodNetwork | None = None
    # Undone after the components stop, last first (mounts, cgroups, the bridge).
    cleanups: list[Callable[[], object]] = field(default_factory=list)
    # Seconds each step of the real node's start took, for the tests' summary line.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.api_port}"

    def env(self) -> dict[str, str]:
        """Environment for a program that talks to this cluster as admin."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def image_map(self) -> Path:
        """The project's own images as local commands: each is the worker entrypoint with
        the image's task modules on the path, as the image's ENV would put them."""
        path = self.state_dir / "image-map.json"
        if not path.exists():
            worker = str(Path(sys.executable).parent / "durakube-worker")
            path.write_text(json.dumps({
                repository: ["env", f"PYTHONPATH={REPO / folder}", worker]
                for repository, folder in PROJECT_IMAGES.items()}, indent=2))
        return path

    def start_node(self, name: str, *, labels: dict[str, str] | None = None,
                   taints: tuple[str, ...] = (), extra_args: tuple[str, ...] = ()) -> Component:
        """Starts a process node (a kubelet stand-in) registered as `name`, with `labels`
        and `taints` ("key=value:Effect") from its registration on."""
        if labels:
            extra_args += ("--node-labels", ",".join(f"{k}={v}" for k, v in labels.items()))
        if taints:
            extra_args += ("--register-with-taints", ",".join(taints))
        client = self.ca.issue(f"node-{name}", f"system:node:{name}", organization="system:nodes")
        serving = self.ca.issue(f"node-{name}-serving", f"system:node:{name}",
                                server_names=("127.0.0.1", "localhost", name))
        kubeconfig = kubeconfigs.write(self.state_dir / f"node-{name}.kubeconfig",
                                       self.server, self.ca.cert_path, client)
        node_dir = self.state_dir / "nodes" / name
        node_dir.mkdir(parents=True, exist_ok=True)
        component = _spawn(
            f"node-{name}",
            [sys.executable, "-m", "devcluster.node.agent",
             "--kubeconfig", str(kubeconfig), "--node-name", name, "--state-dir", str(node_dir),
             "--serving-cert", str(serving.cert), "--serving-key", str(serving.key),
             "--apiserver-port", str(self.api_port), "--image-map", str(self.image_map()),
             *extra_args],
            self.state_dir,
        )
        self.components[component.name] = component
        return component

    def start_real_node(self, name: str) -> None:
        """Starts containerd, the kubelet and kube-proxy as node `name`, with the
        project's images imported; returns once the node is Ready."""
        assert self.pod_network is not None, "a real node needs the test bed started with real_node"
        network, binary = self.pod_network, str(build.binary())
        archives = images.archives()
        REAL_NODE_LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock = open(REAL_NODE_LOCK, "w")  # held until the cleanup closes it
        self.cleanups.append(lock.close)
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder = self.state_dir / "real-node"
        folder.mkdir(parents=True, exist_ok=True)
        cgroup_root = "durakube-" + hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:8]
        kubelet.make_cgroup_root(cgroup_root)
        chains_before = kubelet.kubelet_chains()
        paths_before = runtime.machine_paths_present()
        # Undone last registered first: the containers, then their mounts, then the
        # iptables chains, then the (by then empty) cgroups and the files elsewhere.
        self.cleanups.append(lambda: runtime.clean_machine_paths(paths_before, folder,
                                                                 networking.NETWORK_NAME))
        self.cleanups.append(lambda: kubelet.remove_cgroup_root(cgroup_root))
        self.cleanups.append(lambda: kubelet.remove_chains(kubelet.kubelet_chains() - chains_before))
        self.cleanups.append(lambda: subprocess.run(kubelet.proxy_cleanup_argv(binary), check=False,
                                                    capture_output=True))
        self.cleanups.append(lambda: runtime.unmount_all(folder))
        self.cleanups.append(lambda: runtime.kill_containers(folder))

        began = time.monotonic()
        cache_dir = build.cache_root() / "containerd"
        cache_dir.mkdir(parents=True, exist_ok=True)
        seeded = False
        if os.stat(cache_dir).st_dev == os.stat(folder).st_dev:  # else no hard links
            cached = runtime.cached_root(cache_dir, archives)
            seeded = runtime.seed_root(folder, cached)
            if not seeded:
                self._import_into_cache(archives, cached, network)
                seeded = runtime.seed_root(folder, cached)
        self._add(self._start_containerd("containerd", folder, network))
        if not seeded or not images.node_image_names() <= runtime.image_names(folder):
            runtime.import_images(folder, archives)  # no cache here, or one that lost some
        self.timings["containerd with the images imported"] = time.monotonic() - began

        client = self.ca.issue(f"node-{name}", f"system:node:{name}", organization="system:nodes")
        serving = self.ca.issue(f"node-{name}-serving", f"system:node:{name}",
                                server_names=(network.gateway, name))
        kubeconfig = kubeconfigs.write(folder / "kubelet.kubeconfig", self.server, self.ca.cert_path, client)
        kubelet_config, _ = kubelet.write_kubelet_config(
            folder, address=network.gateway, ca=self.ca.cert_path, cert=serving.cert, key=serving.key,
            runtime_socket=runtime.socket(folder), cgroup_root=cgroup_root)
        node = self._add(_spawn("kubelet", kubelet.kubelet_argv(
            binary, folder, kubelet_config, kubeconfig, name, network.gateway, {REAL_NODE_LABEL: "real"}),
            self.state_dir))
        began = time.monotonic()
        _wait(f"node {name}", node, lambda: _node_ready(self, name), 120)
        self.timings["kubelet Ready"] = time.monotonic() - began

        proxy_kubeconfig = kubeconfigs.write(folder / "kube-proxy.kubeconfig", self.server, self.ca.cert_path,
                                             self.ca.issue("kube-proxy", "system:kube-proxy"))
        self._add(_spawn("kube-proxy", kubelet.proxy_argv(binary, kubelet.write_proxy_config(
            folder, kubeconfig=proxy_kubeconfig, name=name, cluster_cidr=str(network.subnet),
            gateway=network.gateway)), self.state_dir))

    def _start_containerd(self, component: str, folder: Path,
                          network: networking.PodNetwork) -> Component:
        """Starts a containerd configured under `folder` (its root, state, socket and CNI
        configuration) and returns it once it answers; stops it when it does not."""
        folder.mkdir(parents=True, exist_ok=True)
        networking.write_cni_config(network, folder / "cni", folder / "ipam", SERVICE_CIDR)
        config = runtime.write_config(folder, images.pause_name(), folder / "cni")
        containerd = _spawn(component, runtime.command(config), self.state_dir)
        try:
            _wait("containerd", containerd, lambda: runtime.ready(folder), 60)
        except BaseException:
            containerd.stop()
            raise
        return containerd

    def _import_into_cache(self, archives: list[Path], cached: Path,
                           network: networking.PodNetwork) -> None:
        """Imports `archives` with a containerd of its own, stops it, and caches its root."""
        folder = self.state_dir / "real-node-import"
        importer = self._start_containerd("containerd-import", folder, network)
        try:
            runtime.import_images(folder, archives)
        finally:
            importer.stop()
        runtime.save_root(folder, cached)
        runtime.unmount_all(folder)
        shutil.rmtree(folder, ignore_errors=True)

    def _add(self, component: Component) -> Component:
        self.components[component.name] = component
        return component

    def stop(self) -> None:
        # Nodes first (they stop their pods), then the control plane in reverse order;
        # then what the real node leaves behind on the machine.
        for name in reversed(list(self.components)):
            self.components[name].stop()
        self.components.clear()
        while self.cleanups:
            with contextlib.suppress(Exception):
                self.cleanups.pop()()

    def restart_control_plane(self, *names: str, crash: bool = False, timeout: float = 120) -> None:
        """Restarts control-plane components in place, with the same ports, certificates
        and data: stopped last first (SIGTERM, or SIGKILL with `crash`), then started in
        the order given, e.g. `restart_control_plane("etcd", "kube-apiserver")`. Returns
        once the apiserver answers /readyz (etcd included) again."""
        components = [self.components[name] for name in names]
        for component in reversed(components):
            if crash:
                component.kill()
            else:
                component.stop()
        for component in components:
            component.start_again()
            if component.name == "etcd":
                _wait("etcd", component, lambda: _http_ok(f"{self.etcd_url}/health"), timeout)
        apiserver = self.components["kube-apiserver"]
        _wait("kube-apiserver", apiserver, lambda: _get(self, "/readyz") == b"ok", timeout)

    @property
    def etcd_url(self) -> str:
        argv = self.components["etcd"].argv
        return argv[argv.index("--listen-client-urls") + 1]

    def api_get(self, path: str) -> object:
        """GET on the apiserver as admin; for readiness checks and tests."""
        return json.loads(_get(self, path))


def _spawn(name: str, argv: list[str], state_dir: Path, env: dict[str, str] | None = None) -> Component:
    log = state_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return Component(name, _launch(argv, log, env), log, argv, env)


def _launch(argv: list[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )


def _ssl_context(cluster: Cluster) -> ssl.SSLContext:
    admin = pki.KeyPair(cluster.state_dir / "pki" / "admin.crt", cluster.state_dir / "pki" / "admin.key")
    context = ssl.create_default_context(cafile=str(cluster.ca.cert_path))
    context.load_cert_chain(str(admin.cert), str(admin.key))
    return context


def _get(cluster: Cluster, path: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(cluster.server + path, context=_ssl_context(cluster),
                                timeout=timeout) as response:
        return bytes(response.read())


def _wait(what: str, component: Component, ready: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not component.alive():
            raise StartError(f"{what} exited with {component.process.returncode}:\n{component.log_tail()}")
        try:
            if callable(ready) and ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise StartError(f"{what} not ready after {timeout:.0f}s:\n{component.log_tail()}")


def let_pods_run_the_project() -> None:
    """Lets the unprivileged users that pods run as (runAsUser) traverse down to this
    project's interpreter and files, as an image's files are readable by its user.

    Adds only the search bit (o+x) on the folders above them that lack it, such as a
    root-only home folder holding pyenv's Python; lists and files stay as they are.
    """
    for target in (Path(os.path.realpath(sys.executable)), REPO):
        for folder in reversed(target.parents):
            mode = folder.stat().st_mode
            if not mode & 0o001:
                folder.chmod(mode | 0o001)


def start(state_dir: Path, *, nodes: tuple[str, ...] = ("node-1",), real_node: str | None = None,
          controller_manager_args: tuple[str, ...] = (), node_args: tuple[str, ...] = ()) -> Cluster:
    """Starts a whole test bed in `state_dir`; on failure nothing is left running.

    `nodes` are process nodes; `real_node` names a real node, labelled
    `durakube.io/node-kind=real`, which runs alone (`nodes=()`): the control plane
    then listens on the pod network's gateway, where a process node's pods, given
    loopback for the apiserver, would not find it.
    `controller_manager_args` go last on the controller-manager's command line, so they
    override the test bed's own (a bench sets `--kube-api-qps` and `--kube-api-burst`).
    `node_args` go to each process node's agent (the tests shorten its restart back-off)."""
    if real_node and nodes:
        raise ValueError("a real node runs alone: start it with nodes=()")
    binary = str(build.binary())
    let_pods_run_the_project()
    state_dir.mkdir(parents=True, exist_ok=True)
    ca = pki.Authority(state_dir / "pki")
    api_port = ports.free_port()
    network = networking.create(SERVICE_CIDR) if real_node else None
    address = network.gateway if network else "127.0.0.1"
    admin = ca.issue("admin", "durakube-admin", organization="system:masters")
    cluster = Cluster(state_dir, api_port,
                      kubeconfigs.write(state_dir / "admin.kubeconfig",
                                        f"https://{address}:{api_port}", ca.cert_path, admin),
                      ca, address=address, pod_network=network)
    if network:
        cluster.cleanups.append(lambda: networking.delete(network))
    try:
        _start_etcd_and_apiserver(cluster, binary)
        _start_controllers(cluster, binary, controller_manager_args)
        for name in nodes:
            node = cluster.start_node(name, extra_args=node_args)
            _wait(f"node {name}", node, lambda n=name: _node_ready(cluster, n), 60)
        if real_node:
            cluster.start_real_node(real_node)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_etcd_and_apiserver(cluster: Cluster, binary: str) -> None:
    state_dir, ca = cluster.state_dir, cluster.ca
    etcd_port, peer_port = ports.free_port(), ports.free_port()
    etcd = _spawn("etcd", [
        binary, "etcd",
        "--name", "default",
        "--data-dir", str(state_dir / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
        "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
        # A throwaway store on a test machine: skipping fsync makes writes fast.
        "--unsafe-no-fsync",
        "--log-level", "warn",
    ], state_dir)
    cluster.components["etcd"] = etcd
    _wait("etcd", etcd, lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), 30)

    serving = ca.issue("apiserver", "kube-apiserver", server_names=(
        *dict.fromkeys(("127.0.0.1", cluster.address)), "localhost", "10.0.0.1", "kubernetes",
        "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"))
    kubelet_client = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                              organization="system:masters")
    sa_key = str(pki.service_account_key(state_dir / "pki"))
    apiserver = _spawn("kube-apiserver", [
        binary, "kube-apiserver",
        "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
        "--bind-address", cluster.address,
        "--advertise-address", cluster.address,
        "--secure-port", str(cluster.api_port),
        "--cert-dir", str(state_dir / "pki"),
        "--tls-cert-file", str(serving.cert),
        "--tls-private-key-file", str(serving.key),
        "--client-ca-file", str(ca.cert_path),
        "--service-account-key-file", sa_key,
        "--service-account-signing-key-file", sa_key,
        "--service-account-issuer", SERVICE_ISSUER,
        "--service-cluster-ip-range", SERVICE_CIDR,
        "--authorization-mode", "RBAC,Node",
        "--enable-admission-plugins", "NodeRestriction",
        "--allow-privileged=true",
        "--kubelet-client-certificate", str(kubelet_client.cert),
        "--kubelet-client-key", str(kubelet_client.key),
        "--kubelet-preferred-address-types", "InternalIP",
        "--default-not-ready-toleration-seconds", str(NODE_TOLERATION_SECONDS),
        "--default-unreachable-toleration-seconds", str(NODE_TOLERATION_SECONDS),
        # Pods of a real node reach the apiserver through the `kubernetes` Service, whose
        # endpoint the apiserver keeps; the process node's pods use loopback.
        "--endpoint-reconciler-type", "lease" if cluster.pod_network else "none",
        "--v", "1",
    ], state_dir)
    cluster.components["kube-apiserver"] = apiserver
    _wait("kube-apiserver", apiserver, lambda: _get(cluster, "/readyz") == b"ok", 120)


def _start_controllers(cluster: Cluster, binary: str, controller_manager_args: tuple[str, ...]) -> None:
    state_dir, ca = cluster.state_dir, cluster.ca
    _start_control_component(cluster, binary, "kube-controller-manager", "controller-manager",
                             "system:kube-controller-manager", [
        "--service-account-private-key-file", str(state_dir / "pki" / "sa.key"),
        "--root-ca-file", str(ca.cert_path),
        "--use-service-account-credentials",
        "--service-cluster-ip-range", SERVICE_CIDR,
        "--cluster-signing-cert-file", str(ca.cert_path),
        "--cluster-signing-key-file", str(state_dir / "pki" / "ca.key"),
        "--controllers", "*",
        "--node-monitor-grace-period", NODE_MONITOR_GRACE_PERIOD,
        *controller_manager_args,
    ])
    _start_control_component(cluster, binary, "kube-scheduler", "scheduler", "system:kube-scheduler", [])
    # The service-account controller creates each namespace's "default" account; pods
    # cannot be admitted before it exists, so its appearance shows the controllers work.
    _wait("kube-controller-manager", cluster.components["kube-controller-manager"],
          lambda: _exists(cluster, "/api/v1/namespaces/default/serviceaccounts/default"), 90)


def _start_control_component(cluster: Cluster, binary: str, component: str, short: str, user: str,
                             arguments: list[str]) -> None:
    """Starts the controller-manager or the scheduler: its own client certificate and
    kubeconfig, a secure port on loopback, no leader election (one of each runs)."""
    state_dir, ca = cluster.state_dir, cluster.ca
    kubeconfig = str(kubeconfigs.write(state_dir / f"{short}.kubeconfig", cluster.server, ca.cert_path,
                                       ca.issue(short, user)))
    cluster.components[component] = _spawn(component, [
        binary, component,
        "--kubeconfig", kubeconfig,
        "--authentication-kubeconfig", kubeconfig,
        "--authorization-kubeconfig", kubeconfig,
        "--bind-address", "127.0.0.1",
        "--secure-port", str(ports.free_port()),
        "--cert-dir", str(state_dir / "pki" / short),
        "--leader-elect=false",
        "--v", "1",
        *arguments,
    ], state_dir)


def _exists(cluster: Cluster, path: str) -> bool:
    try:
        _get(cluster, path)
        return True
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


def _node_ready(cluster: Cluster, name: str) -> bool:
    try:
        node = json.loads(_get(cluster, f"/api/v1/nodes/{name}"))
    except urllib.error.HTTPError:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions", []))


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)

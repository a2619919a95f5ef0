"""containerd for the real node: configured in the test bed's state folder, started
as a program of the test bed, loaded with the project's images, and cleaned up after.

Debian's containerd 1.6 with runc and the cgroupfs driver (the machine's cgroup
hierarchy is v1). Its CRI plugin runs pod sandboxes from the locally built pause
image, attaches them to the bridge CNI (`networking`), keeps its network namespaces
under the state folder, and never asks for a negative oom_score_adj, which this
kind of machine refuses (`restrict_oom_score_adj`).

Importing the images (some 1.5 GB of archives) took 29 of the real node's 41 s of
start-up. So they are imported once, into a root folder cached under
`$DURAKUBE_CACHE/containerd` and keyed by the archives (whose names carry their
content's key) and containerd's version; each real node's containerd then starts on
a copy of it made of hard links (`seed_root`, a second or two). Layer files and blobs
are never changed in place (overlayfs copies a file up before a container writes it);
the two bolt databases are, so they are copied whole.

`kill_containers`, `unmount_all` and `clean_machine_paths` end what containerd and
the kubelet leave behind when they exit: the shims and the containers under them,
the mounts under the state folder, their few files elsewhere on the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

CNI_BIN_DIR = "/usr/lib/cni"
NAMESPACE = "k8s.io"


def socket(state_dir: Path) -> Path:
    return state_dir / "containerd" / "containerd.sock"


def write_config(state_dir: Path, sandbox_image: str, cni_conf_dir: Path) -> Path:
    folder = state_dir / "containerd"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    config.write_text(f"""\
version = 2
root = "{folder / 'root'}"
state = "{folder / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket(state_dir)}"

[ttrpc]
  address = "{folder / 'containerd.sock.ttrpc'}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{folder / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"
""")
    return config


def command(config: Path) -> list[str]:
    return ["containerd", "--config", str(config)]


def ctr(state_dir: Path, *args: str, timeout: float = 300) -> str:
    """Runs containerd's own client against this containerd; raises with its stderr."""
    argv = ["ctr", "--address", str(socket(state_dir)), "--namespace", NAMESPACE, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def ready(state_dir: Path) -> bool:
    if not socket(state_dir).exists():
        return False
    try:
        ctr(state_dir, "version", timeout=5)
        return True
    except (RuntimeError, subprocess.SubprocessError):
        return False


def import_images(state_dir: Path, archives: list[Path]) -> None:
    """Imports image archives and unpacks them for the CRI plugin's snapshotter."""
    for archive in archives:
        ctr(state_dir, "images", "import", "--snapshotter", "overlayfs", str(archive))


def image_names(state_dir: Path) -> set[str]:
    """The names of the images this containerd holds."""
    return set(ctr(state_dir, "images", "list", "--quiet").split())


def root(state_dir: Path) -> Path:
    return state_dir / "containerd" / "root"


# containerd's databases under its root: written in place, so copied, never linked.
DATABASES = ("io.containerd.metadata.v1.bolt/meta.db", "io.containerd.snapshotter.v1.overlayfs/metadata.db")


def cached_root(cache_dir: Path, archives: list[Path]) -> Path:
    """Where the root with `archives` imported is cached: keyed by the archives' names
    (content-keyed) and containerd's version."""
    version = subprocess.run(["containerd", "--version"], capture_output=True, text=True,
                             check=True).stdout
    digest = hashlib.sha256(version.encode())
    for archive in archives:
        digest.update(archive.name.encode() + b"\0")
    return cache_dir / digest.hexdigest()[:12]


def seed_root(state_dir: Path, cached: Path) -> bool:
    """Makes containerd's root under `state_dir` a copy of `cached`: hard links, but for
    the databases. False (and nothing left behind) when there is no such cache or it
    cannot be linked (another filesystem)."""
    if not cached.is_dir():
        return False
    target = root(state_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    linked = subprocess.run(["cp", "-a", "--link", str(cached), str(target)],
                            capture_output=True, check=False)
    if linked.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        return False
    for name in DATABASES:
        database = target / name
        if database.exists():
            copy = database.with_name(database.name + ".copy")
            shutil.copy2(database, copy)
            os.replace(copy, database)  # no longer a link to the cache's
    return True


def save_root(state_dir: Path, cached: Path) -> None:
    """Moves the root of a stopped containerd under `state_dir` to `cached`, and removes
    the roots cached for other archives (each holds every layer, unpacked)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    for other in cached.parent.iterdir():
        if other != cached:
            shutil.rmtree(other, ignore_errors=True)
    os.replace(root(state_dir), cached)


def containers(state_dir: Path, pod_namespace: str | None = None) -> list[str]:
    """The containers containerd holds, sandboxes included (for one Kubernetes
    namespace, if given), whether they run or not."""
    filters = [f"labels.\"io.kubernetes.pod.namespace\"=={pod_namespace}"] if pod_namespace else []
    return ctr(state_dir, "containers", "list", "--quiet", *filters).split()


def running_containers(state_dir: Path, pod_namespace: str | None = None) -> list[str]:
    """The containers of `containers()` whose process runs."""
    running = {line.split()[0] for line in ctr(state_dir, "tasks", "list").splitlines()[1:]
               if line.split()[-1] == "RUNNING"}
    return [container for container in containers(state_dir, pod_namespace) if container in running]


def _shims(state_dir: Path) -> list[int]:
    """The shim processes of this containerd: they outlive it by design."""
    address = str(socket(state_dir)).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
                found.append(int(entry.name))
    return found


def _descendants(pids: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], list(pids)
    while pending:
        pid = pending.pop()
        for child in children.get(pid, []):
            found.append(child)
            pending.append(child)
    return found


def kill_containers(state_dir: Path) -> None:
    """SIGKILLs every container of this containerd, then the shims that ran them."""
    shims = _shims(state_dir)
    for pid in [*_descendants(shims), *shims]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _shims(state_dir) and time.monotonic() < deadline:
        time.sleep(0.1)


def unmount_all(state_dir: Path) -> None:
    """Unmounts whatever containerd and the kubelet mounted under the state folder
    (rootfs overlays, sandbox /dev/shm, network namespaces, secret volumes)."""
    prefix = str(state_dir.resolve()) + "/"
    for _ in range(3):
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        ours = sorted({m for m in mounts if m.startswith(prefix)}, key=len, reverse=True)
        if not ours:
            return
        for mount in ours:
            subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)


# Folders outside the state folder that the kubelet and the CNI plugins write to
# whatever they are told: the kubelet's device-plugin folder and its links to
# container logs, libcni's cache of each sandbox's network.
MACHINE_PATHS = (Path("/var/lib/kubelet"), Path("/var/log/containers"), Path("/var/lib/cni"))


def machine_paths_present() -> set[Path]:
    return {path for path in MACHINE_PATHS if path.exists()}


def clean_machine_paths(present_before: set[Path], state_dir: Path, network_name: str) -> None:
    """Removes those folders when the real node made them, else only its own entries:
    the log links into `state_dir` and the CNI results of network `network_name`."""
    for path in MACHINE_PATHS:
        if path not in present_before:
            shutil.rmtree(path, ignore_errors=True)
    logs = Path("/var/log/containers")
    for link in logs.glob("*.log") if logs.exists() else []:
        if link.is_symlink() and os.readlink(link).startswith(str(state_dir) + "/"):
            link.unlink(missing_ok=True)
    results = Path("/var/lib/cni/results")
    for result in results.glob(f"{network_name}-*") if results.exists() else []:
        sandbox = result.name[len(network_name) + 1:].rsplit("-", 1)[0]
        for entry in results.glob(f"*-{sandbox}-*"):
            entry.unlink(missing_ok=True)

"""Builds the images the real node runs, from the project's own Dockerfiles.

No registry is reachable here, so every image starts from a base built on this
machine: Debian bookworm made with debootstrap, whose python3 is CPython 3.11 (the
version of the official python:3.11 image the Dockerfiles default to). The
Dockerfiles take it as their `PYTHON_IMAGE` build argument, so the same files build
FROM the official image elsewhere. buildah builds them with the vfs storage driver
and chroot isolation (no daemon, no overlay mounts), and each image is saved as an
archive that containerd imports.

Everything is cached under `$DURAKUBE_CACHE/images`, keyed by content: the base by
its suite, packages and the machine's CA bundle, each image by its Dockerfile, the
files its build copies and the key of the image it builds FROM. A warm run finds
every archive and runs no build at all; buildah's own layer cache (`--layers`)
makes a rebuild after a change redo only the steps after it, and what no current
image is built of is removed from buildah's storage (`prune_storage`).

Run as `python -m devcluster.realnode.images` (the Makefile does); the test bed
calls `archives()` to find the results. It knows nothing of Kubernetes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devcluster import build

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# python3-venv brings ensurepip (the Dockerfiles make virtual environments), passwd
# brings useradd, ca-certificates lets pip reach the package index.
BASE_PACKAGES = ("python3", "python3-venv", "passwd", "ca-certificates")
# The trust store of this machine, copied into the base so that pip inside a build
# trusts what pip on this machine trusts (an egress proxy's authority, for one).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Files a build never copies (as .dockerignore says), left out of the content keys.
IGNORED = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def _version() -> str:
    """The chart's appVersion: the tag the chart and the examples' Tasks name."""
    for line in (REPO / "charts" / "durakube" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise RuntimeError("charts/durakube/Chart.yaml has no appVersion")


VERSION = _version()


@dataclass(frozen=True)
class Image:
    """One image built from a Dockerfile of this repository (the context is the root)."""

    name: str
    dockerfile: str
    inputs: tuple[str, ...]
    # The build argument that names the image this one builds FROM, and that image:
    # None is the Debian base.
    base_argument: str = "PYTHON_IMAGE"
    base: str | None = None
    args: dict[str, str] = field(default_factory=dict)


WORKER = Image(f"ghcr.io/durakube/worker:{VERSION}", "worker-image/Dockerfile",
               ("requirements/build.lock", "requirements/worker.lock", "sdk"))
OPERATOR = Image(f"ghcr.io/durakube/operator:{VERSION}", "operator-image/Dockerfile",
                 ("requirements/build.lock", "requirements/operator.lock", "sdk", "operator"))
EXAMPLES = Image(f"ghcr.io/durakube/examples:{VERSION}", "examples/Dockerfile", ("examples",),
                 base_argument="WORKER_IMAGE", base=WORKER.name)
# A user's task image as worker-image/README.md describes it: FROM the worker image,
# a package from a requirements file, task modules copied to /app.
TEST_TASKS = Image("durakube/realnode-tasks:test", "tests/e2e/realnode/image/Dockerfile",
                   ("tests/e2e/realnode/image", "tests/e2e/tasks/*.py"),
                   base_argument="WORKER_IMAGE", base=WORKER.name)
IMAGES = (WORKER, OPERATOR, EXAMPLES, TEST_TASKS)
BY_NAME = {image.name: image for image in IMAGES}
# What the real node imports: every layer of the worker image is in the images built
# FROM it, so importing it too would only read those layers once more.
NODE_IMAGES = (OPERATOR, EXAMPLES, TEST_TASKS)


def images_dir() -> Path:
    return build.cache_root() / "images"


def _hash_paths(digest: hashlib._Hash, paths: list[str]) -> None:
    """Hashes the files a build copies: whole folders, single files or glob patterns
    (relative to the repository), as the Dockerfile's COPY names them."""
    for pattern in paths:
        roots = sorted(REPO.glob(pattern)) if "*" in pattern else [REPO / pattern]
        files = sorted(p for root in roots for p in (root.rglob("*") if root.is_dir() else [root])
                       if p.is_file())
        for path in files:
            relative = path.relative_to(REPO)
            if IGNORED & set(relative.parts) or any(part.endswith(".egg-info") for part in relative.parts):
                continue
            digest.update(str(relative).encode() + b"\0")
            digest.update(path.read_bytes())


def base_key() -> str:
    digest = hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(BASE_PACKAGES)}".encode())
    if HOST_CA_BUNDLE.exists():
        digest.update(HOST_CA_BUNDLE.read_bytes())
    return digest.hexdigest()[:12]


def base_name() -> str:
    return f"localhost/durakube/python:{base_key()}"


def image_key(image: Image) -> str:
    digest = hashlib.sha256(image.name.encode())
    digest.update(image_key(BY_NAME[image.base]).encode() if image.base else base_key().encode())
    digest.update(repr(sorted(image.args.items())).encode())
    _hash_paths(digest, [image.dockerfile, *image.inputs])
    return digest.hexdigest()[:12]


def archive(image: Image) -> Path:
    safe = image.name.rsplit("/", 1)[-1].replace(":", "-")
    return images_dir() / f"{safe}-{image_key(image)}.tar"


def full_name(name: str) -> str:
    """An image's name as containerd (and the kubelet) spell it: a name without a
    registry is Docker Hub's."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def node_image_names() -> set[str]:
    """The names of the images the real node imports, as containerd lists them."""
    return {full_name(pause_name()), *(full_name(image.name) for image in NODE_IMAGES)}


def archives() -> list[Path]:
    """The archives the real node imports (the pause image first); raises when one is
    missing."""
    paths = [pause_archive(), *(archive(image) for image in NODE_IMAGES)]
    missing = [path.name for path in paths if not path.exists()]
    if missing:
        raise FileNotFoundError(f"images not built yet ({', '.join(missing)}): run `make images`")
    return paths


def _buildah_command(*args: str) -> list[str]:
    storage = images_dir() / "buildah"
    return ["buildah", "--storage-driver", "vfs", "--root", str(storage / "storage"),
            "--runroot", str(storage / "run"), *args]


def _buildah(*args: str, capture: bool = False) -> str:
    result = subprocess.run(_buildah_command(*args), check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout.strip() if capture else ""


def _has_image(name: str) -> bool:
    found = subprocess.run(_buildah_command("inspect", "--type", "image", name), capture_output=True)
    return found.returncode == 0


def build_base() -> str:
    """The Debian base in buildah's storage, made with debootstrap when missing."""
    name = base_name()
    if _has_image(name):
        return name
    started = time.monotonic()
    print(f"building the Debian {SUITE} base {name} with debootstrap (first time on this machine)...",
          flush=True)
    work = images_dir() / f"base-{base_key()}.partial"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                    SUITE, str(rootfs), MIRROR], check=True, stdout=subprocess.DEVNULL)
    # An image carries no package lists or downloaded packages.
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    if HOST_CA_BUNDLE.exists():
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    container = _buildah("from", "scratch", capture=True)
    try:
        mount = Path(_buildah("mount", container, capture=True))
        subprocess.run(["cp", "-a", f"{rootfs}/.", str(mount)], check=True)
        _buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
        _buildah("commit", "--rm", container, name)
    except BaseException:
        subprocess.run(_buildah_command("rm", container), check=False)
        raise
    shutil.rmtree(work)
    print(f"built the base {name} in {time.monotonic() - started:.0f}s", flush=True)
    return name


def build_image(image: Image) -> Path:
    """The image's archive; built (FROM its base) when missing."""
    path = archive(image)
    if path.exists():
        print(f"{image.name}: cached build, {path}", flush=True)
        return path
    if image.base:
        build_image(BY_NAME[image.base])
        base = image.base
    else:
        base = build_base()
    # Keyed by the files as the build reads them, not as they were before the base.
    path = archive(image)
    started = time.monotonic()
    print(f"building {image.name} from {image.dockerfile}...", flush=True)
    arguments = {image.base_argument: base, **image.args}
    _buildah("bud", "--isolation", "chroot", "--layers", "--pull=false", "--format", "docker",
             "-f", str(REPO / image.dockerfile), "-t", image.name,
             *(f"--build-arg={key}={value}" for key, value in arguments.items()), str(REPO))
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _buildah("push", image.name, f"docker-archive:{partial}:{image.name}")
    partial.rename(path)
    print(f"built {image.name} in {time.monotonic() - started:.0f}s", flush=True)
    return path


def pause_name() -> str:
    return f"localhost/durakube/pause:{build.module_key('pause')}"


def pause_archive() -> Path:
    return images_dir() / f"pause-{build.module_key('pause')}.tar"


def build_pause() -> Path:
    """The pods' sandbox image: the static `pause` program of devcluster/pause alone."""
    path = pause_archive()
    if path.exists():
        return path
    program = build.build("pause", "pause")
    container = _buildah("from", "scratch", capture=True)
    try:
        _buildah("copy", "--chmod", "0755", container, str(program), "/pause")
        _buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
        _buildah("commit", "--rm", "--format", "docker", container, pause_name())
    except BaseException:
        subprocess.run(_buildah_command("rm", container), check=False)
        raise
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _buildah("push", pause_name(), f"docker-archive:{partial}:{pause_name()}")
    partial.rename(path)
    return path


def build_all() -> list[Path]:
    started = time.monotonic()
    paths = [build_pause(), *(build_image(image) for image in IMAGES)]
    print(f"images ready in {time.monotonic() - started:.0f}s", flush=True)
    return paths


def prune() -> None:
    """Removes archives of images whose inputs have changed since (other keys)."""
    current = {pause_archive().name, *(archive(image).name for image in IMAGES)}
    for path in images_dir().glob("*.tar"):
        if path.name not in current:
            path.unlink()


def prune_storage() -> None:
    """Removes from buildah's storage what no named image is built of: the working
    containers of a build that failed, and the images a newer build took the name of,
    with the layers only they were built on. vfs keeps each layer as a whole copy of its
    file system, so without this the storage grows by gigabytes with every change (the
    layers of the named images stay: they are the next build's cache)."""
    _buildah("rm", "--all")
    # An image removed can leave its parent layer unnamed and childless in turn.
    while _buildah("rmi", "--prune", capture=True).strip():
        pass


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("building the images needs root (debootstrap, buildah's chroot isolation)")
    images_dir().mkdir(parents=True, exist_ok=True)
    prune_storage()  # what a build that failed left, before it fills the disk again
    build_all()
    prune()
    prune_storage()


if __name__ == "__main__":
    main()

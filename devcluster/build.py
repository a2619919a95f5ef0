"""Builds the control-plane binary, the helm binary and the pause program once per
machine.

They come from the Go module proxy: `devcluster/controlplane/` is a small Go
module that requires k8s.io/kubernetes (and etcd's server) at pinned versions;
`devcluster/helm/` holds no code of its own: its go.mod declares helm's command
(`helm.sh/helm/v3/cmd/helm`) as a `tool`, which pins helm and all its
dependencies in go.mod and go.sum, and the build compiles that package;
`devcluster/pause/` is the real node's sandbox program, with no dependency. Outputs
land in a cache folder outside the work tree (`$DURAKUBE_CACHE`, by default
`~/.cache/durakube`), under a key derived from the module files, so a fresh clone
on the same machine reuses them and a version bump rebuilds. Go's own build cache
makes even a rebuild cheap.

Run as `python -m devcluster.build` (the Makefile does); `binary()` is what the
test bed calls to find the result.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cache_root() -> Path:
    return Path(os.environ.get("DURAKUBE_CACHE", Path.home() / ".cache" / "durakube"))


def _required_version(module: Path, path: str) -> str | None:
    """The version of `path` that the module's go.mod requires."""
    for line in (module / "go.mod").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in (path, "require") and path in words:
            return words[words.index(path) + 1]
    return None


def _tool(module: Path, program: str) -> str | None:
    """The package of the go.mod `tool` directive whose command is `program`."""
    for line in (module / "go.mod").read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "tool" and words[1].rsplit("/", 1)[-1] == program:
            return words[1]
    return None


def _ldflags(module: Path) -> str:
    flags = "-s -w"
    version = _required_version(module, "k8s.io/kubernetes")
    if version:
        # What `kubectl version` and /version report, as in an official build.
        major, minor = version.lstrip("v").split(".")[:2]
        base = "k8s.io/component-base/version"
        flags += (f" -X {base}.gitVersion={version} -X {base}.gitMajor={major}"
                  f" -X {base}.gitMinor={minor} -X {base}.gitTreeState=clean")
    helm = _required_version(module, "helm.sh/helm/v3")
    client_go = _required_version(module, "k8s.io/client-go")
    if helm and client_go:
        # As helm's own Makefile does: `helm version` reports the release, and the
        # Kubernetes version that `helm template` and `helm lint` assume without a
        # cluster follows client-go (v0.N is Kubernetes 1.N), not the 1.20 compiled in.
        minor = client_go.lstrip("v").split(".")[1]
        flags += f" -X helm.sh/helm/v3/internal/version.version={helm}"
        flags += " -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
        for package in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
            flags += f" -X {package}.k8sVersionMajor=1 -X {package}.k8sVersionMinor={minor}"
    return flags


def _module_key(module: Path) -> str:
    digest = hashlib.sha256(_ldflags(module).encode())
    for name in sorted(p.name for p in module.iterdir() if p.suffix in {".go", ".mod", ".sum"}):
        digest.update(name.encode())
        digest.update((module / name).read_bytes())
    return digest.hexdigest()[:12]


def module_key(module_name: str) -> str:
    """The cache key of a module of devcluster/: changes with its files and flags."""
    return _module_key(HERE / module_name)


def _output(module_name: str, program: str) -> Path:
    return cache_root() / f"{module_name}-{module_key(module_name)}" / program


def binary(module_name: str = "controlplane", program: str = "controlplane") -> Path:
    """Path of a built program; raises with the command to run when it is missing."""
    path = _output(module_name, program)
    if not path.exists():
        raise FileNotFoundError(f"{path} is not built yet: run `make {module_name}`")
    return path


def build(module_name: str, program: str) -> Path:
    path = _output(module_name, program)
    if path.exists():
        print(f"{program}: cached build, {path}", flush=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"building {program} from {HERE / module_name} (first time on this machine)...", flush=True)
    partial = path.with_suffix(".partial")
    # A module that only declares a tool builds that tool; one with a main package, itself.
    package = _tool(HERE / module_name, program) or "."
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", _ldflags(HERE / module_name), "-o", str(partial), package],
        cwd=HERE / module_name,
        check=True,
    )
    partial.rename(path)
    print(f"built {path} in {time.monotonic() - started:.0f}s", flush=True)
    return path


def main() -> None:
    targets = sys.argv[1:] or ["controlplane"]
    for target in targets:
        build(target, target)


if __name__ == "__main__":
    main()

"""Builds the control-plane binary and the helm binary once per machine.

Both come from the Go module proxy: `devcluster/controlplane/` is a small Go
module that requires k8s.io/kubernetes (and etcd's server) at pinned versions;
`devcluster/helm/` pins helm's. Outputs land in a cache folder outside the work
tree (`$DURAKUBE_CACHE`, by default `~/.cache/durakube`), under a key derived from
the module files, so a fresh clone on the same machine reuses them and a version
bump rebuilds. Go's own build cache makes even a rebuild cheap.

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


def _ldflags(module: Path) -> str:
    flags = "-s -w"
    version = _required_version(module, "k8s.io/kubernetes")
    if version:
        # What `kubectl version` and /version report, as in an official build.
        major, minor = version.lstrip("v").split(".")[:2]
        base = "k8s.io/component-base/version"
        flags += (f" -X {base}.gitVersion={version} -X {base}.gitMajor={major}"
                  f" -X {base}.gitMinor={minor} -X {base}.gitTreeState=clean")
    return flags


def _module_key(module: Path) -> str:
    digest = hashlib.sha256(_ldflags(module).encode())
    for name in sorted(p.name for p in module.iterdir() if p.suffix in {".go", ".mod", ".sum"}):
        digest.update(name.encode())
        digest.update((module / name).read_bytes())
    return digest.hexdigest()[:12]


def _output(module_name: str, program: str) -> Path:
    module = HERE / module_name
    return cache_root() / f"{module_name}-{_module_key(module)}" / program


def binary(module_name: str = "controlplane", program: str = "controlplane") -> Path:
    """Path of a built program; raises with the command to run when it is missing."""
    path = _output(module_name, program)
    if not path.exists():
        raise FileNotFoundError(f"{path} is not built yet: run `make controlplane` (or `make setup`)")
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
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", _ldflags(HERE / module_name), "-o", str(partial), "."],
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

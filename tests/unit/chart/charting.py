"""Rendering and linting the chart with the helm binary that `make helm` builds.

No cluster is involved: `helm template` and `helm lint` run on the chart folder
with the values files of `charts/durakube/ci/`. helm's own folders (cache,
configuration, repositories) point into a temporary folder, so the tests neither
read nor write a person's helm set-up.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster import build

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "durakube"
CI = CHART / "ci"
GOOD_VALUES = sorted(CI.glob("*-values.yaml"))
BAD_VALUES = sorted(CI.glob("bad-*.yaml"))
RELEASE = "durakube"
NAMESPACE = "durakube-system"

_home: Path | None = None


def _environment() -> dict[str, str]:
    global _home
    if _home is None:
        _home = Path(tempfile.mkdtemp(prefix="durakube-helm-"))
        atexit.register(shutil.rmtree, _home, True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(_home),
            "HELM_CACHE_HOME": str(_home / "cache"), "HELM_CONFIG_HOME": str(_home / "config"),
            "HELM_DATA_HOME": str(_home / "data")}


def helm_binary() -> Path:
    try:
        return build.binary("helm", "helm")
    except FileNotFoundError as missing:
        pytest.skip(f"the chart's tests need the helm binary: {missing}")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm_binary()), *args], env=_environment(),
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template_args(*values: Path | str, sets: dict[str, str] | None = None,
                  api_versions: tuple[str, ...] = (), chart: Path = CHART) -> list[str]:
    """The arguments of `helm template` for the release, after the subcommand."""
    args = [RELEASE, str(chart), "--namespace", NAMESPACE]
    for path in values:
        args += ["--values", str(CI / path if isinstance(path, str) else path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    for version in api_versions:
        args += ["--api-versions", version]
    return args


def render(*values: Path | str, sets: dict[str, str] | None = None,
           api_versions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The manifests `helm template` renders, as objects."""
    text = helm("template", *template_args(*values, sets=sets, api_versions=api_versions)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return sorted(doc["kind"] for doc in manifests)


def one(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The only object of `kind` (and `name`); fails the test when there is none or several."""
    found = [doc for doc in manifests
             if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name or 'anything'} rendered"
    return found[0]


def operator_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return dict(container)


def environment(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator container's env, by name: the value, or the valueFrom object."""
    return {var["name"]: var.get("value", var.get("valueFrom"))
            for var in operator_container(manifests)["env"]}

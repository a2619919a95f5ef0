"""The project's layout promises: importable packages, no shadowed stdlib module."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_operator_still_names_the_standard_library_module() -> None:
    # operator/ holds durakube_operator; an operator/__init__.py would shadow the stdlib.
    result = subprocess.run([sys.executable, "-c", "import operator; print(operator.__file__)"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    assert "site-packages" not in result.stdout
    assert not result.stdout.strip().startswith(str(ROOT))
    assert importlib.import_module("operator").itemgetter is not None
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_packages_import() -> None:
    for name in ("durakube", "durakube_operator", "devcluster"):
        importlib.import_module(name)


def modules_loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_sdk_does_not_import_the_operator() -> None:
    loaded = modules_loaded_by(
        "import importlib, pkgutil, durakube\n"
        "for module in pkgutil.walk_packages(durakube.__path__, 'durakube.'):\n"
        "    importlib.import_module(module.name)")
    assert {"durakube.client.clients", "durakube.cli", "durakube.worker"} <= loaded
    assert not {name for name in loaded if name.startswith(("durakube_operator", "kopf"))}


def test_the_client_does_not_load_the_step_engine() -> None:
    # A web app that triggers runs needs the registry of tasks, not the engine running them.
    loaded = modules_loaded_by("import durakube.client, durakube.cli")
    assert {"durakube.client.clients", "durakube.tasks"} <= loaded
    engine = ("durakube.context", "durakube.waiting", "durakube.triggering", "durakube.worker",
              "durakube_operator", "kopf")
    assert not {name for name in loaded if name.startswith(engine)}


def test_the_task_facade_still_offers_the_step_engine() -> None:
    loaded = modules_loaded_by(
        "from durakube import TaskContext, WaitTimedOut, ChildRunFailed\n"
        "assert TaskContext.__module__ == 'durakube.context'")
    assert {"durakube.context", "durakube.waiting", "durakube.triggering"} <= loaded

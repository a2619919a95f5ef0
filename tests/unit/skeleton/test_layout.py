"""The project's layout promises: importable packages, no shadowed stdlib module."""

from __future__ import annotations

import importlib
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


def test_sdk_does_not_import_the_operator() -> None:
    code = "import durakube, sys; sys.exit('durakube_operator' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)

"""What the client's unit tests share: a kubeconfig that points nowhere.

The client reads it when built (namespace, server); no test here reaches a server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose context names namespace team-a and a server nobody listens on."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "team-a"}}],
    }))
    return path

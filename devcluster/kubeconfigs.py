"""Kubeconfig files for the test bed's users (admin, controllers, nodes).

Certificates are embedded, so a kubeconfig stays valid when copied elsewhere.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from devcluster import pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write(path: Path, server: str, ca_cert: Path, client: pki.KeyPair, *,
          namespace: str = "default") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devcluster", "cluster": {
            "server": server, "certificate-authority-data": _b64(ca_cert)}}],
        "users": [{"name": "user", "user": {
            "client-certificate-data": _b64(client.cert),
            "client-key-data": _b64(client.key)}}],
        "contexts": [{"name": "devcluster", "context": {
            "cluster": "devcluster", "user": "user", "namespace": namespace}}],
        "current-context": "devcluster",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path

"""helm on the test bed, and what the chart's end-to-end tests compare with it.

`helm()` (from helpers) runs the binary that `make helm` builds against the test
bed as its admin. `adopt_crds()` hands CRDs that
another test applied with kubectl over to a release, as a person would (helm refuses
to take over objects it did not create). `granted()` reads `kubectl auth can-i
--list` for a ServiceAccount, and `documented()` says what charts/durakube/
permissions.yaml promises in the same place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from helpers import kubectl

from devcluster import cluster as devcluster_cluster

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "durakube"
PERMISSIONS = yaml.safe_load((CHART / "permissions.yaml").read_text())
CRD_NAMES = [f"{plural}.durakube.io" for plural in ("tasks", "taskruns", "taskqueues", "taskevents",
                                                         "taskschedules")]
# A database URL the operator would use; the tests never start it (replicaCount=0).
DATABASE_URL = "postgresql://durakube@127.0.0.1:5432/durakube"

# A ServiceAccount bound to nothing: what it may do, every ServiceAccount may (ask what it
# may do, read ClusterTrustBundles, ...).
NOBODY = "durakube-test-nobody"
# (resource as `kubectl auth can-i --list` names it, resource names) -> verbs
Grants = dict[tuple[str, tuple[str, ...]], set[str]]


def adopt_crds(cluster: devcluster_cluster.Cluster, release: str, namespace: str) -> None:
    """Marks the durakube.io CRDs that exist already as the release's, so that installing
    it updates them instead of failing on objects another owner created."""
    present = kubectl(cluster, "get", "crd", "-o", "name", check=False).stdout.split()
    for name in CRD_NAMES:
        if f"customresourcedefinition.apiextensions.k8s.io/{name}" in present:
            kubectl(cluster, "label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
            kubectl(cluster, "annotate", "--overwrite", "crd", name,
                    f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}")


def get_json(cluster: devcluster_cluster.Cluster, *args: str) -> dict[str, Any] | None:
    result = kubectl(cluster, "get", *args, "-o", "yaml", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    return dict(yaml.safe_load(result.stdout))


_ROW = re.compile(r"^(?P<resource>\S+)\s+\[(?P<urls>[^\]]*)\]\s+"
                  r"\[(?P<names>[^\]]*)\]\s+\[(?P<verbs>[^\]]*)\]\s*$")


def _can_i_list(cluster: devcluster_cluster.Cluster, service_account: str, namespace: str) -> Grants:
    output = kubectl(cluster, "auth", "can-i", "--list", f"--as=system:serviceaccount:{service_account}",
                     "--namespace", namespace).stdout
    grants: Grants = {}
    for line in output.splitlines()[1:]:
        row = _ROW.match(line)
        if row is None:
            continue  # non-resource URLs (discovery) start with blanks
        key = (row["resource"], tuple(sorted(row["names"].split())))
        grants.setdefault(key, set()).update(row["verbs"].split())
    return grants


def granted(cluster: devcluster_cluster.Cluster, service_account: str, namespace: str) -> Grants:
    """What `kubectl auth can-i --list` says `service_account` ("<namespace>:<name>") may do
    in `namespace`, except what every ServiceAccount may do."""
    everyone = _can_i_list(cluster, f"{service_account.split(':')[0]}:{NOBODY}", namespace)
    return {key: verbs for key, verbs in _can_i_list(cluster, service_account, namespace).items()
            if everyone.get(key) != verbs}


def documented(values: dict[str, Any], *, release_namespace: bool, watched: bool) -> Grants:
    """What permissions.yaml grants in one namespace, for a release installed with
    `values` (only the keys the entries' `when` and names need) and the lease name."""
    grants: Grants = {}
    for entry in PERMISSIONS["operator"]:
        if "when" in entry and not values.get(entry["when"], True):
            continue
        if entry["scope"] == "watched" and not watched:
            continue
        if entry["scope"] == "release" and not release_namespace:
            continue
        resource, _, subresource = entry["resource"].partition("/")
        shown = f"{resource}.{entry['apiGroup']}" if entry["apiGroup"] else resource
        shown += f"/{subresource}" if subresource else ""
        names = tuple(sorted(name.format(leaseName=values["leaseName"])
                             for name in entry.get("resourceNames", [])))
        grants.setdefault((shown, names), set()).update(entry["verbs"])
    return grants

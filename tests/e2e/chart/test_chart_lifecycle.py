"""The chart installed, upgraded and uninstalled on the test bed, and the permissions
its ServiceAccount really has.

The operator is not started (replicaCount=0): these tests pin what the chart does to
the cluster. The CRDs are the test bed's shared ones, so every test leaves them as
crds/ defines them.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from helming import CHART, CRD_NAMES, DATABASE_URL, adopt_crds, documented, get_json, granted
from helpers import helm, kubectl, wait_for

from devcluster import cluster as devcluster_cluster

pytestmark = pytest.mark.e2e

KEEP = "helm.sh/resource-policy"
PROBE_FIELD = "chartUpgradeProbe"


def install_args(*sets: str) -> list[str]:
    args = ["--set", "replicaCount=0", "--set", f"database.url={DATABASE_URL}"]
    for setting in sets:
        args += ["--set", setting]
    return args


def release_name(namespace: str) -> str:
    return f"dk-{namespace.removeprefix('t-')}"


def operator_env(cluster: devcluster_cluster.Cluster, namespace: str, name: str) -> dict[str, Any]:
    deployment = get_json(cluster, "deployment", name, "--namespace", namespace)
    assert deployment is not None, f"no Deployment {namespace}/{name}"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {var["name"]: var.get("value") for var in container["env"]}


def taskrun_schema(cluster: devcluster_cluster.Cluster) -> dict[str, Any]:
    crd = get_json(cluster, "crd", "taskruns.durakube.io")
    assert crd is not None
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])


def chart_with_a_new_taskrun_field(folder: Path) -> Path:
    """A copy of the chart whose TaskRun CRD has one more spec field, as a new chart
    version would."""
    chart = folder / "durakube"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "crds" / "taskruns.yaml"
    text = template.read_text()
    # The spec's properties follow "spec:" in the openAPIV3Schema's properties.
    properties = "\n            properties:\n"
    at = text.index(properties, text.index("\n          spec:\n")) + len(properties)
    field = f"              {PROBE_FIELD}:\n                type: string\n"
    template.write_text(text[:at] + field + text[at:])
    return chart


@pytest.fixture
def watched_namespace(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    core = kubernetes.client.CoreV1Api(kube)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": name}))
    yield name
    core.delete_namespace(name)


def test_install_upgrade_and_uninstall_keep_the_crds_and_the_runs(
        cluster: devcluster_cluster.Cluster, namespace: str, tmp_path: Path) -> None:
    release = release_name(namespace)
    fullname = f"{release}-durakube"
    adopt_crds(cluster, release, namespace)
    helm(cluster, "install", release, str(CHART), "--namespace", namespace,
         *install_args("operator.resyncSeconds=30"))
    try:
        assert operator_env(cluster, namespace, fullname)["DURAKUBE_RESYNC_SECONDS"] == "30"
        for name in CRD_NAMES:
            crd = get_json(cluster, "crd", name)
            assert crd is not None, f"{name} was not installed"
            assert crd["metadata"]["annotations"][KEEP] == "keep"
            assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
        wait_for(lambda: kubectl(cluster, "wait", "--for=condition=Established", "--timeout=30s",
                                 "crd", *CRD_NAMES, check=False).returncode == 0,
                 timeout=90, what="the CRDs established")
        run = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun",
               "metadata": {"name": "survives-uninstall", "namespace": namespace},
               "spec": {"taskRef": {"name": "no-such-task"}, "payload": {}}}
        kubectl(cluster, "apply", "-f", "-", input=yaml.safe_dump(run))

        # A changed value reaches the Deployment.
        helm(cluster, "upgrade", release, str(CHART), "--namespace", namespace,
             *install_args("operator.resyncSeconds=45"))
        assert operator_env(cluster, namespace, fullname)["DURAKUBE_RESYNC_SECONDS"] == "45"

        # A changed CRD reaches the server: templates, not a crds/ folder helm never upgrades.
        assert PROBE_FIELD not in taskrun_schema(cluster)
        helm(cluster, "upgrade", release, str(chart_with_a_new_taskrun_field(tmp_path)),
             "--namespace", namespace, *install_args("operator.resyncSeconds=45"))
        assert taskrun_schema(cluster)[PROBE_FIELD] == {"type": "string"}

        # And back: the shared CRDs end as crds/ defines them.
        helm(cluster, "upgrade", release, str(CHART), "--namespace", namespace,
             *install_args("operator.resyncSeconds=45"))
        assert PROBE_FIELD not in taskrun_schema(cluster)
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace, "--wait")

    assert get_json(cluster, "deployment", fullname, "--namespace", namespace) is None
    assert get_json(cluster, "clusterrole", fullname) is None
    for name in CRD_NAMES:
        assert get_json(cluster, "crd", name) is not None, f"helm uninstall deleted {name}"
    assert get_json(cluster, "taskrun", "survives-uninstall", "--namespace", namespace) is not None


def test_service_account_may_do_what_permissions_yaml_says_cluster_wide(
        cluster: devcluster_cluster.Cluster, namespace: str, watched_namespace: str) -> None:
    release = release_name(namespace)
    fullname = f"{release}-durakube"
    account = f"{namespace}:{fullname}"
    values = {"leaderElection.enabled": True, "leaseName": fullname}
    helm(cluster, "install", release, str(CHART), "--namespace", namespace,
         *install_args("crds.install=false"))
    try:
        # Any namespace is watched; leader election happens in the release namespace only.
        assert granted(cluster, account, watched_namespace) == \
            documented(values, release_namespace=False, watched=True)
        assert granted(cluster, account, namespace) == \
            documented(values, release_namespace=True, watched=True)
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace, "--wait")


def test_service_account_may_do_what_permissions_yaml_says_in_namespaced_mode(
        cluster: devcluster_cluster.Cluster, namespace: str, watched_namespace: str) -> None:
    release = release_name(namespace)
    fullname = f"{release}-durakube"
    account = f"{namespace}:{fullname}"
    values = {"leaderElection.enabled": True, "leaseName": "durakube-leader"}
    helm(cluster, "install", release, str(CHART), "--namespace", namespace,
         *install_args("crds.install=false", f"watchNamespaces={{{watched_namespace}}}",
                       "leaderElection.leaseName=durakube-leader"))
    try:
        assert granted(cluster, account, watched_namespace) == \
            documented(values, release_namespace=False, watched=True)
        # The release namespace is not watched: only the Lease, and the cluster-scoped CRDs.
        assert granted(cluster, account, namespace) == \
            documented(values, release_namespace=True, watched=False)
        assert granted(cluster, account, "default") == \
            documented(values, release_namespace=False, watched=False)
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace, "--wait")

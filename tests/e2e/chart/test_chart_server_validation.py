"""The API server accepts every manifest the chart renders (`kubectl apply --dry-run=server`).

Server-side validation checks what `helm lint` cannot: field names and types of each
kind as this Kubernetes version serves them, RBAC objects, CRD schemas, and the
Prometheus Operator's kinds against their CRDs. Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helming import CHART
from helpers import helm, kubectl, wait_for

from devcluster import cluster as devcluster_cluster

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
MONITORING_CRDS = HERE / "monitoring-crds.yaml"
SCENARIOS = {
    "default": ["--values", str(CHART / "ci" / "default-values.yaml")],
    "all-on": ["--values", str(CHART / "ci" / "all-on-values.yaml")],
    "run-dashboard": ["--values", str(CHART / "ci" / "default-values.yaml"),
                      "--set", "runDashboard.enabled=true"],
}


def render(cluster: devcluster_cluster.Cluster, namespace: str, *args: str) -> str:
    return helm(cluster, "template", "durakube", str(CHART), "--namespace", namespace, *args).stdout


def kinds(manifests: str) -> set[str]:
    return {doc["kind"] for doc in yaml.safe_load_all(manifests) if doc}


def dry_run(cluster: devcluster_cluster.Cluster, manifests: str) -> None:
    # Server-side apply: objects other tests or helm created (the shared CRDs) are
    # compared field by field, with no client-side annotation to complain about. The
    # server's own warnings (a deprecated API, say) still fail the test.
    result = kubectl(cluster, "apply", "--server-side", "--force-conflicts", "--dry-run=server",
                     "--validate=strict", "--field-manager=durakube-chart-tests", "-f", "-",
                     input=manifests, check=False)
    assert result.returncode == 0, f"the API server refused the chart's manifests:\n{result.stderr}"
    assert "Warning" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def monitoring_crds(cluster: devcluster_cluster.Cluster) -> Iterator[None]:
    kubectl(cluster, "apply", "-f", str(MONITORING_CRDS))
    wait_for(lambda: kubectl(cluster, "wait", "--for=condition=Established", "--timeout=30s",
                             "-f", str(MONITORING_CRDS), check=False).returncode == 0,
             timeout=90, what="the monitoring CRDs established")
    yield
    kubectl(cluster, "delete", "--wait=false", "-f", str(MONITORING_CRDS))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_server_accepts_the_rendered_manifests(cluster: devcluster_cluster.Cluster, namespace: str,
                                               scenario: str) -> None:
    manifests = render(cluster, namespace, *SCENARIOS[scenario])
    assert {"Deployment", "CustomResourceDefinition", "ClusterRole"} <= kinds(manifests)
    dry_run(cluster, manifests)


def test_server_accepts_the_namespaced_mode(cluster: devcluster_cluster.Cluster, namespace: str) -> None:
    manifests = render(cluster, namespace, "--values", str(CHART / "ci" / "namespaced-values.yaml"),
                       "--set", f"watchNamespaces={{{namespace}}}")
    assert "Role" in kinds(manifests)
    dry_run(cluster, manifests)


def test_server_accepts_the_monitoring_objects_against_their_crds(
        cluster: devcluster_cluster.Cluster, namespace: str, monitoring_crds: None) -> None:
    # helm installs them when the cluster serves monitoring.coreos.com/v1, which
    # `helm template` is told here and `helm install` would find out for itself.
    manifests = render(cluster, namespace, *SCENARIOS["all-on"], "--api-versions", "monitoring.coreos.com/v1")
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds(manifests)
    dry_run(cluster, manifests)


def test_helm_install_finds_the_monitoring_api_by_itself(
        cluster: devcluster_cluster.Cluster, namespace: str, monitoring_crds: None) -> None:
    # Without the CRDs, which other tests may have applied already: helm would refuse to
    # take them over, even in a dry run. A release name of its own: the session's operator
    # (release "durakube") may own the cluster-scoped names already.
    result = helm(cluster, "install", f"dk-{namespace}", str(CHART), "--namespace", namespace,
                  *SCENARIOS["all-on"], "--set", "crds.install=false", "--dry-run=server")
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds(result.stdout.split("NOTES:")[0]
                                                         .split("MANIFEST:", 1)[1])

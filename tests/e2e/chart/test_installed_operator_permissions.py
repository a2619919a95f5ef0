"""Least privilege in use: the operator the suite runs (installed with the chart,
cluster-wide) may do exactly what charts/durakube/permissions.yaml says, and the
aggregated roles let a namespace's developers run tasks without touching pods.

Every other end-to-end test drives this same operator, so each of them also shows
that these permissions are enough.
"""

from __future__ import annotations

import json

import pytest
from helming import documented, granted
from helpers import InstalledOperator, kubectl

from devcluster import cluster as devcluster_cluster

pytestmark = pytest.mark.e2e


def test_the_running_operator_may_do_exactly_the_table(
        cluster: devcluster_cluster.Cluster, namespace: str, operator: InstalledOperator) -> None:
    account = f"{operator.NAMESPACE}:{operator.RELEASE}"
    values = {"leaderElection.enabled": True, "leaseName": operator.RELEASE}
    assert granted(cluster, account, namespace) == \
        documented(values, release_namespace=False, watched=True)
    assert granted(cluster, account, operator.NAMESPACE) == \
        documented(values, release_namespace=True, watched=True)
    # No Secret may be read anywhere, its own namespace and kube-system included.
    for where in (namespace, operator.NAMESPACE, "kube-system"):
        secrets = {verb for (resource, _), verbs in granted(cluster, account, where).items()
                   if resource == "secrets" for verb in verbs}
        assert secrets <= {"create", "delete"}


def test_the_operator_may_delete_its_key_rings_and_no_other_secret(
        cluster: devcluster_cluster.Cluster, namespace: str, operator: InstalledOperator) -> None:
    account = f"--as=system:serviceaccount:{operator.NAMESPACE}:{operator.RELEASE}"
    for name, labels in (("durakube-keys-spent", {"durakube.io/key-ring": "true"}),
                         ("team-credentials", {}), ("look-alike", {"durakube.io/key-ring": "no"})):
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels},
                  "stringData": {"k": "v"}}
        kubectl(cluster, "create", "-n", namespace, "-f", "-", input=json.dumps(secret))
    assert kubectl(cluster, "delete", "secret", "durakube-keys-spent", "-n", namespace,
                   account, check=False).returncode == 0
    for name in ("team-credentials", "look-alike"):
        refused = kubectl(cluster, "delete", "secret", name, "-n", namespace, account, check=False)
        assert refused.returncode != 0 and "only its attempt key rings" in refused.stderr, refused.stderr
    # Anyone else is not concerned by the policy.
    kubectl(cluster, "delete", "secret", "team-credentials", "-n", namespace)


def test_a_developer_with_durakube_edit_runs_tasks_but_cannot_create_pods(
        cluster: devcluster_cluster.Cluster, namespace: str, operator: InstalledOperator) -> None:
    for user, role in (("dev", f"{operator.RELEASE}-edit"), ("editor", "edit"),
                       ("viewer", "view")):
        kubectl(cluster, "create", "rolebinding", f"{user}-binding", f"--clusterrole={role}",
                f"--user={user}", "-n", namespace)
    for user in ("dev", "editor"):  # directly, and through the built-in edit role
        assert can(cluster, user, namespace, "create", "taskruns.durakube.io")
        assert can(cluster, user, namespace, "delete", "taskruns.durakube.io")
        assert not can(cluster, user, namespace, "patch", "taskruns.durakube.io", "status")
    assert can(cluster, "viewer", namespace, "list", "taskruns.durakube.io")
    assert not can(cluster, "viewer", namespace, "create", "taskruns.durakube.io")
    assert not can(cluster, "dev", namespace, "create", "pods")
    assert not can(cluster, "dev", namespace, "get", "secrets")

    run = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun",
           "metadata": {"name": "made-by-dev"},
           "spec": {"taskRef": {"name": "some-task"}, "payload": {}}}
    made = kubectl(cluster, "create", "-f", "-", "-o", "json", "--as=dev", "-n", namespace,
                   input=json.dumps(run))
    assert json.loads(made.stdout)["metadata"]["name"] == "made-by-dev"
    refused = kubectl(cluster, "run", "sneaky", "--image=busybox", "--as=dev", "-n", namespace,
                      check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr


def can(cluster: devcluster_cluster.Cluster, user: str, namespace: str, verb: str,
        resource: str, subresource: str = "") -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={user}", "-n", namespace]
    if subresource:
        args.append(f"--subresource={subresource}")
    return kubectl(cluster, *args, check=False).stdout.strip() == "yes"

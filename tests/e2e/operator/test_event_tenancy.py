"""Events are a namespace's own, and only those allowed may send them.

The webhook of the installed operator takes a Kubernetes token (reviewed by the real
API server: TokenReview, then SubjectAccessReview for creating TaskEvents in the
namespace) or the chart's generated shared secret, and nothing else. A TaskEvent
reaches the runs of its own namespace only, and nobody but the operator can send a
child run's result.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import kubernetes
import pytest
from helpers import InstalledOperator, get_taskrun, kubectl, wait_for, wait_for_phase
from test_taskrun_lifecycle import create, run_manifest, task_manifest

from devcluster import cluster as devcluster_cluster
from durakube.client import Client
from durakube.store import children, waitpoints

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def post_event(operator: InstalledOperator, namespace: str, key: str, data: Any,
               token: str | None = None) -> tuple[int, dict[str, Any]]:
    path = (f"/v1/namespaces/{urllib.parse.quote(namespace, safe='')}/events/"
            f"{urllib.parse.quote(key, safe='')}")
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(operator.webhook_url + path, method="POST",
                                     data=json.dumps(data).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def service_account_token(cluster: devcluster_cluster.Cluster, namespace: str, name: str,
                          events_allowed: bool) -> str:
    """A token of a new ServiceAccount; with `events_allowed`, bound to durakube-edit there."""
    kubectl(cluster, "create", "serviceaccount", name, "-n", namespace)
    user = f"system:serviceaccount:{namespace}:{name}"
    if events_allowed:
        kubectl(cluster, "create", "rolebinding", f"{name}-events", "--clusterrole=durakube-edit",
                f"--serviceaccount={namespace}:{name}", "-n", namespace)
        # RBAC reaches the authorizer through its informers: wait until it is in force, so
        # the webhook's first review (cached for a few seconds) sees it.
        wait_for(lambda: kubectl(cluster, "auth", "can-i", "create", "taskevents.durakube.io",
                                 f"--as={user}", "-n", namespace, check=False
                                 ).stdout.strip() == "yes",
                 timeout=30, what=f"{user} allowed to create taskevents")
    return kubectl(cluster, "create", "token", name, "-n", namespace).stdout.strip()


def shared_secret(cluster: devcluster_cluster.Cluster, operator: InstalledOperator) -> str:
    out = kubectl(cluster, "get", "secret", f"{operator.RELEASE}-webhook", "-n", operator.NAMESPACE,
                  "-o", "jsonpath={.data.secret}")
    return base64.b64decode(out.stdout).decode()


def start_waiting(custom: kubernetes.client.CustomObjectsApi, key: str,
                  *namespaces: str) -> None:
    """A run named "waits" waiting on `key` in each namespace, suspended."""
    for namespace in namespaces:
        create(custom, namespace, task_manifest("waiter", "await-event"),
               run_manifest("waits", "waiter", {"key": key, "timeout": "1h"}))
    for namespace in namespaces:
        run = wait_for_phase(custom, namespace, "waits", {"Suspended", "Succeeded", "Failed"})
        assert run["status"]["phase"] == "Suspended", run["status"]


def resumed_with(custom: kubernetes.client.CustomObjectsApi, namespace: str) -> Any:
    run = wait_for_phase(custom, namespace, "waits", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"]["timedOut"] is False
    return run["status"]["output"]["data"]


def test_webhook_sends_only_for_callers_allowed_in_the_namespace(
        cluster: devcluster_cluster.Cluster, namespace: str, other_namespace: str,
        custom: kubernetes.client.CustomObjectsApi, operator: InstalledOperator) -> None:
    key = "order-42"
    start_waiting(custom, key, namespace, other_namespace)
    sender = service_account_token(cluster, namespace, "sender", events_allowed=True)
    idle = service_account_token(cluster, namespace, "idle", events_allowed=False)

    status, body = post_event(operator, namespace, key, {"paid": True})
    assert status == 401 and "needs credentials" in body["error"]
    status, body = post_event(operator, namespace, key, {"paid": True}, token="not-a-token")
    assert status == 401, body
    status, body = post_event(operator, namespace, key, {"paid": True}, token=idle)
    assert status == 403, body
    assert f"system:serviceaccount:{namespace}:idle may not send events" in body["error"]
    # Allowed in its own namespace is not allowed in another one.
    status, body = post_event(operator, other_namespace, key, {"paid": True}, token=sender)
    assert status == 403, body
    assert get_taskrun(custom, other_namespace, "waits")["status"]["phase"] == "Suspended"

    status, body = post_event(operator, namespace, key, {"paid": True}, token=sender)
    assert status == 202, body
    # Delivered to the waiter of this namespace only, though another waits on the same key.
    assert body["deliveredTo"] == 1 and body["buffered"] is False
    assert resumed_with(custom, namespace) == {"paid": True}
    assert get_taskrun(custom, other_namespace, "waits")["status"]["phase"] == "Suspended"

    # The chart's shared secret may send into any namespace.
    status, body = post_event(operator, other_namespace, key, {"paid": "too"},
                              token=shared_secret(cluster, operator))
    assert status == 202 and body["deliveredTo"] == 1, body
    assert resumed_with(custom, other_namespace) == {"paid": "too"}


def test_old_global_event_route_is_gone(cluster: devcluster_cluster.Cluster,
                                        operator: InstalledOperator) -> None:
    request = urllib.request.Request(operator.webhook_url + "/v1/events/order-1", method="POST",
                                     data=b"{}", headers={
                                         "Authorization": f"Bearer {shared_secret(cluster, operator)}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 404


def test_task_event_reaches_only_runs_of_its_namespace(
        cluster: devcluster_cluster.Cluster, namespace: str, other_namespace: str,
        custom: kubernetes.client.CustomObjectsApi) -> None:
    key = "shared-key"
    start_waiting(custom, key, namespace, other_namespace)
    event = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskEvent",
             "metadata": {"name": "go"}, "spec": {"key": key, "data": {"go": True}}}
    kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=json.dumps(event))
    assert resumed_with(custom, namespace) == {"go": True}

    def delivered() -> dict[str, Any] | None:
        found = custom.get_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                    "taskevents", "go")
        return dict(found["status"]) if (found.get("status") or {}).get("phase") else None

    assert wait_for(delivered, what="the TaskEvent's delivery")["deliveredTo"] == 1
    # Nor was it buffered for the other namespace: its run still waits.
    assert get_taskrun(custom, other_namespace, "waits")["status"]["phase"] == "Suspended"


def test_a_child_result_cannot_be_forged_by_any_sender(
        cluster: devcluster_cluster.Cluster, namespace: str, operator: InstalledOperator) -> None:
    key = children.result_key(namespace, "parent-c1")
    forged = {"phase": "Succeeded", "output": "forged", "error": None}

    # The webhook, even with the shared secret.
    status, body = post_event(operator, namespace, key, forged, token=shared_secret(cluster, operator))
    assert status == 403 and "reserved" in body["error"] and "only the operator" in body["error"]

    # A TaskEvent: refused by the API server.
    event = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskEvent",
             "metadata": {"name": "forged"}, "spec": {"key": key, "data": forged}}
    result = kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=json.dumps(event),
                     check=False)
    assert result.returncode != 0 and "reserved" in result.stderr

    # The Python client and the CLI's send-event.
    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace,
                database_url=operator.database_url) as client:
        with pytest.raises(waitpoints.ReservedEventKey, match="only the operator sends"):
            client.send_event(key, forged)

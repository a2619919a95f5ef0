"""Bad event data, table-driven, through every door an event comes in by: the webhook,
a TaskEvent and the client. Each is refused with a clear message before anything is
stored, and the run waiting on the key still gets the next good event."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import kubernetes
import pytest
from helpers import InstalledOperator, get_taskrun, kubectl, wait_for
from test_event_tenancy import resumed_with, start_waiting

from devcluster import cluster as devcluster_cluster
from durakube import errors, limits
from durakube.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


@pytest.fixture
def webhook_secret(cluster: devcluster_cluster.Cluster, operator: InstalledOperator) -> str:
    out = kubectl(cluster, "get", "secret", f"{operator.RELEASE}-webhook", "-n", operator.NAMESPACE,
                  "-o", "jsonpath={.data.secret}")
    return base64.b64decode(out.stdout).decode()


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# (case, raw body, status, words of the answer)
RAW_BODIES = [
    ("not-json", b"{oops", 400, "not JSON"),
    ("not-utf-8", b'{"name": "\xff\xfe"}', 400, "not UTF-8"),
    ("nests-too-deep", json.dumps(deep(limits.MAX_DEPTH + 5)).encode(), 400,
     f"nests deeper than {limits.MAX_DEPTH} levels"),
    ("recursion-bomb", b"[" * 200_000 + b"]" * 200_000, 400, "nests deeper"),
    ("nul-character", json.dumps({"note": "a\u0000b"}).encode(), 400, "NUL character"),
    ("too-large", json.dumps({"blob": "x" * (2 * 1024 * 1024)}).encode(), 413, ""),
]


def post_raw(operator: InstalledOperator, namespace: str, key: str, body: bytes,
             secret: str) -> tuple[int, str]:
    path = (f"/v1/namespaces/{urllib.parse.quote(namespace, safe='')}/events/"
            f"{urllib.parse.quote(key, safe='')}")
    request = urllib.request.Request(
        operator.webhook_url + path, method="POST", data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def test_bad_event_data_through_the_webhook_is_refused_and_good_data_still_arrives(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator, webhook_secret: str) -> None:
    start_waiting(custom, "order-7", namespace)
    for case, body, status, words in RAW_BODIES:
        answer = post_raw(operator, namespace, "order-7", body, webhook_secret)
        assert answer[0] == status and words in answer[1], (case, answer)
    # The operator kept serving, nothing was delivered or buffered, and a good event works.
    assert get_taskrun(custom, namespace, "waits")["status"]["phase"] == "Suspended"
    good = post_raw(operator, namespace, "order-7", json.dumps({"ok": "ünïcode ☕"}).encode(),
                    webhook_secret)
    assert good[0] == 202, good
    assert resumed_with(custom, namespace) == {"ok": "ünïcode ☕"}


BAD_DATA = [
    ("nests-too-deep", {"list": deep(limits.MAX_DEPTH + 5)}, f"nests deeper than {limits.MAX_DEPTH}"),
    ("nul-character", {"note": "a\u0000b"}, "NUL character"),
]


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_event_data_through_a_taskevent_fails_it_with_the_reason(
        namespace: str, custom: kubernetes.client.CustomObjectsApi, data: Any, message: str) -> None:
    custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskevents", {
        "apiVersion": "durakube.io/v1alpha1", "kind": "TaskEvent", "metadata": {"name": "bad"},
        "spec": {"key": "order-8", "data": data}})

    def status() -> dict[str, Any] | None:
        body = custom.get_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                   "taskevents", "bad")
        return body.get("status") if (body.get("status") or {}).get("phase") else None

    seen = wait_for(status, 90, what="the TaskEvent's status")
    assert seen["phase"] == "Failed" and message in seen["message"], seen


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_event_data_through_the_client_is_refused(
        cluster: devcluster_cluster.Cluster, namespace: str, operator: InstalledOperator,
        data: Any, message: str) -> None:
    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace,
                database_url=operator.database_url) as client:
        with pytest.raises(errors.ValueRefused, match=message):
            client.send_event("order-9", data)

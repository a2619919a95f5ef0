"""Bad input, table-driven, through every door: each is refused at the earliest layer
that can say why, with a clear message, and the operator keeps running every run.

- kubectl: the CRD's schema refuses what it can describe (types, patterns, unknown
  fields); the operator fails what it cannot (nesting, NUL characters) before any pod.
- the client: refuses before it creates anything.
- the worker: a step result past the limits fails the run, not the worker.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from clientbed import client, install_task
from helpers import get_taskrun, kubectl, wait_for_phase

from devcluster import cluster as devcluster_cluster
from durakube import errors, limits
from durakube.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
__all__ = ["client"]


def deep(levels: int) -> Any:
    value: Any = {"leaf": True}
    for _ in range(levels - 1):
        value = {"next": value}
    return value


def run_body(name: str, payload: Any, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun", "metadata": {"name": name},
            "spec": {"taskRef": {"name": "nap"}, "payload": payload, **spec}}


# (case, spec fields, where it is refused: "schema" or a TaskRun failure reason, message)
THROUGH_KUBECTL = [
    ("wrong-type", {"priority": "high"}, "schema", "spec.priority"),
    ("invalid-duration", {"delay": "5 minutes"}, "schema", "spec.delay"),
    ("unknown-field", {"colour": "blue"}, "schema", 'unknown field "spec.colour"'),
    ("payload-not-an-object", {"payload": [1, 2]}, "schema", "spec.payload"),
    ("too-deep", {"payload": deep(limits.MAX_DEPTH + 1)}, "InvalidPayload",
     f"nests deeper than {limits.MAX_DEPTH} levels"),
    ("nul-character", {"payload": {"seconds": 0, "note": "a\u0000b"}}, "InvalidPayload",
     "NUL character"),
]


@pytest.mark.parametrize(("spec", "refused_by", "message"),
                         [case[1:] for case in THROUGH_KUBECTL], ids=[c[0] for c in THROUGH_KUBECTL])
def test_bad_taskruns_through_kubectl(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, spec: dict[str, Any], refused_by: str,
        message: str) -> None:
    install_task(custom, namespace, "nap", "nap", "behaviours")
    body = run_body("bad", {"seconds": 0})
    body["spec"].update(spec)
    applied = kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=json.dumps(body),
                      check=False)
    if refused_by == "schema":
        assert applied.returncode != 0 and message in applied.stderr, applied.stderr
        return
    assert applied.returncode == 0, applied.stderr
    run = wait_for_phase(custom, namespace, "bad", {"Failed", "Succeeded"})
    condition = run["status"]["conditions"][-1]
    assert (condition["reason"], run["status"]["phase"]) == (refused_by, "Failed")
    assert message in condition["message"]
    assert run["status"].get("attempt", 0) == 0  # refused before any pod


CLIENT_PAYLOADS = [
    ("too-large", {"blob": "x" * (limits.MAX_VALUE_BYTES + 1)},
     f"over the {limits.MAX_VALUE_BYTES}-byte limit"),
    ("too-deep", deep(limits.MAX_DEPTH + 1), f"nests deeper than {limits.MAX_DEPTH} levels"),
    ("nul-character", {"note": "\u0000"}, "NUL character"),
    ("not-an-object", ["a", "list"], "expected a JSON object"),
]


@pytest.mark.parametrize(("payload", "message"), [c[1:] for c in CLIENT_PAYLOADS],
                         ids=[c[0] for c in CLIENT_PAYLOADS])
def test_bad_payloads_through_the_client(
        client: Client, namespace: str, custom: kubernetes.client.CustomObjectsApi,
        payload: Any, message: str) -> None:
    install_task(custom, namespace, "nap", "nap", "behaviours")
    with pytest.raises(errors.InvalidPayload, match=message):
        client.trigger("nap", payload)
    assert custom.list_namespaced_custom_object("durakube.io", "v1alpha1", namespace,
                                                "taskruns")["items"] == []


def test_a_step_result_past_the_limit_fails_the_run_and_the_next_run_succeeds(
        client: Client, namespace: str, custom: kubernetes.client.CustomObjectsApi) -> None:
    install_task(custom, namespace, "oversized-step", "oversized-step", "behaviours")
    install_task(custom, namespace, "nap", "nap", "behaviours")
    big = client.trigger("oversized-step", {"bytes": limits.MAX_VALUE_BYTES + 10})
    unicode = client.trigger("nap", {"seconds": 0, "clé": "naïve ☕", "日本": ["語"]})
    failed = wait_for_phase(custom, namespace, big.name, {"Failed", "Succeeded"})
    assert failed["status"]["phase"] == "Failed"
    error = failed["status"]["lastError"]
    assert error["type"] == "durakube.errors.ValueRefused"
    assert f"over the {limits.MAX_VALUE_BYTES}-byte limit" in error["message"]
    assert failed["status"]["attempt"] == 1  # not retried: the same code returns the same
    assert wait_for_phase(custom, namespace, unicode.name, {"Failed", "Succeeded"})[
        "status"]["phase"] == "Succeeded"
    assert get_taskrun(custom, namespace, unicode.name)["spec"]["payload"]["日本"] == ["語"]

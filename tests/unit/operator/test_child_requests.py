"""Child requests: what the operator checks before it creates a child a worker asked for."""

from __future__ import annotations

from typing import Any

import pytest

from durakube.store import children as stored
from durakube_operator import children

PARENT = {"metadata": {"name": "report", "namespace": "team-a", "uid": "uid-1"}}


def request(**fields: Any) -> stored.ChildRun:
    base: dict[str, Any] = {
        "parent_run_id": "uid-1", "seq": 3, "task": "resize", "payload": {"image": "a.png"},
        "options": {}, "parent_namespace": "team-a", "parent_name": "report", "written_live": True}
    return stored.ChildRun(**{**base, **fields})


def test_a_child_takes_namespace_name_and_owner_from_the_parents_taskrun() -> None:
    # The operator's row says team-b; the API object, whose uid matches, says team-a.
    child = request(parent_namespace="team-b", options={"queue": "gpu", "concurrencyKey": "k"})
    manifest = children.child_manifest(child, PARENT, children.check_request(child, PARENT))
    assert (manifest["metadata"]["namespace"], manifest["metadata"]["name"]) == ("team-a", "report-c3")
    owner = manifest["metadata"]["ownerReferences"][0]
    assert (owner["name"], owner["uid"]) == ("report", "uid-1")
    assert manifest["spec"] == {"taskRef": {"name": "resize"}, "payload": {"image": "a.png"},
                                "queue": "gpu", "concurrencyKey": "k"}


@pytest.mark.parametrize(("child", "parent", "reason"), [
    (request(options={"namespace": "team-b"}), PARENT, "namespace: Extra inputs are not permitted"),
    (request(options={"taskRef": {"name": "x"}}), PARENT, "taskRef: Extra inputs"),
    (request(options={"priority": "high"}), PARENT, "priority: Input should be a valid integer"),
    (request(written_live=False), PARENT, "not written by a live attempt"),
    (request(), None, "no longer exists"),
    (request(), {"metadata": {**PARENT["metadata"], "uid": "someone-else"}}, "no longer exists"),
], ids=["namespace-option", "task-ref-option", "bad-priority", "not-live", "no-parent",
        "parent-of-another-uid"])
def test_a_request_failing_a_check_is_refused_with_the_reason(
        child: stored.ChildRun, parent: dict[str, Any] | None, reason: str) -> None:
    with pytest.raises(children.Refused, match=reason):
        children.check_request(child, parent)

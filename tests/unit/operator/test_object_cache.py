"""The cache of watched objects: never older than the operator's own writes, never trusted
for longer than its age limit, and a GET on a miss."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from durakube_operator import caching


def body(name: str = "r", version: str = "10", uid: str = "u1", phase: str = "Queued") -> dict[str, Any]:
    return {"metadata": {"namespace": "team", "name": name, "uid": uid, "resourceVersion": version},
            "status": {"phase": phase}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("held", "seen", "kept"),
    [
        (body(version="10"), body(version="11", phase="Running"), "Running"),
        (body(version="11", phase="Running"), body(version="10"), "Running"),
        (body(version="11", phase="Running"), body(version="11", phase="Running"), "Running"),
        (body(version="11", phase="Running"), body(version="3", uid="u2"), "Queued"),
        (body(version="x", phase="Running"), body(version="3"), "Queued"),
    ],
    ids=["newer-replaces", "older-event-after-own-write-is-ignored", "same-version-kept",
         "recreated-object-replaces", "unreadable-versions-replace"],
)
def test_record_keeps_the_newest_body(held: dict[str, Any], seen: dict[str, Any], kept: str) -> None:
    cache = caching.ObjectCache()
    cache.record(held)
    cache.record(seen)
    got = cache.get("team", "r")
    assert got is not None and got["status"]["phase"] == kept


def test_record_says_whether_the_body_is_news() -> None:
    cache = caching.ObjectCache()
    assert cache.record(body(version="10"))
    # The operator's own write, recorded from its answer, then echoed by the watch.
    assert cache.record(body(version="11", phase="Running"))
    assert not cache.record(body(version="11", phase="Running"))
    assert not cache.record(body(version="10"))  # a late event from before that write
    assert cache.record(body(version="12", phase="Succeeded"))
    assert cache.record(body(version="3", uid="u2"))  # the same name, a new object


def test_an_echo_renews_the_trust_in_a_body() -> None:
    clock = Clock()
    cache = caching.ObjectCache(max_age=30.0, clock=clock)
    cache.record(body())
    clock.now += 25.0
    assert not cache.record(body())
    clock.now += 25.0
    assert cache.get("team", "r") is not None


def test_bodies_are_trusted_only_for_their_age_limit() -> None:
    clock = Clock()
    cache = caching.ObjectCache(max_age=30.0, clock=clock)
    cache.record(body())
    clock.now += 30.0
    assert cache.get("team", "r") is not None
    clock.now += 0.5
    assert cache.get("team", "r") is None
    cache.record(body(version="12"))
    assert cache.get("team", "r") is not None


def test_forgotten_bodies_are_gone() -> None:
    cache = caching.ObjectCache()
    cache.record(body())
    cache.forget("team", "r")
    assert cache.get("team", "r") is None and len(cache) == 0


class FakeApi:
    """Counts GETs; answers from `objects`."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.gets: list[str] = []

    async def get_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append(name)
        return self.objects.get(name)


async def test_a_miss_reads_the_api_once_then_the_cache() -> None:
    api = FakeApi({"r": body()})
    reads = caching.CachedReads(api, sweep_seconds=300.0)  # type: ignore[arg-type]
    assert (await reads.get_taskrun("team", "r")) == body()
    assert (await reads.get_taskrun("team", "r")) == body()
    assert api.gets == ["r"]


async def test_a_body_recorded_by_a_watch_needs_no_read() -> None:
    api = FakeApi({})
    reads = caching.CachedReads(api, sweep_seconds=300.0)  # type: ignore[arg-type]
    reads.taskruns.record(body(phase="Running"))
    got = await reads.get_taskrun("team", "r")
    assert got is not None and got["status"]["phase"] == "Running" and api.gets == []


async def test_an_object_the_api_no_longer_has_is_dropped() -> None:
    api = FakeApi({})
    reads = caching.CachedReads(api, sweep_seconds=300.0)  # type: ignore[arg-type]
    clock = Clock()
    reads.taskruns = caching.ObjectCache(max_age=0.0, clock=clock)
    reads.taskruns.record(body())
    clock.now += 1
    assert await reads.get_taskrun("team", "r") is None
    assert len(reads.taskruns) == 0 and api.gets == ["r"]


def test_what_no_pass_reads_is_not_kept() -> None:
    applied = body(phase="Running")
    applied["metadata"] |= {"managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                            "annotations": {caching.LAST_APPLIED: '{"spec": {}}',
                                            "durakube.io/traceparent": "00-ab-cd-01"}}
    cache = caching.ObjectCache()
    cache.record(applied)
    kept = cache.get("team", "r")
    assert kept is not None and kept["status"] == {"phase": "Running"}
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"durakube.io/traceparent": "00-ab-cd-01"}
    assert "managedFields" in applied["metadata"]  # what the watch delivered is left as it was


def test_a_pod_keeps_its_status_node_and_images_only() -> None:
    pod = {"metadata": {"namespace": "team", "name": "r-1", "uid": "p1", "resourceVersion": "5",
                        "ownerReferences": [{"kind": "TaskRun", "name": "r", "controller": True}],
                        "managedFields": [{"manager": "durakube"}]},
           "spec": {"nodeName": "node-1", "volumes": [{"name": "tmp"}],
                    "containers": [{"name": "worker", "image": "tasks:1", "env": [{"name": "A"}]}]},
           "status": {"phase": "Running", "containerStatuses": [{"imageID": "tasks@sha256:ab"}]}}
    slim = caching.slim_pod(pod)
    assert slim["spec"] == {"nodeName": "node-1", "containers": [{"name": "worker", "image": "tasks:1"}]}
    assert slim["status"] == pod["status"]
    assert slim["metadata"]["ownerReferences"] == pod["metadata"]["ownerReferences"]
    assert "managedFields" not in slim["metadata"]


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Canceled", "Suspended"])
def test_a_run_at_rest_is_kept_as_text_and_read_back_whole(phase: str) -> None:
    run = body(phase=phase)
    run["spec"] = {"taskRef": {"name": "t"}, "payload": {"n": [1, 2.5, None, "é"]}}
    cache = caching.ObjectCache(resting=caching.taskrun_at_rest)
    assert cache.record(run)
    (held,) = cache.held()
    assert isinstance(held._kept, bytes) and held.uid == "u1" and held.version == 10
    assert cache.get("team", "r") == run
    # Its versions still compare without reading the text back.
    assert not cache.record(body(version="9", phase="Running"))
    assert not cache.record(run)
    assert cache.record(body(version="11", phase="Running"))
    (held,) = cache.held()
    assert isinstance(held._kept, dict)  # a run in motion is read on every pass: kept as dicts


def test_a_resting_run_is_compressed_from_what_resting_runs_share() -> None:
    """With the dictionary a typical finished run takes little more than half what it
    took compressed alone; any body reads back as it was, one sharing nothing with the
    dictionary too."""
    run = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskRun",
           "metadata": {"creationTimestamp": "2026-11-27T00:00:00Z", "generation": 1,
                        "name": "nightly-report-28871", "namespace": "analytics",
                        "resourceVersion": "4411902", "uid": "0b7c36a4-4f7e-4d8e-9b55-3c1f0f3f2a11"},
           "spec": {"payload": {"day": "2026-11-26"}, "priority": 0, "taskRef": {"name": "nightly-report"}},
           "status": {"attempt": 2, "completedSteps": 5, "completionTime": "2026-11-27T00:04:10Z",
                      "conditions": [{"lastTransitionTime": "2026-11-27T00:04:10Z",
                                      "message": "the task returned", "observedGeneration": 1,
                                      "reason": "Succeeded", "status": "True", "type": "Succeeded"}],
                      "infrastructureFailures": 1, "observedGeneration": 1, "phase": "Succeeded",
                      "podName": "nightly-report-28871-2", "runId": "5d0c0d0e-7a43-4f0b-8f6e-2b9c7d1e0a42",
                      "startTime": "2026-11-27T00:00:01Z"}}
    text = json.dumps(run, separators=(",", ":")).encode()
    assert caching.decompress(caching.compress(run)) == run
    assert len(caching.compress(run)) < 0.6 * len(zlib.compress(text, 1))
    odd = {"x": ["é", 1.5, None, {"y": "z" * 3000}]}
    assert caching.decompress(caching.compress(odd)) == odd


def test_the_taskrun_cache_rests_final_and_suspended_runs_only() -> None:
    reads = caching.CachedReads(FakeApi({}), sweep_seconds=300.0)  # type: ignore[arg-type]
    for name, phase in [("a", "Succeeded"), ("b", "Suspended"), ("c", "Running"), ("d", "Queued")]:
        reads.taskruns.record(body(name=name, phase=phase))
    resting = {held.key[1] for held in reads.taskruns.held() if isinstance(held._kept, bytes)}
    assert resting == {"a", "b"}


def pending_pod(version: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "team", "name": "r-1", "uid": "p1", "resourceVersion": version},
            "spec": {"containers": [{"name": "worker", "image": "tasks:1"}]},
            "status": {"phase": "Pending", **status}}


def test_a_pod_change_no_decision_reads_is_kept_but_no_news() -> None:
    reads = caching.CachedReads(FakeApi({}), sweep_seconds=300.0)  # type: ignore[arg-type]
    assert reads.pods.record(pending_pod("5"))
    unschedulable = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    assert not reads.pods.record(pending_pod("6", conditions=unschedulable))
    got = reads.pods.get("team", "r-1")
    assert got is not None and got["metadata"]["resourceVersion"] == "6"  # the newest, all the same
    creating = [{"name": "worker", "state": {"waiting": {"reason": "ContainerCreating"}}}]
    assert reads.pods.record(pending_pod("7", conditions=unschedulable, containerStatuses=creating))
    assert reads.pods.record({**pending_pod("8"), "status": {"phase": "Running"}})
    gone = pending_pod("9")
    gone["metadata"]["deletionTimestamp"] = "2026-11-26T10:00:00Z"
    assert reads.pods.record(gone)
    taken = [{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}]
    assert reads.pods.record({**gone, "metadata": {**gone["metadata"], "resourceVersion": "10"},
                              "status": {"phase": "Pending", "conditions": taken}})
    assert reads.pods.record(pending_pod("3") | {"metadata": {**pending_pod("3")["metadata"],
                                                               "uid": "p2"}})  # a new pod

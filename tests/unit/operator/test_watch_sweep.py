"""The re-list that finds what the watches missed: a pod or TaskRun gone or changed
without its event gets its run a pass (or its deletion handled); what the caches hold
at the listed version, or recorded after the list began, is left alone."""

from __future__ import annotations

from typing import Any

from durakube_operator import caching, kubeapi, sweeping


def pod(name: str, version: str, run: str = "r") -> dict[str, Any]:
    return {"metadata": {"namespace": "team", "name": name, "uid": f"uid-{name}", "resourceVersion": version,
                         "ownerReferences": [{"kind": "TaskRun", "name": run, "controller": True}]},
            "status": {"phase": "Pending"}}


def taskrun(name: str, version: str, uid: str | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "team", "name": name, "uid": uid or f"uid-{name}",
                         "resourceVersion": version}}


def key(body: dict[str, Any], version: str | None = None, uid: str | None = None) -> kubeapi.ObjectKey:
    meta = body["metadata"]
    return kubeapi.ObjectKey(meta["namespace"], meta["name"], uid or meta["uid"],
                             version or meta["resourceVersion"])


class FakeApi:
    def __init__(self, listed: dict[str, list[kubeapi.ObjectKey]]) -> None:
        self.listed = listed
        self.calls: list[tuple[str, str | None, str | None]] = []

    async def list_metadata(self, kind: str, namespace: str | None,
                            label_selector: str | None = None) -> list[kubeapi.ObjectKey]:
        self.calls.append((kind, namespace, label_selector))
        return self.listed[kind]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def loop(listed: dict[str, list[kubeapi.ObjectKey]], namespaces: tuple[str, ...] = ()
         ) -> tuple[sweeping.SweepLoop, FakeApi, list[tuple[str, str]], list[str]]:
    api = FakeApi(listed)
    reads = caching.CachedReads(api, sweep_seconds=300.0)  # type: ignore[arg-type]
    clock = Clock()
    clock.now = -1.0  # everything cached before the list
    reads.pods.clock = reads.taskruns.clock = clock
    changed: list[tuple[str, str]] = []
    deleted: list[str] = []

    async def on_deleted(body: dict[str, Any]) -> None:
        deleted.append(body["metadata"]["name"])

    sweep = sweeping.SweepLoop(api, reads, namespaces, 300.0,  # type: ignore[arg-type]
                               changed=lambda namespace, name: changed.append((namespace, name)),
                               deleted=on_deleted)
    return sweep, api, changed, deleted


async def test_a_pod_gone_or_changed_unseen_gets_its_run_a_pass() -> None:
    kept, gone, changed_pod = pod("a-1", "10", "a"), pod("b-1", "10", "b"), pod("c-1", "10", "c")
    sweep, api, changed, _ = loop({"pods": [key(kept), key(changed_pod, version="12")], "taskruns": []})
    for body in (kept, gone, changed_pod):
        sweep.reads.pods.record(body)
    assert await sweep.sweep_pods() == 2
    assert sorted(changed) == [("team", "b"), ("team", "c")]
    assert sweep.reads.pods.get("team", "a-1") is not None
    assert sweep.reads.pods.get("team", "b-1") is None and sweep.reads.pods.get("team", "c-1") is None
    assert api.calls == [("pods", None, "app.kubernetes.io/managed-by=durakube")]


async def test_a_taskrun_deleted_unseen_is_handled_as_its_deletion() -> None:
    kept, gone = taskrun("kept", "7"), taskrun("gone", "7")
    recreated, stale = taskrun("again", "7"), taskrun("stale", "7")
    sweep, _, changed, deleted = loop({"pods": [], "taskruns": [
        key(kept), key(recreated, uid="uid-new"), key(stale, version="9")]})
    for body in (kept, gone, recreated, stale):
        sweep.reads.taskruns.record(body)
    assert await sweep.sweep_taskruns() == 3
    assert sorted(deleted) == ["again", "gone"]
    assert sorted(changed) == [("team", "again"), ("team", "stale")]
    assert sweep.reads.taskruns.get("team", "kept") is not None
    assert sweep.reads.taskruns.get("team", "stale") is None


async def test_what_was_recorded_after_the_list_began_is_left_alone() -> None:
    sweep, _, changed, deleted = loop({"pods": [], "taskruns": []})
    sweep.reads.taskruns.clock = sweep.reads.pods.clock = lambda: float("inf")
    sweep.reads.taskruns.record(taskrun("new", "20"))
    sweep.reads.pods.record(pod("new-1", "21", "new"))
    assert await sweep.sweep() == 0
    assert changed == [] and deleted == []


async def test_watched_namespaces_are_listed_one_by_one() -> None:
    sweep, api, _, _ = loop({"pods": [], "taskruns": []}, namespaces=("team", "ops"))
    await sweep.sweep()
    assert [(kind, namespace) for kind, namespace, _ in api.calls] == [
        ("pods", "team"), ("pods", "ops"), ("taskruns", "team"), ("taskruns", "ops")]


async def test_the_first_round_lists_nothing() -> None:
    sweep, api, _, _ = loop({"pods": [], "taskruns": []})
    assert await sweep.run_pass() is None and api.calls == []
    await sweep.run_pass()
    assert len(api.calls) == 2

"""What the operator has seen of TaskRuns, Tasks and attempt pods, so passes read no API.

kopf's watch handlers put every object they see here (`ObjectCache.record`), and
the reconciler's own status patches put their answers here too, so the cache is
never older than the operator's last write: a pass right after a patch sees the
patched status, not the one before it. Readers (`CachedReads`) fall back to a GET
when an object is missing (a watch not caught up at start, or a pod just
created) or was recorded longer ago than `max_age` (a watch can miss a deletion
while it re-lists, so nothing is trusted for longer than one resync), and remember
what the GET returned.

Bodies are kept as the API sent them, less what no pass reads (`slim`,
`slim_pod`): with 10,000 runs present, an object's server-side-apply bookkeeping
(`metadata.managedFields`), `kubectl apply`'s copy of what it applied and a pod's
full spec would be most of the operator's memory. A TaskRun at rest (finished, or
suspended in a long wait) is kept as its compact JSON text, compressed with a
dictionary of what resting TaskRuns have in common (`RESTING_DICTIONARY`): about 200
bytes against six kilobytes as Python dicts (400 compressed without the dictionary),
and read back only when a pass looks at it (some tens of microseconds): almost every
run present on a busy cluster is at rest, and a pass reads one rarely (when its wait
ends, its TTL expires, or it changes). A pod event that changes nothing a decision
reads (`pods.decisive`) is kept but is no news. Bodies read are never changed in
place: callers must not mutate them. Knows nothing of runs but which phases rest;
holds no lock (one event loop).
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from durakube import resources
from durakube_operator import kubeapi, pods

Key = tuple[str, str]  # (namespace, name)
Body = dict[str, Any]

# TaskRun phases in which a run holds no pod and waits on nothing the operator watches.
RESTING_PHASES = resources.FINAL_PHASES | {resources.Phase.SUSPENDED}

# What `kubectl apply` keeps of the object it applied: the spec again, as JSON text.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(body: Body) -> Body:
    """`body` without its managed fields and `kubectl apply`'s copy of itself (a shallow
    copy where anything goes; `body` itself is left as it was)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if "managedFields" not in meta and LAST_APPLIED not in annotations:
        return body
    meta = {key: value for key, value in meta.items() if key != "managedFields"}
    if LAST_APPLIED in annotations:
        meta["annotations"] = {key: value for key, value in annotations.items()
                               if key != LAST_APPLIED}
    return {**body, "metadata": meta}


def slim_pod(body: Body) -> Body:
    """What passes read of an attempt pod: its metadata, node, containers' names and
    images (`pinning`) and status; not its environment, volumes or security settings."""
    body = slim(body)
    spec = body.get("spec") or {}
    kept: Body = {"containers": [{"name": container.get("name"), "image": container.get("image")}
                                 for container in spec.get("containers") or []]}
    if "nodeName" in spec:
        kept["nodeName"] = spec["nodeName"]
    return {**body, "spec": kept}


def version_number(text: object) -> int | None:
    """A resourceVersion as a number, or None. resourceVersion is opaque to clients;
    etcd's are integers, compared only as a guard."""
    return int(text) if isinstance(text, str) and text.isdigit() else None


def taskrun_at_rest(body: Body) -> bool:
    return (body.get("status") or {}).get("phase") in RESTING_PHASES


def _resting_samples() -> bytes:
    """Resting TaskRuns as the API server sends them (a custom resource's keys sorted),
    less what `slim` drops, with the values that differ from run to run left empty."""
    samples = []
    for phase, status in ((resources.Phase.SUCCEEDED, "True"), (resources.Phase.FAILED, "False"),
                          (resources.Phase.CANCELED, "False"), (resources.Phase.SUSPENDED, "Unknown")):
        condition = {"lastTransitionTime": "2026-01-01T00:00:00Z", "message": "",
                     "observedGeneration": 1, "reason": phase.value, "status": status,
                     "type": "Succeeded"}
        samples.append({
            "apiVersion": resources.API_VERSION, "kind": "TaskRun",
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1,
                         "labels": {resources.TAG_LABEL_PREFIX: "true"}, "name": "",
                         "namespace": "", "resourceVersion": "", "uid": ""},
            "spec": {"cancel": False, "payload": {}, "priority": 0, "taskRef": {"name": ""}},
            "status": {"attempt": 1, "completedSteps": 1, "completionTime": "2026-01-01T00:00:00Z",
                       "conditions": [condition], "currentStep": "", "infrastructureFailures": 0,
                       "observedGeneration": 1, "oomKills": 0, "phase": phase.value,
                       "podName": "", "resumes": 0, "runId": "",
                       "startTime": "2026-01-01T00:00:00Z", "waitingFor": {}}})
    return b"".join(json.dumps(sample, separators=(",", ":")).encode() for sample in samples)


# What deflate starts from when it compresses a resting TaskRun: its keys and their
# usual values are then a few bytes each, where a text of a few hundred bytes would
# otherwise spell most of them out once. Raw deflate: no header, no checksum (the
# text is ours, in memory). Changing it makes the bodies held unreadable, so it is
# made once, at import.
RESTING_DICTIONARY = _resting_samples()
_WINDOW = -15


def compress(body: Body) -> bytes:
    """`body` as compact JSON, deflated from `RESTING_DICTIONARY`."""
    deflating = zlib.compressobj(1, zlib.DEFLATED, _WINDOW, zdict=RESTING_DICTIONARY)
    return deflating.compress(json.dumps(body, separators=(",", ":")).encode()) + deflating.flush()


def decompress(data: bytes) -> Body:
    inflating = zlib.decompressobj(_WINDOW, zdict=RESTING_DICTIONARY)
    body: Body = json.loads(inflating.decompress(data) + inflating.flush())
    return body


class Held:
    """One object held: who it is, its version and when it was recorded, readable without
    its body; the body itself as a dict, or as compressed compact JSON when it rests."""

    __slots__ = ("_kept", "key", "recorded", "uid", "version")

    def __init__(self, key: Key, uid: str | None, version: int | None, recorded: float,
                 kept: Body | bytes) -> None:
        self.key, self.uid, self.version, self.recorded = key, uid, version, recorded
        self._kept = kept

    @property
    def body(self) -> Body:
        kept = self._kept
        return decompress(kept) if isinstance(kept, bytes) else kept

    def seen_again(self, recorded: float) -> Held:
        return Held(self.key, self.uid, self.version, recorded, self._kept)


@dataclass
class ObjectCache:
    """The newest body seen of each object of one kind, by (namespace, name)."""

    # Seconds a body is trusted after it was recorded (None: until an event replaces it).
    max_age: float | None = None
    # What of a body is kept (the rest is dropped as it is recorded).
    keep: Callable[[Body], Body] = slim
    # Which bodies are kept as compressed JSON (read seldom, held long).
    resting: Callable[[Body], bool] | None = None
    # What of a body passes read: a newer version of an object that changes none of it
    # is kept, but is no news (None: every newer version is news).
    decisive: Callable[[Body], object] | None = None
    held_by_key: dict[Key, Held] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def record(self, body: Body) -> bool:
        """Keeps `body` unless the cache holds a newer version of the same object. Whether
        it is news: False when the cache held this version or a newer one already (say, the
        watch bringing back the operator's own write, which the pass that made it has acted
        on), or a version that differs in nothing `decisive`."""
        meta = body.get("metadata") or {}
        # One copy of each namespace's name for all its objects, not one per object held.
        key = (sys.intern(meta.get("namespace") or ""), meta.get("name") or "")
        uid, version = meta.get("uid"), version_number(meta.get("resourceVersion"))
        held = self.held_by_key.get(key)
        if held is not None and held.uid == uid and held.version is not None and version is not None:
            if version < held.version:
                return False  # a watch event older than our own write
            if version == held.version:
                self.held_by_key[key] = held.seen_again(self.clock())  # trusted afresh
                return False
        kept = self.keep(body)
        stored: Body | bytes = kept
        if self.resting is not None and self.resting(kept):
            stored = compress(kept)
        self.held_by_key[key] = Held(key, uid, version, self.clock(), stored)
        return held is None or held.uid != uid or self.decisive is None or \
            self.decisive(held.body) != self.decisive(kept)

    def forget(self, namespace: str, name: str) -> None:
        self.held_by_key.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> Body | None:
        """The body recorded, if any and recorded at most `max_age` ago."""
        held = self.held_by_key.get((namespace, name))
        if held is None or (self.max_age is not None and self.clock() - held.recorded > self.max_age):
            return None
        return held.body

    def held(self) -> list[Held]:
        """Every object held."""
        return list(self.held_by_key.values())

    def __len__(self) -> int:
        return len(self.held_by_key)


class CachedReads:
    """Reads TaskRuns, Tasks, TaskQueues and pods from the caches, from the API on a miss.

    Their changes come from their watches and the operator's own writes. What a watch
    can miss (a deletion while it re-lists) the operator's re-list of pods and
    TaskRuns finds (`sweeping`, every `sweep_seconds`), so pods are trusted until an
    event or the re-list replaces them: a running attempt's pass reads no API. TaskRuns,
    Tasks and TaskQueues are also trusted for `sweep_seconds` at most: a run that
    waited longer (suspended, say) reads its objects afresh once."""

    def __init__(self, api: kubeapi.KubeApi, sweep_seconds: float) -> None:
        self.api = api
        self.taskruns = ObjectCache(max_age=sweep_seconds, resting=taskrun_at_rest)
        self.tasks = ObjectCache(max_age=sweep_seconds)
        self.taskqueues = ObjectCache(max_age=sweep_seconds)
        self.pods = ObjectCache(keep=slim_pod, decisive=pods.decisive)

    async def get_taskrun(self, namespace: str, name: str) -> Body | None:
        return await self._read(self.taskruns, self.api.get_taskrun, namespace, name)

    async def get_task(self, namespace: str, name: str) -> Body | None:
        return await self._read(self.tasks, self.api.get_task, namespace, name)

    async def get_taskqueue(self, namespace: str, name: str) -> Body | None:
        return await self._read(self.taskqueues, self.api.get_taskqueue, namespace, name)

    async def get_pod(self, namespace: str, name: str) -> Body | None:
        return await self._read(self.pods, self.api.get_pod, namespace, name)

    async def _read(self, cache: ObjectCache, fetch: Callable[[str, str], Awaitable[Body | None]],
                    namespace: str, name: str) -> Body | None:
        body = cache.get(namespace, name)
        if body is not None:
            return body
        body = await fetch(namespace, name)
        if body is None:
            cache.forget(namespace, name)
        else:
            cache.record(body)
        return body

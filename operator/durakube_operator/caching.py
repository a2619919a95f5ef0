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
full spec would be most of the operator's memory. They are never changed in place:
callers must not mutate what they read. Knows nothing of runs or Postgres; holds no
lock (one event loop).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from durakube_operator import kubeapi

Key = tuple[str, str]  # (namespace, name)
Body = dict[str, Any]

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


def _version(body: Body) -> int | None:
    return version_number((body.get("metadata") or {}).get("resourceVersion"))


@dataclass
class ObjectCache:
    """The newest body seen of each object of one kind, by (namespace, name)."""

    # Seconds a body is trusted after it was recorded (None: until an event replaces it).
    max_age: float | None = None
    # What of a body is kept (the rest is dropped as it is recorded).
    keep: Callable[[Body], Body] = slim
    # Each body with the monotonic time it was recorded.
    bodies: dict[Key, tuple[Body, float]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def record(self, body: Body) -> bool:
        """Keeps `body` unless the cache holds a newer version of the same object. Whether
        it is news: False when the cache held this version or a newer one already (say, the
        watch bringing back the operator's own write, which the pass that made it has acted
        on)."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        held = self.bodies.get(key)
        if held is not None and (held[0].get("metadata") or {}).get("uid") == meta.get("uid"):
            old, new = _version(held[0]), _version(body)
            if old is not None and new is not None and new < old:
                return False  # a watch event older than our own write
            if old is not None and new == old:
                self.bodies[key] = (held[0], self.clock())  # seen again: trusted afresh
                return False
        self.bodies[key] = (self.keep(body), self.clock())
        return True

    def forget(self, namespace: str, name: str) -> None:
        self.bodies.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> Body | None:
        """The body recorded, if any and recorded at most `max_age` ago."""
        held = self.bodies.get((namespace, name))
        if held is None or (self.max_age is not None and self.clock() - held[1] > self.max_age):
            return None
        return held[0]

    def held(self) -> list[tuple[Body, float]]:
        """Every body held, with the monotonic time it was recorded."""
        return list(self.bodies.values())

    def __len__(self) -> int:
        return len(self.bodies)


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
        self.taskruns = ObjectCache(max_age=sweep_seconds)
        self.tasks = ObjectCache(max_age=sweep_seconds)
        self.taskqueues = ObjectCache(max_age=sweep_seconds)
        self.pods = ObjectCache(keep=slim_pod)

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

"""What the watches missed: a re-list of attempt pods and TaskRuns, now and then.

A watch resumes from the last version it saw and misses nothing, until the API
server has compacted that version away: kopf then lists again, which brings every
object that exists but says nothing of those deleted meanwhile. The operator's
passes trust what the watches delivered (`caching`) and keep no timer per waiting
run, so a deletion missed that way would leave a run Running forever, or a slot
held by a TaskRun that is gone.

Every `sweep_seconds` this loop asks the API server for the metadata of every
attempt pod and every TaskRun (no spec, no status: about a kilobyte each, 500 to a
page) and compares it with the caches. An object cached before the list began and
absent from it is gone: a pod is forgotten and its run gets a pass; a TaskRun is
handled as its deletion event would have been. One cached at an older version than
the list's is forgotten and its run gets a pass, which reads it afresh. Objects
recorded after the list began are newer than it and left alone.

What it finds is counted (`durakube_sweep_repairs_total`): on a healthy cluster only
a change whose event was still on its way (a harmless extra pass), so a steady rise
means the watches miss events. The sweep costs a few list calls per period whatever
the number of runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from durakube_operator import caching, kubeapi, looping, metrics, pods

logger = logging.getLogger(__name__)

# What a TaskRun's deletion event does, given its last body cached.
Deleted = Callable[[caching.Body], Awaitable[None]]


class SweepLoop(looping.PokedLoop):
    name = "sweep"

    def __init__(self, api: kubeapi.KubeApi, reads: caching.CachedReads, namespaces: tuple[str, ...],
                 interval: float, changed: Callable[[str, str], None], deleted: Deleted) -> None:
        super().__init__(interval)
        self.api, self.reads, self.namespaces = api, reads, namespaces
        self.changed, self.deleted = changed, deleted
        self._started = False

    async def run_pass(self) -> float | None:
        if not self._started:  # the watches' own listing has just been made
            self._started = True
            return None
        await self.sweep()
        return None

    async def sweep(self) -> int:
        """One re-list of pods and TaskRuns; returns the repairs made."""
        return await self.sweep_pods() + await self.sweep_taskruns()

    async def _listed(self, kind: str, selector: str | None) -> dict[caching.Key, kubeapi.ObjectKey]:
        listed: dict[caching.Key, kubeapi.ObjectKey] = {}
        for namespace in self.namespaces or (None,):
            for key in await self.api.list_metadata(kind, namespace, selector):
                listed[(key.namespace, key.name)] = key
        return listed

    async def sweep_pods(self) -> int:
        began = time.monotonic()
        listed = await self._listed("pods", f"{pods.LABEL_MANAGED_BY}={pods.MANAGER}")
        repairs = 0
        for held in self.reads.pods.held():
            key = held.key
            if held.recorded >= began or not _missed(held, listed.get(key)):
                continue
            self.reads.pods.forget(*key)
            run = pods.owning_run(held.body)
            if run is not None:
                self.changed(key[0], run)
            repairs += 1
            metrics.SWEEP_REPAIRS.labels(kind="pod").inc()
            logger.info("pod %s/%s changed or went without a watch event; looking again", *key)
        return repairs

    async def sweep_taskruns(self) -> int:
        began = time.monotonic()
        listed = await self._listed("taskruns", None)
        repairs = 0
        for held in self.reads.taskruns.held():
            key = held.key
            found = listed.get(key)
            if held.recorded >= began or not _missed(held, found):
                continue
            repairs += 1
            metrics.SWEEP_REPAIRS.labels(kind="taskrun").inc()
            if found is None or found.uid != held.uid:
                logger.info("TaskRun %s/%s was deleted without a watch event", *key)
                await self.deleted(held.body)
                if found is not None:
                    self.changed(*key)  # a TaskRun of the same name, created since
            else:
                self.reads.taskruns.forget(*key)
                self.changed(*key)
        return repairs


def _missed(held: caching.Held, listed: kubeapi.ObjectKey | None) -> bool:
    """Whether the list shows the cached object gone, replaced, or at a newer version."""
    if listed is None or listed.uid != held.uid:
        return True
    now = caching.version_number(listed.resource_version)
    return held.version is not None and now is not None and now > held.version

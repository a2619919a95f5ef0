"""Reconciles one TaskRun: observe -> decide -> act -> publish.

Reads as Tekton's TaskRun reconciler does, one stage a module:
- `observing` reads the TaskRun, its Task, the attempt's pod (by its deterministic
  name; all three as the watches delivered them, `caching`), the run's slot, its
  outcome and progress into one `Observation`;
- `deciding` turns that and the time into the next status, the actions that lead
  to it and when to look again; it is pure, and its table is unit-tested;
- `acting` performs the actions (register the run, join the queue's line, create or
  adopt the attempt's pod, give back a slot, ...), each idempotent;
- `publishing` patches the status once and records an Event when the condition
  changed (and exports the run's span when it ended).

Level-based and idempotent: running a pass twice changes nothing, and a pass cut
short by a crash is finished by the next one. The status patch is the commit point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from durakube.store import pools
from durakube_operator import (
    acting,
    caching,
    conditions,
    deciding,
    kubeapi,
    observing,
    publishing,
    recording,
    tracing,
)
from durakube_operator import settings as settings_module


@dataclass(frozen=True)
class Result:
    """When to look at the run again without a new event (None: only on events)."""

    requeue_after: float | None = None


@dataclass
class Reconciler:
    api: kubeapi.KubeApi
    events: recording.EventRecorder
    reads: caching.CachedReads
    db: pools.Database
    settings: settings_module.Settings
    actor: acting.Actor
    clock: Callable[[], datetime] = conditions.now
    spans: tracing.RunSpans = tracing.OFF

    async def reconcile(self, namespace: str, name: str) -> Result:
        seen = await observing.observe(self.reads, self.db, self.settings.default_queue, namespace, name)
        if seen is None:
            return Result()
        before = seen.run.status if seen.run is not None else deciding.conditions_only(seen.body)
        now = self.clock()
        decision = deciding.decide(seen, now, self.settings)
        try:
            place = await self.actor.perform(decision.actions)
            if place is not None:
                decision = deciding.after_joining(seen, decision, place, now, self.settings)
                await self.actor.perform(decision.actions)
        except acting.PodRefused as refusal:
            decision = deciding.pod_refused(seen, decision.status, str(refusal), now, self.settings)
            await self.actor.perform(decision.actions)
        patched = await publishing.publish(self.api, self.events, seen, before, decision.status,
                                           self.spans)
        if patched is not None:
            # The next pass must see this status, even before the watch brings it, and a
            # late watch event from before this write must not undo it.
            self.reads.taskruns.record(patched)
        return Result(decision.requeue_after)

"""Waking suspended runs: one timer loop over Postgres, not one timer per object.

Each round ends the waits whose deadline passed (`waitpoints.fire_due_timers`, an
indexed scan of `wake_at`), then hands every run whose wait ended — by deadline,
event or token, whoever ended it — to the controller's work queue, whose
reconciler puts the run back in its queue's line. It sleeps until the next
deadline (at most `interval`), or until poked when an event or token arrives
through the operator itself. 10,000 suspended runs cost one index and no task,
timer or finalizer each.

A run handed over is marked resumed; if the operator dies before the reconciler
acts, the start-up listing of every TaskRun resumes it all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from durakube.store import pools, waitpoints
from durakube_operator import faults, looping

_BATCH = 1000


class WakingLoop(looping.PokedLoop):
    name = "waking"

    def __init__(self, db: pools.Database, resume: Callable[[str, str], None],
                 interval: float = 1.0) -> None:
        super().__init__(interval)
        self.db = db
        self.resume = resume

    async def run_pass(self) -> float | None:
        await self.wake_due_runs()
        return await self._until_next_deadline()

    async def wake_due_runs(self) -> int:
        while await waitpoints.fire_due_timers(self.db, _BATCH) == _BATCH:
            pass
        woken = 0
        while True:
            ready = await waitpoints.runs_to_resume(self.db, _BATCH)
            for _, namespace, name in ready:
                self.resume(namespace, name)
            if ready:
                await waitpoints.mark_resumed(self.db, [run_id for run_id, _, _ in ready])
                for _, namespace, _ in ready:
                    faults.reach("run-woken", namespace)
            woken += len(ready)
            if len(ready) < _BATCH:
                return woken

    async def _until_next_deadline(self) -> float:
        due = await waitpoints.next_wake_at(self.db)
        if due is None:
            return self.interval
        return max(0.0, min(self.interval, (due - datetime.now(UTC)).total_seconds()))

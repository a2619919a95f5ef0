"""A work queue of run keys, as controller-runtime has: deduplicated, delayed, and
never handing the same key to two workers at once.

kopf runs one handler per object but has no cross-object coordination; routing
every trigger (TaskRun events, pod events, Postgres notifications, deadlines)
through this queue gives each run a single reconciler at a time and collapses
bursts of triggers into one pass. Deadlines sit in one heap, not one timer per
object.

Urgent keys (a run just admitted to a slot, an attempt pod that changed) go ahead
of routine ones, so work already under way is never stuck behind a burst of new
runs waiting for their first pass.

A key whose pass failed comes back through `add_rate_limited`, after a per-key
delay that doubles with each failure in a row (client-go's rate-limited queue);
`forget` clears that count once a pass succeeds. The queue does not decide what a
failure is: the controller calls these two.

Its depth, its delayed keys and how long a ready key waits for a worker are
metrics (`durakube_workqueue_*`): a wait that grows means the workers cannot keep up.

In-memory only: after a restart, the initial listing re-adds every run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

from durakube_operator import metrics

Key = tuple[str, str]  # (namespace, name)


URGENT, ROUTINE = 0, 1
_PRIORITY_NAMES = {URGENT: "urgent", ROUTINE: "routine"}

# The delay before a failed key's next pass: 1 s, doubling with each failure in a row, up to 60 s.
FAILURE_DELAY_START = 1.0
FAILURE_DELAY_MAX = 60.0


class WorkQueue:
    def __init__(self) -> None:
        self._ready: asyncio.PriorityQueue[tuple[int, int, Key]] = asyncio.PriorityQueue()
        self._queued: dict[Key, int] = {}  # waiting in _ready, with its best priority
        self._active: set[Key] = set()  # handed to a worker
        self._again: set[Key] = set()  # re-added while active
        self._delayed: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}  # earliest deadline per delayed key
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        self._failures: dict[Key, int] = {}  # failed passes in a row, per key
        self._ready_since: dict[Key, float] = {}  # when each queued key became ready
        metrics.WORKQUEUE_DEPTH.set_function(lambda: len(self._queued))
        metrics.WORKQUEUE_DELAYED.set_function(lambda: len(self._due))

    def __len__(self) -> int:
        return len(self._queued) + len(self._due)

    def add(self, key: Key, urgent: bool = False) -> None:
        """Asks for one more pass over `key`, as soon as a worker is free."""
        priority = URGENT if urgent else ROUTINE
        if key in self._active:
            self._again.add(key)
        elif self._queued.get(key, ROUTINE + 1) > priority:
            # Queued already at a lower priority: the older entry is skipped when popped.
            self._queued[key] = priority
            self._ready_since.setdefault(key, time.monotonic())
            self._ready.put_nowait((priority, next(self._counter), key))

    def add_after(self, key: Key, delay: float) -> None:
        """Asks for a pass over `key` in `delay` seconds (at once if not positive)."""
        if delay <= 0:
            self.add(key)
            return
        due = time.monotonic() + delay
        # One deadline per key: the earliest wins, so the heap stays as small as the set of keys.
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._counter), key))
        self._wakeup.set()

    def add_rate_limited(self, key: Key) -> float:
        """Asks for another pass over `key` after a failed one; returns the delay chosen.

        The delay doubles with each failure of `key` in a row, from FAILURE_DELAY_START up to
        FAILURE_DELAY_MAX, so a run that keeps failing cannot keep a worker busy."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # The exponent is capped too, so a key failing for days never overflows a float.
        delay = min(FAILURE_DELAY_MAX, FAILURE_DELAY_START * 2.0 ** min(failures, 32))
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        """Clears the failures of `key` (its pass succeeded): its next failure waits the least."""
        self._failures.pop(key, None)

    def requeues(self, key: Key) -> int:
        """How many failed passes of `key` in a row were sent back through `add_rate_limited`."""
        return self._failures.get(key, 0)

    async def get(self) -> Key:
        while True:
            priority, _, key = await self._ready.get()
            if self._queued.get(key) == priority:
                break  # else a stale entry of a key re-queued at a higher priority
        del self._queued[key]
        metrics.WORKQUEUE_WAIT.labels(priority=_PRIORITY_NAMES[priority]).observe(
            time.monotonic() - self._ready_since.pop(key))
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        """Marks a pass over `key` finished; a key re-added meanwhile goes back in line."""
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    async def run_delays(self) -> None:
        """Moves delayed keys to the ready line when they are due; runs until cancelled."""
        while True:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                due, _, key = heapq.heappop(self._delayed)
                if self._due.get(key) == due:  # else superseded by an earlier deadline
                    del self._due[key]
                    self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass

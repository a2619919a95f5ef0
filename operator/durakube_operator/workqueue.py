"""A work queue of run keys, as controller-runtime has: deduplicated, delayed, and
never handing the same key to two workers at once.

kopf runs one handler per object but has no cross-object coordination; routing
every trigger (TaskRun events, pod events, Postgres notifications, deadlines)
through this queue gives each run a single reconciler at a time and collapses
bursts of triggers into one pass. Deadlines sit in one heap, not one timer per
object.

In-memory only: after a restart, the initial listing re-adds every run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

Key = tuple[str, str]  # (namespace, name)


class WorkQueue:
    def __init__(self) -> None:
        self._ready: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()  # waiting in _ready
        self._active: set[Key] = set()  # handed to a worker
        self._again: set[Key] = set()  # re-added while active
        self._delayed: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}  # earliest deadline per delayed key
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queued) + len(self._due)

    def add(self, key: Key) -> None:
        """Asks for one more pass over `key`, as soon as a worker is free."""
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

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

    async def get(self) -> Key:
        key = await self._ready.get()
        self._queued.discard(key)
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

"""Admission: which waiting runs get a queue slot, granted in one Postgres transaction.

One loop of our own (not a kopf handler per object: kopf has no cross-object lock)
admits runs queue by queue. Each pass locks the queue's row, counts the slots in
use, picks runs with `select_runs`, and writes the grants, all in one transaction,
so the limit holds however many operators run and however often they restart.
A run that joins a queue nobody waits in, with room, takes its slot in the statement
that puts it in line (`queues.join_queue`, under the same lock): no pass needed.
Admitted runs are handed to the controller's work queue, whose reconciler creates
their pods.

`select_runs` is pure: priority first, then fairness across concurrency keys
(round-robin by when each key was last served), then FIFO by creation time within
a key, within the queue's limit and its per-key limit, and within what its rate
limits leave (sliding windows over the admissions Postgres records). A run held back
by a rate limit is admitted by the loop's periodic pass once its window frees up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from durakube.store import pools, queues
from durakube_operator import faults, looping, metrics

_EPOCH = datetime.min.replace(tzinfo=UTC)


def select_runs(waiting: Sequence[queues.Waiting], *, limit: int, per_key_limit: int | None,
                running: dict[str, int], last_served: dict[str, datetime],
                rate: queues.RateRoom | None = None) -> list[queues.Waiting]:
    """The runs to admit now, in admission order.

    `waiting` is ordered by priority (highest first) then creation time (oldest
    first); `running` counts slots in use per concurrency key ("" for runs without
    one); `last_served` is when each key last got a slot; `rate` is what the queue's
    rate limits leave to admit, in all and per key.
    """
    rate = rate or queues.RateRoom()
    capacity = limit - sum(running.values())
    if rate.queue is not None:
        capacity = min(capacity, rate.queue)
    admitted_now: dict[str, int] = {}
    lines: dict[str, list[queues.Waiting]] = {}
    for run in waiting:
        lines.setdefault(run.concurrency_key, []).append(run)
    in_use = dict(running)
    # Sort key of "served longest ago": earlier passes by time, then this pass's turns.
    order: dict[str, tuple[int, datetime, int]] = {k: (0, t, 0) for k, t in last_served.items()}
    never = (0, _EPOCH, 0)
    admitted: list[queues.Waiting] = []
    turn = 0
    while capacity > 0:
        candidates = [key for key, line in lines.items() if line and (
            # The per-key limit applies to runs that name a key; keyless runs share the queue.
            per_key_limit is None or key == "" or in_use.get(key, 0) < per_key_limit) and (
            (room := rate.for_key(key)) is None or admitted_now.get(key, 0) < room)]
        if not candidates:
            break
        # Highest waiting priority first; among equals, the key served longest ago.
        key = min(candidates, key=lambda k: (-lines[k][0].priority, order.get(k, never), k))
        run = lines[key].pop(0)
        admitted.append(run)
        in_use[key] = in_use.get(key, 0) + 1
        admitted_now[key] = admitted_now.get(key, 0) + 1
        turn += 1
        order[key] = (1, _EPOCH, turn)
        capacity -= 1
    return admitted


async def admit_next_runs(db: pools.Database, queue: str) -> list[queues.Waiting]:
    """One admission pass over `queue`, in one transaction; returns the runs admitted."""
    async with pools.transaction(db) as conn:
        held = await queues.lock_and_read_txn(conn, queue)
        if held is None or held.settings.paused or held.settings.concurrency_limit == 0:
            return []
        settings, running = held.settings, held.running
        if sum(running.values()) >= settings.concurrency_limit:
            return []
        rate = await queues.rate_room_txn(conn, settings) if settings.rate_limited else None
        if rate is not None and rate.queue == 0:
            return []  # the window frees up by itself: the loop's next pass looks again
        chosen = select_runs(held.waiting, limit=settings.concurrency_limit,
                             per_key_limit=settings.concurrency_limit_per_key, running=running,
                             last_served=held.last_served, rate=rate)
        await queues.grant_slots_txn(conn, queue, chosen, rate_limited=settings.rate_limited)
    if chosen:
        faults.reach("slot-granted", chosen[0].namespace)
    now = datetime.now(UTC)
    waited = metrics.QUEUE_WAIT.labels(**metrics.queue_labels(queue))
    for run in chosen:
        waited.observe((now - run.enqueued_at).total_seconds())
    return chosen


def granted_on_joining(queue: str, namespace: str) -> None:
    """A run took a free slot as it joined its queue (`queues.join_queue`): what an
    admission pass notes of the runs it admits, for a run that waited not at all."""
    faults.reach("slot-granted", namespace)
    metrics.QUEUE_WAIT.labels(**metrics.queue_labels(queue)).observe(0.0)


@dataclass
class _Batch:
    """The runs waiting for one admission pass over a queue, and what it admitted."""

    runs: set[str] = field(default_factory=set)
    admitted: asyncio.Future[set[str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class AdmissionLoop(looping.PokedLoop):
    """Runs admission passes when poked (a run enqueued, a slot released, a limit
    changed) and every `interval` seconds as a safety net."""

    name = "admission"

    def __init__(self, db: pools.Database, on_admitted: Callable[[queues.Waiting], None],
                 interval: float = 2.0) -> None:
        super().__init__(interval)
        self.db = db
        self.on_admitted = on_admitted
        self._poked: set[str] = set()
        self.counts: dict[str, queues.Counts] = {}
        # admit_now: the next pass's runs per queue, the queues with a pass under way.
        self._next: dict[str, _Batch] = {}
        self._admitting: set[str] = set()
        self._runners: set[asyncio.Task[None]] = set()

    def poke(self, queue: str | None = None) -> None:
        """Asks for a pass soon: over `queue`, or over every queue with waiting runs."""
        if queue is not None:
            self._poked.add(queue)
        super().poke()

    async def run_pass(self) -> float | None:
        await self.admit_everywhere()
        return None

    async def admit_now(self, queue: str, run_id: str) -> bool:
        """An admission pass over `queue` right away, for a run that just joined its line:
        whether that run got a slot. Other runs admitted go to `on_admitted` as usual, so
        a run admitted at once can start its attempt in the same reconcile pass.

        Calls for the same queue share passes: while one runs (holding the queue's lock in
        Postgres), the runs that join the line wait for the next one, which admits them
        together; a burst of new runs takes a few transactions, not one each in turn."""
        batch = self._next.get(queue)
        if batch is None:
            batch = self._next[queue] = _Batch()
            if queue not in self._admitting:
                self._admitting.add(queue)
                runner = asyncio.create_task(self._admit_batches(queue))
                self._runners.add(runner)
                runner.add_done_callback(self._runners.discard)
        batch.runs.add(run_id)
        return run_id in await asyncio.shield(batch.admitted)

    async def _admit_batches(self, queue: str) -> None:
        try:
            while (batch := self._next.pop(queue, None)) is not None:
                try:
                    chosen = await admit_next_runs(self.db, queue)
                except Exception as error:
                    batch.admitted.set_exception(error)
                    continue
                for run in chosen:
                    if run.run_id not in batch.runs:
                        self.on_admitted(run)
                batch.admitted.set_result({run.run_id for run in chosen})
        finally:
            self._admitting.discard(queue)

    async def admit_everywhere(self) -> None:
        poked, self._poked = self._poked, set()
        for queue in sorted(poked | set(await queues.queues_with_waiting_runs(self.db))):
            for run in await admit_next_runs(self.db, queue):
                self.on_admitted(run)
        self.counts = await queues.counts(self.db)
        metrics.observe_queues(self.counts)

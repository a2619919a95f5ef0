"""Acting on a decision: the writes to Postgres and Kubernetes that a new status needs.

The third of the reconciler's four stages (observe -> decide -> act -> publish).
Performs `deciding`'s actions in order, before the status is published: the status
patch is the commit point, so every action here is idempotent and a pass cut short
by a crash is finished by the next one. Decides nothing; it tells the admission,
waking and retention loops when a slot was freed, a line joined, a parent's wait
ended or a run finished.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from durakube.store import (
    attempts,
    logs,
    pools,
    queues,
    retention,
    runs,
    schema,
    steps,
    waitpoints,
)
from durakube_operator import (
    actions,
    admitting,
    caching,
    children,
    faults,
    keying,
    kubeapi,
    metrics,
    pods,
    recording,
)
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

# The lines of a failed pod's log read for its stored log (at most LOG_POD_TAIL_BYTES).
POD_LOG_TAIL_LINES = 1000


class PodRefused(Exception):
    """The API server refused an attempt's pod for what it is (Pod Security, an admission
    policy, an invalid template): creating it again would fail again."""


@dataclass
class Actor:
    """Performs actions; built once by the controller and shared by every pass."""

    api: kubeapi.KubeApi
    events: recording.EventRecorder
    # The namespaces' attempt key rings, which attempts take their secrets from.
    keys: keying.KeyRings
    # The reconciler's cache: a pod created here is recorded at once.
    reads: caching.CachedReads
    db: pools.Database
    settings: settings_module.Settings
    clock: Callable[[], datetime]
    # Asks the admission loop for a pass over a queue (a run left a slot).
    poke_admission: Callable[[str | None], None]
    # An admission pass over a queue now; whether the given run got a slot.
    admit_now: Callable[[str, str], Awaitable[bool]]
    # Asks the waking loop to resume runs whose wait just ended.
    wake_waiting_runs: Callable[[], None]
    # Tells the retention loop a run finished whose TaskRun expires in this many seconds.
    finished_with_ttl: Callable[[float], None] = lambda seconds: None
    # Asks for another pass over a run (namespace, name) once the current one is done.
    look_again: Callable[[str, str], None] = lambda namespace, name: None

    async def perform(self, todo: tuple[actions.Action, ...]) -> queues.Place | None:
        """Performs `todo` in order; returns the run's place once it joined a line (a slot
        when it was admitted at once)."""
        place = None
        index = 0
        while index < len(todo):
            action = todo[index]
            following = todo[index + 1] if index + 1 < len(todo) else None
            # Two pairs that a new run's passes always make go to Postgres as one
            # transaction each: registering and joining the line, and starting the attempt
            # and mirroring its Running phase.
            if isinstance(action, actions.RegisterRun) and isinstance(following, actions.Enqueue) \
                    and following.run_id == action.run_id:
                place = await self._register_and_enqueue(action, following)
                index += 2
            elif isinstance(action, actions.StartAttempt) and isinstance(following, actions.MirrorPhase) \
                    and following.run_id == action.run_id and following.retention is None:
                await self._start_attempt(action, phase=following.phase)
                index += 2
            else:
                place = await self._perform(action) or place
                index += 1
        return place

    async def _register_and_enqueue(self, register: actions.RegisterRun,
                                    enqueue: actions.Enqueue) -> queues.Place:
        if register.tags or register.debounce is not None or register.fork is not None:
            async with pools.transaction(self.db) as conn:
                await self._register_txn(conn, register)
                joined = await self._join_txn(conn, enqueue)
            return await self._joined(enqueue, joined)
        # Most runs: registered and joined in one statement.
        return await self._join(enqueue, task_id=register.task_id, payload=register.payload)

    async def _join(self, action: actions.Enqueue, *, task_id: str | None = None,
                    payload: Any = None) -> queues.Place:
        async with pools.connection(self.db) as conn:
            joined = await self._join_txn(conn, action, task_id=task_id, payload=payload)
        return await self._joined(action, joined)

    async def _join_txn(self, conn: pools.Database, action: actions.Enqueue, *,
                        task_id: str | None = None, payload: Any = None) -> queues.Joined:
        return await queues.join_queue_txn(
            conn, run_id=action.run_id, queue=action.queue, namespace=action.namespace,
            name=action.name, concurrency_key=action.concurrency_key, priority=action.priority,
            created_at=action.created_at, default_limit=self.settings.default_concurrency_limit,
            task_id=task_id, payload=payload)

    async def _joined(self, action: actions.Enqueue, joined: queues.Joined) -> queues.Place:
        """The place of a run that just joined its queue: its slot when it took one (or
        held one already), else what an admission pass gives it at once."""
        if joined == "waiting":
            return await self._admit(action)
        if joined == "granted":
            admitting.granted_on_joining(action.queue, action.namespace)
        return queues.Place(holds_slot=True)

    async def _register_txn(self, conn: pools.Database, action: actions.RegisterRun) -> None:
        await runs.register_run_txn(conn, action.run_id, action.namespace, action.name,
                                    action.task_id, action.payload, action.queue)
        if action.tags:
            await runs.register_tags_txn(conn, action.run_id, list(action.tags))
        if action.debounce is not None:
            entry = action.debounce
            await runs.register_debounce_txn(conn, action.run_id, action.namespace, entry.task,
                                             entry.key, entry.created_at, entry.created_version)
        if action.fork is not None:
            # With the registration: no attempt starts before the reused steps are there.
            await steps.copy_steps_txn(conn, action.fork.source_run_id, action.run_id,
                                       action.namespace, action.fork.from_step)
            await waitpoints.copy_tokens_txn(conn, action.fork.source_run_id, action.run_id,
                                             action.namespace, action.fork.from_step)

    async def _admit(self, action: actions.Enqueue) -> queues.Place:
        """The place of a run that just joined its line: a slot when admitted at once."""
        if await self.admit_now(action.queue, action.run_id):
            return queues.Place(holds_slot=True)
        return await queues.place(self.db, action.run_id)

    async def _perform(self, action: actions.Action) -> queues.Place | None:
        match action:
            case actions.RegisterRun():
                async with pools.transaction(self.db) as conn:
                    await self._register_txn(conn, action)
            case actions.Warn(body=body, reason=reason, message=message):
                self.events.record(body, "TaskRun", reason, message, "Warning")
            case actions.Enqueue():
                return await self._join(action)
            case actions.ReleaseSlot():
                # The run's pod has ended (or the run is over): no attempt of it is live.
                await attempts.revoke_secrets(self.db, action.run_id)
                if await queues.release(self.db, action.run_id):
                    self.poke_admission(action.queue)
            case actions.StartAttempt():
                await self._start_attempt(action)
            case actions.DeletePod():
                await self.api.delete_pod(action.namespace, action.name)
            case actions.MirrorPhase(retention=kept):
                await runs.set_run_status(self.db, action.run_id, action.phase)
                if kept is not None:
                    await retention.record_finish(
                        self.db, run_id=action.run_id, namespace=kept.namespace, name=kept.name,
                        ttl_seconds=kept.ttl_seconds, history_seconds=kept.history_seconds,
                        pod_name=kept.pod_name, pod_seconds=kept.pod_seconds)
                    soonest = min((seconds for seconds in (kept.ttl_seconds, kept.pod_seconds)
                                   if seconds is not None), default=None)
                    if soonest is not None:
                        self.finished_with_ttl(soonest)
            case actions.RecordRetention(retention=kept):
                await retention.record_finish(
                    self.db, run_id=action.run_id, namespace=kept.namespace, name=kept.name,
                    ttl_seconds=kept.ttl_seconds, history_seconds=kept.history_seconds,
                    finished_at=action.finished_at)
            case actions.SaveLogTail():
                await self._save_log_tail(action)
            case actions.ReportChildEnd():
                if await children.report_child_end(self.db, action.body, action.status):
                    self.wake_waiting_runs()
        return None

    async def _save_log_tail(self, action: actions.SaveLogTail) -> None:
        # One call, on failures only: the happy path never reads a pod's log.
        tail = await self.api.read_pod_log_tail(
            action.namespace, action.pod, pods.CONTAINER, tail_lines=POD_LOG_TAIL_LINES,
            limit_bytes=schema.LOG_POD_TAIL_BYTES)
        if tail:
            await logs.save_pod_tail(self.db, action.run_id, action.attempt, tail)

    async def _start_attempt(self, action: actions.StartAttempt, phase: str | None = None) -> None:
        pod_name = action.pod["metadata"]["name"]
        # The attempt's row and its key first, then the pod: a worker that starts finds
        # both. Claiming is idempotent (the same key for the same attempt), so a crash
        # before the pod only repeats it; a crash after it leaves a pod to adopt.
        # With `phase`, the run's row in Postgres gets it in the same transaction.
        key = await attempts.start_attempt_with_key(self.db, action.run_id, action.attempt, pod_name,
                                                    namespace=action.namespace, dsn=self.keys.dsn,
                                                    phase=phase)
        if key is None:
            await self.keys.add(action.namespace)
            key = await attempts.start_attempt_with_key(
                self.db, action.run_id, action.attempt, pod_name,
                namespace=action.namespace, dsn=self.keys.dsn, phase=phase)
            if key is None:
                raise RuntimeError(f"no attempt key free in {action.namespace} after adding a ring")
        if key.claimed_now:  # the first pass of this attempt only, as a crash would be
            faults.reach("attempt-recorded", action.namespace)
        pod = pods.with_attempt_key(action.pod, key.ring, key.slot)
        try:
            created = await self.api.create_pod(action.namespace, pod)
        except kubeapi.ApiException as error:
            refused = kubeapi.refusal(error)
            if refused is None:
                raise
            raise PodRefused(f"the API server refused attempt pod {pod_name}: {refused}") from error
        if created is None:
            logger.info("adopting existing pod %s/%s", action.namespace, pod_name)
            # A pod made by a pass cut short (a replica that lost the Lease) may have run,
            # even ended, already: its events can all be in, with none left to bring this
            # run back once its status names the pod. The next pass reads the pod.
            self.look_again(action.namespace, action.name)
            return
        # The next pass reads it from here, before its watch event arrives.
        self.reads.pods.record(created)
        faults.reach("pod-created", action.namespace)
        if action.due_since is not None:
            metrics.POD_START_LATENCY.labels(**metrics.queue_labels(action.queue)).observe(
                max(0.0, (self.clock() - action.due_since).total_seconds()))

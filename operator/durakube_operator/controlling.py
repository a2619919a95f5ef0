"""The controller: one work queue of runs, a few workers reconciling them.

Started in kopf's start-up handler and stopped in its clean-up handler, so it runs
only on the replica that leads (`operating`); kopf's watch handlers and its own
watch of attempt pods (`watching`) call its methods, which add keys to the queue or
hand events and queue definitions to Postgres. A pass that raises is logged and retried after a
per-run back-off kept by the work queue (1 s doubling to 60 s); nothing escapes
unclassified, and `asyncio.CancelledError` always propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from durakube import durations, errors, resources
from durakube.store import pools, queues, retention
from durakube_operator import (
    acting,
    admitting,
    caching,
    children,
    conditions,
    delivering,
    keying,
    kubeapi,
    metrics,
    pods,
    reconciling,
    recording,
    retaining,
    scheduling,
    sweeping,
    tracing,
    waking,
    watching,
    workqueue,
)
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

# The pods the operator watches: its attempt pods only, filtered by the API server, so
# the other pods of a shared cluster never reach it.
ATTEMPT_PODS = f"{pods.LABEL_MANAGED_BY}={pods.MANAGER}"


class Controller:
    """The operator's one controller: its loops, its work queue and its reconciler.

    kopf's handlers call its methods (`taskrun_changed`, `queue_changed`, ...); they
    never touch Postgres or decide anything themselves.
    """

    def __init__(self, api: kubeapi.KubeApi, db: pools.Database,
                 settings: settings_module.Settings, events: recording.EventRecorder) -> None:
        self.api, self.db, self.settings, self.events = api, db, settings, events
        self.queue = workqueue.WorkQueue()
        self.admission = admitting.AdmissionLoop(db, self._admitted)
        self.waking = waking.WakingLoop(db, lambda namespace, name: self.queue.add((namespace, name)))
        self.deliverer = delivering.Deliverer(db, self.waking.poke)
        self.submitting = children.SubmittingLoop(db, api)
        self.reads = caching.CachedReads(api, settings.sweep_seconds)
        self.sweeping = sweeping.SweepLoop(
            api, self.reads, settings.namespaces, settings.sweep_seconds,
            changed=lambda namespace, name: self.queue.add((namespace, name)),
            deleted=self._deleted_unseen)
        # Attempt pods come through the controller's own watch, not kopf's.
        self.pod_watch = watching.PodWatch(api, self.reads.pods, settings.namespaces,
                                           ATTEMPT_PODS, self.attempt_pod_changed)
        self.keys = keying.KeyRings(api, db, settings)
        self.retention = retaining.RetentionLoop(db, api, self.reads, settings, self.keys)
        self.scheduling = scheduling.SchedulingLoop(api, events)
        actor = acting.Actor(api=api, events=events, keys=self.keys, reads=self.reads, db=db,
                             settings=settings,
                             clock=conditions.now,
                             poke_admission=self.admission.poke, admit_now=self.admission.admit_now,
                             wake_waiting_runs=self.waking.poke,
                             finished_with_ttl=self.retention.run_finished,
                             look_again=lambda namespace, name: self.queue.add((namespace, name),
                                                                               urgent=True))
        # The leader exports each run's span when the run ends (off without an endpoint).
        self.spans = tracing.start(settings)
        self.reconciler = reconciling.Reconciler(api=api, events=events, reads=self.reads, db=db,
                                                 settings=settings, actor=actor, spans=self.spans)
        self._tasks: list[asyncio.Task[None]] = []
        self._queue_status: dict[str, tuple[int, int, int]] = {}

    # What kopf's handlers call.

    def taskrun_changed(self, body: caching.Body) -> None:
        # The watch echoing the status a pass just patched changes nothing: no pass for it.
        if self.reads.taskruns.record(body):
            self.queue.add((body["metadata"]["namespace"], body["metadata"]["name"]))
        # Even the echo of the reconciler's own patch: a schedule's overlap policy and
        # history limits follow its runs' phases.
        schedule = scheduling.owning_schedule(body)
        if schedule is not None:
            self.scheduling.run_changed(body["metadata"]["namespace"], schedule)

    async def taskrun_deleted(self, namespace: str, name: str, run_id: str,
                              schedule: str | None = None) -> None:
        """Its pods go with it (owner references); its slot and place in line go now, and
        its history's retention counts from now if it had not finished."""
        self.reads.taskruns.forget(namespace, name)
        if schedule is not None:
            self.scheduling.run_changed(namespace, schedule)
        if await queues.release(self.db, run_id):
            self.admission.poke()
        await retention.mark_taskruns_gone(self.db, [retention.DueTaskRun(run_id, namespace, name)],
                                           self.settings.history_retention)

    async def _deleted_unseen(self, body: caching.Body) -> None:
        """A TaskRun the re-list found deleted, its event missed."""
        meta = body["metadata"]
        await self.taskrun_deleted(meta["namespace"], meta["name"], str(meta.get("uid") or ""),
                                   scheduling.owning_schedule(body))

    def task_changed(self, body: caching.Body, deleted: bool) -> None:
        meta = body["metadata"]
        if deleted:
            self.reads.tasks.forget(meta["namespace"], meta["name"])
        else:
            self.reads.tasks.record(body)

    def attempt_pod_changed(self, body: caching.Body, deleted: bool) -> None:
        """What the pod watch hands over: an attempt pod (or one that claims to be)."""
        meta = body["metadata"]
        run_name = pods.owning_run(body)
        if run_name is None or not meta.get("namespace"):
            return
        if deleted:
            self.reads.pods.forget(meta["namespace"], meta["name"])
        elif not self.reads.pods.record(body):
            return  # the pod as the operator created it (or an older state): nothing new
        # An attempt's pod changed (often: ended, freeing a slot): urgent.
        self.queue.add((meta["namespace"], run_name), urgent=True)

    async def queue_changed(self, body: caching.Body, deleted: bool) -> None:
        """A TaskQueue was created, changed or deleted."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        queue = f"{namespace}/{name}"
        if deleted:
            self.reads.taskqueues.forget(namespace, name)
            spec = None
        else:
            self.reads.taskqueues.record(body)
            spec = resources.TaskQueueSpec.model_validate(body.get("spec") or {})
        if spec is None:
            await queues.undefine_queue(self.db, queue, self.settings.default_concurrency_limit)
        else:
            await queues.define_queue(self.db, queue, concurrency_limit=spec.concurrency_limit,
                                      concurrency_limit_per_key=spec.concurrency_limit_per_key,
                                      paused=spec.paused, rate=_rate(spec.rate_limit),
                                      key_rate=_rate(spec.rate_limit_per_key))
        # A raised limit admits waiting runs at once; a lowered one never stops running pods.
        self.admission.poke(queue)

    def schedule_changed(self, body: caching.Body, deleted: bool) -> None:
        """A TaskSchedule was created, changed or deleted (its runs go with it)."""
        self.scheduling.schedule_changed(body, deleted)

    async def task_event_created(self, namespace: str, name: str, uid: str,
                                 spec: resources.TaskEventSpec) -> None:
        """Delivers a TaskEvent once and records how it went in its status."""
        status = await self.deliverer.deliver_task_event(namespace, spec, uid)
        await self.api.patch_status("taskevents", namespace, name,
                                    status.model_dump(mode="json", by_alias=True, exclude_none=True))

    def _admitted(self, run: queues.Waiting) -> None:
        # A slot is held from now on: starting its pod goes ahead of routine passes.
        self.queue.add((run.namespace, run.name), urgent=True)

    async def _publish_queue_counts(self) -> None:
        """Keeps each TaskQueue's status.running/queued current, patching on change only."""
        while True:
            await asyncio.sleep(1.0)
            try:
                for queue, count in self.admission.counts.items():
                    shown = (count.running, count.waiting, count.suspended)
                    if self._queue_status.get(queue) == shown:
                        continue
                    namespace, name = queue.split("/", 1)
                    await self.api.patch_status(
                        "taskqueues", namespace, name,
                        {"running": count.running, "queued": count.waiting,
                         "suspended": count.suspended})
                    self._queue_status[queue] = shown
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("could not publish queue counts: %s", error)

    async def release_orphans(self) -> None:
        """Gives back slots and places in line of runs whose TaskRun is gone (deleted while
        no operator watched): the start-up reconciliation of the ledger."""
        held = [(slot.run_id, slot.namespace, slot.name) for slot in await queues.load_slots(self.db)]
        held += [(w.run_id, w.namespace, w.name) for w in await queues.load_waiting(self.db)]
        for run_id, namespace, name in held:
            body = await self.api.get_taskrun(namespace or "", name or "") if name else None
            if body is None or body["metadata"].get("uid") != run_id:
                logger.info("releasing the slot of deleted run %s/%s", namespace, name)
                await queues.release(self.db, run_id)
            elif namespace and name:
                self.queue.add((namespace, name))
        self.admission.poke()

    @classmethod
    async def start(cls, settings: settings_module.Settings, db: pools.Database) -> Controller:
        """Starts the loops and workers over `db` (the replica's pool, which it keeps)."""
        api = kubeapi.KubeApi(await kubeapi.load_client(), settings.api_qps, settings.api_burst)
        events = recording.EventRecorder(
            kubeapi.KubeApi(await kubeapi.load_client(), settings.event_qps, settings.event_burst))
        events.start()
        controller = cls(api, db, settings, events)
        await controller.release_orphans()
        controller._tasks.append(asyncio.create_task(controller.queue.run_delays()))
        controller._tasks.append(asyncio.create_task(controller.admission.run()))
        controller._tasks.append(asyncio.create_task(controller._publish_queue_counts()))
        controller._tasks.append(asyncio.create_task(controller.waking.run()))
        controller._tasks.append(asyncio.create_task(controller.submitting.run()))
        controller._tasks.append(asyncio.create_task(controller.retention.run()))
        controller._tasks.append(asyncio.create_task(controller.scheduling.run()))
        controller._tasks.append(asyncio.create_task(controller.sweeping.run()))
        controller._tasks.append(asyncio.create_task(controller.pod_watch.run(), name="pod-watch"))
        for index in range(settings.workers):
            controller._tasks.append(asyncio.create_task(controller._work(), name=f"worker-{index}"))
        return controller

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.events.stop()
        await asyncio.to_thread(self.spans.close)
        await self.api.close()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            metrics.RECONCILES.labels(namespace=key[0]).inc()
            try:
                with metrics.RECONCILE_DURATION.time():
                    result = await self.reconciler.reconcile(*key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                metrics.RECONCILE_ERRORS.labels(namespace=key[0], reason=_error_reason(error)).inc()
                delay = self.queue.add_rate_limited(key)
                logger.warning("reconciling %s/%s failed (%s: %s); retrying in %.0fs",
                               *key, _error_reason(error), error, delay,
                               exc_info=self.queue.requeues(key) == 1)
            else:
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.queue.done(key)


def _error_reason(error: BaseException) -> str:
    """The reason word for an error raised while reconciling (for logs and metrics)."""
    if isinstance(error, errors.DurakubeError):
        return str(error.code)
    return type(error).__name__


def _rate(limit: resources.RateLimit | None) -> tuple[int, float] | None:
    """A TaskQueue's rate limit as (starts, seconds)."""
    if limit is None:
        return None
    return limit.starts, durations.parse_duration(limit.period)

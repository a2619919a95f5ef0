"""The controller: one work queue of runs, a few workers reconciling them.

Started in kopf's start-up handler and stopped in its clean-up handler; kopf's
watch handlers only add keys to the queue. A pass that raises is retried with a
per-run backoff (1 s doubling to 60 s) and logged; nothing escapes unclassified,
and `asyncio.CancelledError` always propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import prometheus_client
from aiohttp import web

from durakube.store import pools, queues, schema
from durakube_operator import (
    admitting,
    delivering,
    kubeapi,
    reconciling,
    spawning,
    waking,
    webhooks,
    workqueue,
)
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

_ERROR_BACKOFF_START = 1.0
_ERROR_BACKOFF_MAX = 60.0


class Controller:
    def __init__(self, context: reconciling.Context) -> None:
        self.context = context
        self.queue = workqueue.WorkQueue()
        self.admission = admitting.AdmissionLoop(context.db, self._admitted)
        context.poke_admission = self.admission.poke
        self.waking = waking.WakingLoop(context.db, lambda namespace, name: self.queue.add((namespace, name)))
        context.wake_waiting_runs = self.waking.poke
        self.deliverer = delivering.Deliverer(context.db, self.waking.poke)
        self.spawning = spawning.SpawningLoop(context.db, context.api)
        self._webhooks: web.AppRunner | None = None
        self._failures: dict[workqueue.Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._queue_status: dict[str, tuple[int, int, int]] = {}

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
                    await self.context.api.patch_status(
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
        held = [(slot.run_id, slot.namespace, slot.name) for slot in await queues.load_slots(self.context.db)]
        held += [(w.run_id, w.namespace, w.name) for w in await queues.load_waiting(self.context.db)]
        for run_id, namespace, name in held:
            body = await self.context.api.get_taskrun(namespace or "", name or "") if name else None
            if body is None or body["metadata"].get("uid") != run_id:
                logger.info("releasing the slot of deleted run %s/%s", namespace, name)
                await queues.release(self.context.db, run_id)
            elif namespace and name:
                self.queue.add((namespace, name))
        self.admission.poke()

    @classmethod
    async def start(cls, settings: settings_module.Settings) -> Controller:
        db = await pools.connect(settings.database_url, min_size=1,
                                 max_size=max(4, settings.workers + 2))
        await schema.migrate(db)
        api = kubeapi.KubeApi(kubeapi.load_client(), settings.api_qps)
        controller = cls(reconciling.Context(api=api, db=db, settings=settings))
        if settings.metrics_port:
            prometheus_client.start_http_server(settings.metrics_port)
        await controller.release_orphans()
        controller._tasks.append(asyncio.create_task(controller.queue.run_delays()))
        controller._tasks.append(asyncio.create_task(controller.admission.run()))
        controller._tasks.append(asyncio.create_task(controller._publish_queue_counts()))
        controller._tasks.append(asyncio.create_task(controller.waking.run()))
        controller._tasks.append(asyncio.create_task(controller.spawning.run()))
        if settings.webhook_port:
            controller._webhooks = await webhooks.serve(controller.deliverer, settings.webhook_port,
                                                        settings.webhook_secret)
        for index in range(settings.workers):
            controller._tasks.append(asyncio.create_task(controller._work(), name=f"worker-{index}"))
        return controller

    async def stop(self) -> None:
        if self._webhooks is not None:
            await self._webhooks.cleanup()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.context.db.close()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                result = await reconciling.reconcile(self.context, *key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(_ERROR_BACKOFF_MAX, _ERROR_BACKOFF_START * 2 ** (failures - 1))
                logger.warning("reconciling %s/%s failed (%s: %s); retrying in %.0fs",
                               *key, reconciling.error_reason(error), error, delay,
                               exc_info=failures == 1)
                self.queue.add_after(key, delay)
            else:
                self._failures.pop(key, None)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.queue.done(key)

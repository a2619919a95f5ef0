"""kopf's side of the operator: watch handlers that feed the controller's queue.

Only `kopf.on.event` handlers, which write nothing to the watched objects (no
progress annotations, no finalizers; kopf #1087), and start-up/clean-up handlers
that own the controller and its Postgres pool (kept in `memo`). Decisions happen
in `reconciling`, never here.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from durakube import resources
from durakube.store import queues
from durakube_operator import controlling, pods
from durakube_operator import settings as settings_module


@kopf.on.startup()
async def start_controller(settings: kopf.OperatorSettings, memo: kopf.Memo,
                           **_: Any) -> None:
    # Watch streams can die silently (kopf #1276): bound them so they are re-opened.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.posting.level = logging.WARNING
    memo.controller = await controlling.Controller.start(settings_module.from_environment())


@kopf.on.cleanup()
async def stop_controller(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get("controller")
    if controller is not None:
        await controller.stop()


@kopf.on.event(resources.GROUP, resources.VERSION, "taskruns")
async def taskrun_changed(type: str, name: str, namespace: str | None, uid: str, memo: Any,
                          **_: Any) -> None:
    if namespace is None:
        return
    if type == "DELETED":
        # Its pods go with it (owner references); its slot and place in line go now.
        if await queues.release(memo.controller.context.db, uid):
            memo.controller.admission.poke()
        return
    memo.controller.queue.add((namespace, name))


@kopf.on.event(resources.GROUP, resources.VERSION, "taskqueues")
async def taskqueue_changed(type: str, name: str, namespace: str | None, body: kopf.Body,
                            memo: Any, **_: Any) -> None:
    if namespace is None:
        return
    queue = f"{namespace}/{name}"
    db, settings = memo.controller.context.db, memo.controller.context.settings
    if type == "DELETED":
        await queues.undefine_queue(db, queue, settings.default_concurrency_limit)
    else:
        spec = resources.TaskQueueSpec.model_validate(body.get("spec") or {})
        await queues.define_queue(db, queue, concurrency_limit=spec.concurrency_limit,
                                  concurrency_limit_per_key=spec.concurrency_limit_per_key,
                                  paused=spec.paused)
    # A raised limit admits waiting runs at once; a lowered one never stops running pods.
    memo.controller.admission.poke(queue)


@kopf.on.event("", "v1", "pods", labels={pods.LABEL_MANAGED_BY: pods.MANAGER})
async def attempt_pod_changed(meta: kopf.Meta, namespace: str | None, memo: Any,
                              **_: Any) -> None:
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller") and owner.get("kind") == "TaskRun" and namespace:
            # An attempt's pod changed (often: ended, freeing a slot): urgent.
            memo.controller.queue.add((namespace, owner["name"]), urgent=True)


@kopf.on.event(resources.GROUP, resources.VERSION, "taskevents")
async def taskevent_changed(type: str, name: str, namespace: str | None, uid: str, body: kopf.Body,
                            memo: Any, **_: Any) -> None:
    if type == "DELETED" or namespace is None or (body.get("status") or {}).get("phase"):
        return  # delivered (or refused) once already: a TaskEvent is a one-shot message
    spec = resources.TaskEventSpec.model_validate(body.get("spec") or {})
    status = await memo.controller.deliverer.deliver_task_event(spec, uid)
    await memo.controller.context.api.patch_status(
        "taskevents", namespace, name, status.model_dump(mode="json", by_alias=True, exclude_none=True))


@kopf.on.probe(id="queued")
async def queued_runs(memo: kopf.Memo, **_: Any) -> int:
    controller = memo.get("controller")
    return len(controller.queue) if controller is not None else 0

"""kopf's side of the operator: watch handlers that feed the controller.

kopf is the operator's watch source; the rest (a work queue, a reconciler, loops
over Postgres, one rate-limited API client) is ours, for reasons kopf's tracker
documents: high-level handlers write progress annotations on every object (#1087),
timers and daemons per object cost a task and a finalizer each and have stuck
deletions (#1104, #1305), there is no cross-object lock for admission, and no
client-side rate limit (#1011).

So only `kopf.on.event` handlers, which write nothing to the watched objects, and
start-up/clean-up handlers that own the controller (kept in a typed memo). Each
handler translates an event into one call on the controller; none touches
Postgres or decides anything. Attempt pods are not kopf's: the controller watches
them itself (`watching`), two events a run that kopf's per-object machinery made
costly.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from durakube import resources
from durakube.store import pools
from durakube_operator import controlling, scheduling, watching
from durakube_operator import settings as settings_module


class Memo(kopf.Memo):
    """What kopf keeps for the operator's handlers: the replica's settings and Postgres
    pool (given by `operating`), and the controller once started."""

    settings: settings_module.Settings
    db: pools.Database
    controller: controlling.Controller

    def __copy__(self) -> Memo:
        """kopf gives each object it sees a copy of the operator's memo, for state of the
        object's own; the operator keeps none there (its caches do), so every object
        shares this one: about 200 bytes less for each object held."""
        return self

    def wake_waiting_runs(self) -> None:
        """Hurries the waking loop when this replica leads; a standby's webhook deliveries
        are found by the leader's next round (at most a second later)."""
        controller = self.get("controller")
        if controller is not None:
            controller.waking.poke()


# Watch streams can die silently (kopf #1276): each of kopf's streams is bounded as the
# operator's own pod watch is (`watching`), and re-opened from its last resourceVersion
# (no re-list). An apiserver restart closes the connections: kopf reconnects at once
# (`reconnect_backoff`).
# Objects per page of a watch's initial listing (at the operator's start, and again when
# a watch's version is too old): a single answer with 10,000 TaskRuns would be parsed
# whole, a peak of a hundred megabytes that the process keeps long after.
LIST_PAGE_SIZE = 500
# kopf hands each object's events to a worker of its own, which keeps the object's last
# event (the whole object, parsed) until it exits, IDLE_TIMEOUT after that event: a
# burst of new runs, or every TaskRun listed again when a replica takes the Lease, held
# five seconds' worth of objects at kopf's default. A worker starts again at the
# object's next event (some tens of microseconds).
IDLE_TIMEOUT = 1.0


def configure_watching(settings: kopf.OperatorSettings) -> None:
    settings.watching.server_timeout = watching.WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = watching.WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = watching.WATCH_CONNECT_TIMEOUT
    settings.watching.inactivity_timeout = watching.WATCH_INACTIVITY_TIMEOUT
    settings.watching.chunk_size = LIST_PAGE_SIZE
    settings.queueing.idle_timeout = IDLE_TIMEOUT


@kopf.on.startup()
async def start_controller(settings: kopf.OperatorSettings, memo: Memo, **_: Any) -> None:
    configure_watching(settings)
    settings.posting.level = logging.WARNING
    # Only `on.event` handlers: kopf's diff base (a deep copy of every object on every event,
    # for change handlers) would be built for nothing.
    settings.persistence.diffbase_storage = NoDiffBase()
    # Nor progress of handlers to keep: `on.event` handlers are not retried by kopf.
    settings.persistence.progress_storage = NoProgress()
    memo.controller = await controlling.Controller.start(memo.settings, memo.db)


@kopf.on.cleanup()
async def stop_controller(memo: Memo, **_: Any) -> None:
    controller = memo.get("controller")
    if controller is not None:
        await controller.stop()


@kopf.on.event(resources.GROUP, resources.VERSION, "taskruns")
async def taskrun_changed(type: str, name: str, namespace: str | None, uid: str, body: kopf.Body,
                          memo: Memo, **_: Any) -> None:
    if namespace is None:
        return
    if type == "DELETED":
        await memo.controller.taskrun_deleted(namespace, name, uid,
                                              scheduling.owning_schedule(_plain(body)))
    else:
        memo.controller.taskrun_changed(_plain(body))


@kopf.on.event(resources.GROUP, resources.VERSION, "tasks")
async def task_changed(type: str, namespace: str | None, body: kopf.Body, memo: Memo,
                       **_: Any) -> None:
    if namespace is not None:
        memo.controller.task_changed(_plain(body), deleted=type == "DELETED")


@kopf.on.event(resources.GROUP, resources.VERSION, "taskqueues")
async def taskqueue_changed(type: str, namespace: str | None, body: kopf.Body, memo: Memo,
                            **_: Any) -> None:
    if namespace is not None:
        await memo.controller.queue_changed(_plain(body), deleted=type == "DELETED")


@kopf.on.event(resources.GROUP, resources.VERSION, "taskschedules")
async def taskschedule_changed(type: str, namespace: str | None, body: kopf.Body, memo: Memo,
                               **_: Any) -> None:
    if namespace is not None:
        memo.controller.schedule_changed(_plain(body), deleted=type == "DELETED")


@kopf.on.event(resources.GROUP, resources.VERSION, "taskevents")
async def taskevent_changed(type: str, name: str, namespace: str | None, uid: str, body: kopf.Body,
                            memo: Memo, **_: Any) -> None:
    if type == "DELETED" or namespace is None or (body.get("status") or {}).get("phase"):
        return  # delivered (or refused) once already: a TaskEvent is a one-shot message
    spec = resources.TaskEventSpec.model_validate(body.get("spec") or {})
    await memo.controller.task_event_created(namespace, name, uid, spec)


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base of nothing: the operator has no change handlers to compare states for."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


class NoProgress(kopf.ProgressStorage):
    """No handler progress: kopf keeps it for change handlers it retries, and would copy
    every object's essence twice per event to clear it of its own marks."""

    def fetch(self, *, key: Any, body: kopf.Body) -> None:
        return None

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        pass

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        pass

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        pass

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


def _plain(body: kopf.Body) -> dict[str, Any]:
    """The object as the watch delivered it, as a plain dict (kopf's Body is a read-only view)."""
    return dict(body)

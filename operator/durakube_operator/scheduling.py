"""Firing TaskSchedules: one loop on the leader creates each scheduled time's TaskRun.

kopf's watch hands every TaskSchedule to `schedule_changed`, and every change of a
TaskRun a schedule owns to `run_changed`; the loop reconciles a schedule when it
changed, when one of its runs did, or when its next time (jitter included) comes.
A pass over one schedule reads its runs (by the `durakube.io/schedule` label),
plans the times since the last one handled (`timetables.plan`: catch-up window,
missed times), applies the overlap policy, creates the due runs, and patches the
status once: the cursor (`scheduledUntil`), the last and next times, the counts and
the `Ready` condition. Finished runs past the history limits are deleted after that.

Idempotent across restarts and failovers: a time's TaskRun has one name
(`timetables.run_name`), so a run created just before the operator died is found
by the next pass (in the listing, or by the API's 409) and never created again.
A run is deleted only once a status recording its time was written, so a pruned
time is never fired again. A schedule that cannot run (a bad cron expression or
time zone) gets `Ready=False` with the reason InvalidSchedule and an Event; it never
raises. Runs only where the controller runs: on the leader.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic

from durakube import resources
from durakube_operator import caching, kubeapi, looping, metrics, pods, reasons, recording, timetables

logger = logging.getLogger(__name__)

LABEL_SCHEDULE = "durakube.io/schedule"
ANNOTATION_SCHEDULED_TIME = "durakube.io/scheduled-time"

READY = "Ready"

# A pass that failed is tried again after this long (the API may be restarting).
_RETRY_SECONDS = 5.0

_FAILED_PHASES = resources.FINAL_PHASES - {resources.Phase.SUCCEEDED}


class SchedulingLoop(looping.PokedLoop):
    name = "scheduling"

    def __init__(self, api: kubeapi.KubeApi, events: recording.EventRecorder,
                 clock: Any = None, interval: float = 30.0) -> None:
        super().__init__(interval)
        self.api, self.events = api, events
        self.clock = clock or (lambda: datetime.now(UTC))
        self.schedules = caching.ObjectCache()
        self._dirty: set[caching.Key] = set()
        self._due: dict[caching.Key, datetime] = {}

    # What the controller calls, from kopf's watch handlers.

    def schedule_changed(self, body: caching.Body, deleted: bool) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if deleted:
            self.schedules.forget(*key)
            self._due.pop(key, None)
            self._dirty.discard(key)
            return
        if self.schedules.record(body):
            self._dirty.add(key)
            self.poke()

    def run_changed(self, namespace: str, schedule: str) -> None:
        """A TaskRun of the schedule changed or went: its overlap and history may have."""
        if self.schedules.get(namespace, schedule) is not None:
            self._dirty.add((namespace, schedule))
            self.poke()

    # The loop.

    async def run_pass(self) -> float | None:
        now = self.clock()
        keys = self._dirty | {key for key, at in self._due.items() if at <= now}
        self._dirty.clear()
        for key in sorted(keys):
            try:
                await self.reconcile(*key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("scheduling %s/%s failed (%s: %s); retrying in %.0fs", *key,
                               type(error).__name__, error, _RETRY_SECONDS)
                self._due[key] = self.clock() + timedelta(seconds=_RETRY_SECONDS)
        if not self._due:
            return None
        return max(0.0, (min(self._due.values()) - self.clock()).total_seconds())

    async def reconcile(self, namespace: str, name: str) -> None:
        """One pass over one schedule: fire what is due, publish the status, prune."""
        self._due.pop((namespace, name), None)
        body = self.schedules.get(namespace, name)
        if body is None:
            return
        try:
            schedule = resources.TaskSchedule.model_validate(body)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            await self._invalid(body, resources.TaskScheduleStatus.model_validate(
                body.get("status") or {}), f"{where}: {first['msg']}")
            return
        spec, before = schedule.spec, schedule.status
        try:
            timetable = timetables.parse(spec)
            catchup_window, jitter = timetables.check_windows(spec)
        except timetables.InvalidSchedule as error:
            await self._invalid(body, before, str(error))
            return
        runs = await self._owned_runs(schedule)
        active = sorted(n for n, run in runs.items() if not _finished(run))
        now = self.clock()
        status = before.model_copy(deep=True)
        if spec.paused:
            if _reason(before) != reasons.PAUSED:
                status.scheduled_until = now.replace(microsecond=0)
            status.next_schedule_time, status.queued_time = None, None
            status.active = active
            if await self._publish(body, before, _with_ready(
                    status, reasons.PAUSED, "spec.paused is set", schedule.metadata.generation, now)):
                await self._prune(schedule, runs)
            return

        cursor = status.scheduled_until or schedule.metadata.creation_timestamp or now
        if _reason(before) in (reasons.PAUSED, reasons.INVALID_SCHEDULE):
            # No catching up on a pause, nor on the times of a schedule that could not run.
            cursor = max(cursor, now.replace(microsecond=0))
        firing = _Firing(self, schedule, runs, active, status)
        if status.queued_time is not None and not active:
            queued, status.queued_time = status.queued_time, None
            await firing.fire(queued, now)
        plan = timetables.plan(timetable, cursor, now, catchup_window)
        if plan.missed_until is not None:
            cursor = plan.missed_until
            status.missed += plan.missed
            metrics.SCHEDULED_TIMES.labels(namespace=namespace, outcome="missed").inc(plan.missed)
            self.events.record(body, "TaskSchedule", reasons.RUNS_MISSED,
                               f"{plan.missed}{'+' if plan.missed >= timetables.COUNT_LIMIT else ''} "
                               f"scheduled time(s) up to {timetables.format_time(cursor)} were "
                               f"missed: older than the catch-up window {spec.catchup_window}",
                               "Warning")
        for moment in plan.due:
            if moment + timedelta(seconds=timetables.jitter_seconds(
                    _seed(schedule), moment, jitter)) > now:
                break
            await firing.handle(moment, now)
            cursor = moment
        status.scheduled_until = cursor
        status.active = sorted(firing.active)
        following = timetable.next_after(cursor)
        status.next_schedule_time = following
        self._due[(namespace, name)] = following + timedelta(
            seconds=timetables.jitter_seconds(_seed(schedule), following, jitter))
        detail = (f"next run at {timetables.format_time(following)}"
                  + (f" (queued: {timetables.format_time(status.queued_time)})"
                     if status.queued_time else ""))
        if await self._publish(body, before, _with_ready(status, reasons.SCHEDULED, detail,
                                                         schedule.metadata.generation, now)):
            await self._prune(schedule, runs)

    async def _owned_runs(self, schedule: resources.TaskSchedule) -> dict[str, caching.Body]:
        meta = schedule.metadata
        assert meta.namespace is not None
        listed = await self.api.list_taskruns(
            meta.namespace, f"{LABEL_SCHEDULE}={pods.label_value(meta.name)}")
        return {run["metadata"]["name"]: run for run in listed
                if any(owner.get("uid") == meta.uid
                       for owner in run["metadata"].get("ownerReferences") or [])}

    async def _invalid(self, body: caching.Body, before: resources.TaskScheduleStatus,
                       message: str) -> None:
        meta = body["metadata"]
        status = before.model_copy(update={"next_schedule_time": None})
        status = _with_ready(status, reasons.INVALID_SCHEDULE, message, meta.get("generation"),
                             self.clock())
        previous = _ready(before)
        if previous is None or previous.message != message:  # once per problem
            self.events.record(body, "TaskSchedule", reasons.INVALID_SCHEDULE, message, "Warning")
        await self._publish(body, before, status)

    async def _publish(self, body: caching.Body, before: resources.TaskScheduleStatus,
                       after: resources.TaskScheduleStatus) -> bool:
        """Patches the status when it changed; False when the schedule is gone."""
        if after == before:
            return True
        meta = body["metadata"]
        patched = await self.api.patch_status(
            "taskschedules", meta["namespace"], meta["name"],
            after.model_dump(mode="json", by_alias=True))
        if patched is None:
            self.schedules.forget(meta["namespace"], meta["name"])
            self._due.pop((meta["namespace"], meta["name"]), None)
            return False
        self.schedules.record(patched)
        return True

    async def _prune(self, schedule: resources.TaskSchedule, runs: dict[str, caching.Body]) -> None:
        """Deletes the oldest finished runs beyond the history limits (their history stays in
        Postgres). Called only after a status recording their times was written."""
        spec = schedule.spec
        for keep, phases in ((spec.successful_runs_history_limit, {resources.Phase.SUCCEEDED}),
                             (spec.failed_runs_history_limit, _FAILED_PHASES)):
            finished = sorted((run for run in runs.values() if _phase(run) in phases),
                              key=_scheduled_at)
            for run in finished[:max(0, len(finished) - keep)]:
                meta = run["metadata"]
                if await self.api.delete_taskrun(meta["namespace"], meta["name"], meta["uid"]):
                    logger.info("deleted TaskRun %s/%s of schedule %s (history limit)",
                                meta["namespace"], meta["name"], schedule.metadata.name)


class _Firing:
    """The runs one pass creates for one schedule, and the counts it keeps in `status`."""

    def __init__(self, loop: SchedulingLoop, schedule: resources.TaskSchedule,
                 runs: dict[str, caching.Body], active: list[str],
                 status: resources.TaskScheduleStatus) -> None:
        self.loop, self.schedule, self.runs, self.status = loop, schedule, runs, status
        self.active = set(active)
        self.body = loop.schedules.get(schedule.metadata.namespace or "", schedule.metadata.name)

    async def handle(self, moment: datetime, now: datetime) -> None:
        """One due time: fired once, whatever happened before a restart; else the overlap
        policy decides."""
        name = timetables.run_name(self.schedule.metadata.name, moment)
        if name in self.runs:
            # Created by a pass that died before it could write the status: fired already.
            self._fired(name, moment, active=not _finished(self.runs[name]))
            return
        decision = timetables.decide(self.schedule.spec.overlap_policy, bool(self.active),
                                     self.status.queued_time is not None)
        stamp = timetables.format_time(moment)
        if decision == timetables.Decision.FIRE:
            await self.fire(moment, now)
        elif decision == timetables.Decision.QUEUE:
            self.status.queued_time = moment
            self._count("queued")
            self._event(reasons.RUN_QUEUED, f"the run for {stamp} waits for {', '.join(sorted(self.active))} "
                                    "to end (overlapPolicy QueueOne)")
        else:
            self.status.skipped += 1
            self._count("skipped")
            self._event(reasons.RUN_SKIPPED, f"skipped the run for {stamp}: "
                                     f"{', '.join(sorted(self.active))} is still active "
                                     f"(overlapPolicy {self.schedule.spec.overlap_policy})")

    async def fire(self, moment: datetime, now: datetime) -> None:
        meta = self.schedule.metadata
        assert meta.namespace is not None
        body = build_run(self.schedule, moment)
        name = body["metadata"]["name"]
        if name in self.runs:
            self._fired(name, moment, active=not _finished(self.runs[name]))
            return
        try:
            created = await self.loop.api.create_taskrun(meta.namespace, body)
        except kubeapi.ApiException as error:
            refused = kubeapi.refusal(error)
            if refused is None:
                raise
            self._count("refused")
            self._event(reasons.RUN_REFUSED, f"the API server refused the run for "
                                     f"{timetables.format_time(moment)}: {refused}", "Warning")
            return
        self._fired(name, moment)
        if created:
            self._count("created")
            self._event(reasons.RUN_CREATED, f"created TaskRun {name} for {timetables.format_time(moment)}")

    def _fired(self, name: str, moment: datetime, active: bool = True) -> None:
        if active:
            self.active.add(name)
        self.status.runs += 1
        if self.status.last_schedule_time is None or moment >= self.status.last_schedule_time:
            self.status.last_schedule_time, self.status.last_run_name = moment, name

    def _count(self, outcome: str) -> None:
        metrics.SCHEDULED_TIMES.labels(namespace=self.schedule.metadata.namespace or "",
                                       outcome=outcome).inc()

    def _event(self, reason: str, message: str, kind: str = "Normal") -> None:
        if self.body is not None:
            self.loop.events.record(self.body, "TaskSchedule", reason, message, kind)


def build_run(schedule: resources.TaskSchedule, moment: datetime) -> dict[str, Any]:
    """The TaskRun of `schedule` for the time `moment`: named for the time, labelled with the
    schedule, owned by it (deleting the schedule deletes its runs)."""
    meta, spec = schedule.metadata, schedule.spec
    run_spec: dict[str, Any] = {
        "taskRef": {"name": spec.task_ref.name},
        "payload": timetables.render_payload(spec.payload, meta.name, moment)}
    for field, value in (("queue", spec.queue), ("concurrencyKey", spec.concurrency_key),
                         ("timeout", spec.timeout)):
        if value is not None:
            run_spec[field] = value
    if spec.priority:
        run_spec["priority"] = spec.priority
    return {
        "apiVersion": resources.API_VERSION, "kind": "TaskRun",
        "metadata": {
            "name": timetables.run_name(meta.name, moment),
            "namespace": meta.namespace,
            "labels": {LABEL_SCHEDULE: pods.label_value(meta.name)},
            "annotations": {ANNOTATION_SCHEDULED_TIME: timetables.format_time(moment)},
            "ownerReferences": [{"apiVersion": resources.API_VERSION, "kind": "TaskSchedule",
                                 "name": meta.name, "uid": meta.uid, "controller": True,
                                 "blockOwnerDeletion": False}],
        },
        "spec": run_spec,
    }


def owning_schedule(body: caching.Body) -> str | None:
    """The name of the TaskSchedule that owns a TaskRun, if one does."""
    for owner in (body.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "TaskSchedule" and owner.get("apiVersion") == resources.API_VERSION:
            return str(owner.get("name"))
    return None


def _seed(schedule: resources.TaskSchedule) -> str:
    return schedule.metadata.uid or schedule.metadata.name


def _phase(run: caching.Body) -> str | None:
    return (run.get("status") or {}).get("phase")


def _finished(run: caching.Body) -> bool:
    return _phase(run) in resources.FINAL_PHASES


def _scheduled_at(run: caching.Body) -> str:
    meta = run["metadata"]
    return str((meta.get("annotations") or {}).get(ANNOTATION_SCHEDULED_TIME)
               or meta.get("creationTimestamp") or "")


def _ready(status: resources.TaskScheduleStatus) -> resources.Condition | None:
    return next((c for c in status.conditions if c.type == READY), None)


def _reason(status: resources.TaskScheduleStatus) -> str | None:
    ready = _ready(status)
    return ready.reason if ready else None


def _with_ready(status: resources.TaskScheduleStatus, reason: str, message: str,
                generation: int | None, now: datetime) -> resources.TaskScheduleStatus:
    """`status` with its Ready condition: True when scheduling, False when paused or invalid;
    the transition time moves only when the condition's status does."""
    value = resources.ConditionStatus.TRUE if reason == reasons.SCHEDULED else resources.ConditionStatus.FALSE
    previous = _ready(status)
    moved = previous is None or previous.status != value
    condition = resources.Condition(
        type=READY, status=value, reason=reason, message=message[:2000],
        last_transition_time=(now.replace(microsecond=0) if moved or previous is None
                              else previous.last_transition_time),
        observed_generation=generation)
    others = [c for c in status.conditions if c.type != READY]
    return status.model_copy(update={"conditions": [*others, condition],
                                     "observed_generation": generation})

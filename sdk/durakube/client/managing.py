"""Managing runs that exist: read, list, cancel, replay; steps, outputs, logs; events;
and listing the TaskSchedules that create runs.

Called by `AsyncClient`. A run is read from its live TaskRun first and from the
run history in Postgres (`history`) once the TaskRun is gone. Outputs, steps,
history and events need the database (`sessions.Session.database`); cancel, get
and list of live runs do not.

Creates runs only through `submitting` (replay); never waits for one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from durakube import resources
from durakube.client import failures, handles, history, kubeapi, manifests, sessions, submitting
from durakube.store import logs as stored_logs
from durakube.store import payloads, steps, waitpoints

REPLAY_OF_ANNOTATION = "durakube.io/replay-of"


async def get(session: sessions.Session, run: sessions.RunRef) -> handles.RunSummary:
    """The run from the API, or from the history once its TaskRun is gone."""
    namespace, name = session.locate(run)
    body = await session.api.get_taskrun(namespace, name)
    if body is not None:
        return handles.summarize_taskrun(body)
    if session.database_url is not None:
        record = await history.find_run(await session.database("run history"), namespace, name)
        if record is not None:
            return handles.summarize_history(record)
    raise failures.TaskRunNotFound(name, namespace)


async def list_runs(session: sessions.Session, *, task: str | None = None,
                    queue: str | None = None, phase: str | None = None,
                    tags: Iterable[str] | None = None,
                    limit: int | None = 100) -> list[handles.RunSummary]:
    """Runs of the namespace, newest first: live TaskRuns, then history from Postgres."""
    wanted_tags = list(tags or [])
    selector = manifests.select_tags(wanted_tags) if wanted_tags else None
    found = await session.api.list_taskruns(session.namespace, selector)

    async def open_db() -> Any:
        return await session.database("run history")

    return await history.merge_runs(
        open_db if session.database_url is not None else None, session.namespace,
        found.get("items", []), task=task, queue=queue, phase=phase, tags=wanted_tags,
        limit=limit)


async def list_schedules(session: sessions.Session) -> list[handles.ScheduleSummary]:
    """The TaskSchedules of the namespace, by name."""
    found = await session.api.list_custom("TaskSchedules", "taskschedules", session.namespace)
    return sorted((handles.summarize_schedule(body) for body in found.get("items", [])),
                  key=lambda schedule: schedule.name)


async def cancel(session: sessions.Session, run: sessions.RunRef) -> handles.RunSummary:
    """Asks the operator to cancel the run (spec.cancel=true); returns it as patched."""
    namespace, name = session.locate(run)
    body = await session.api.patch_taskrun(namespace, name, {"spec": {"cancel": True}})
    if body is None:
        raise failures.TaskRunNotFound(name, namespace)
    return handles.summarize_taskrun(body)


async def replay(session: sessions.Session, run: sessions.RunRef, *, latest: bool = False,
                 from_step: int | None = None) -> handles.RunHandle:
    """A new run of the same task with the same payload (and queue, key, priority, tags),
    pinned to the replayed run's code unless `latest`; with `from_step`, a fork that
    reuses the steps recorded before that one (see `AsyncClient.replay`)."""
    namespace, name = session.locate(run)
    body = await session.api.get_taskrun(namespace, name)
    options: dict[str, Any] = {"payload": None, "payload_ref": None, "queue": None,
                               "concurrency_key": None, "priority": None,
                               "idempotency_key": None, "delay": None, "ttl": None,
                               "tags": (), "annotations": {REPLAY_OF_ANNOTATION: name}}
    if body is not None:
        spec = body.get("spec") or {}
        task_id = str(spec["taskRef"]["name"])
        name, run_id = str(body["metadata"]["name"]), str(body["metadata"]["uid"])
        options.update(payload=spec.get("payload") if not spec.get("payloadRef") else None,
                       payload_ref=spec.get("payloadRef"), queue=spec.get("queue"),
                       concurrency_key=spec.get("concurrencyKey"),
                       priority=spec.get("priority"),
                       tags=tuple(manifests.read_tags(body["metadata"].get("labels") or {})))
    else:
        if session.database_url is None:
            raise failures.TaskRunNotFound(name, namespace)
        db = await session.database("replaying a run whose TaskRun is gone")
        record = await history.find_run(db, namespace, name)
        if record is None:
            raise failures.TaskRunNotFound(name, namespace)
        name, run_id = str(record["name"]), str(record["run_id"])
        stored = await history.read_payload(db, run_id)
        task_id = manifests.task_object_name(record["task_id"])
        queue = record["queue"]
        options.update(queue=queue.split("/", 1)[1] if queue and "/" in queue else None)
        if manifests.fits_inline(stored):
            options["payload"] = stored
        else:
            options["payload_ref"] = await payloads.put_payload(db, stored)
    replay_of: dict[str, Any] = {"run": name, "runId": run_id}
    if latest:
        replay_of["latest"] = True
    if from_step is not None:
        await check_fork(session, name, run_id, from_step)
        replay_of["fromStep"] = from_step
    options["annotations"] = {REPLAY_OF_ANNOTATION: name}
    await session.read_task(namespace, task_id)
    return await submitting.create(session, namespace, task_id, {**options, "replay_of": replay_of},
                                   None)


async def check_fork(session: sessions.Session, name: str, run_id: str, from_step: int) -> None:
    """`CannotFork` unless the run can be forked from `from_step` (`steps.fork_refusal`;
    the operator checks again, and copies the steps before it when it registers the fork)."""
    db = await session.database("forking a run from a step")
    refused = steps.fork_refusal(await steps.load_steps(db, run_id), from_step)
    if refused is not None:
        raise failures.CannotFork(name, from_step, refused)


async def list_steps(session: sessions.Session,
                     run: sessions.RunRef) -> list[handles.StepSummary]:
    """The run's recorded steps, in order (from Postgres)."""
    summary = await get(session, run)
    db = await session.database("steps")
    return [handles.summarize_step(step) for step in await steps.load_steps(db, summary.run_id)]


async def output(session: sessions.Session, run: sessions.RunRef) -> Any:
    """The run's full output (from Postgres); `RunFailed` unless it succeeded."""
    summary = await get(session, run)
    raise_unless_succeeded(summary)
    return await output_of(session, summary)


async def output_of(session: sessions.Session, summary: handles.RunSummary) -> Any:
    """The full output of a succeeded run: from Postgres, else the TaskRun's preview."""
    if session.database_url is None:
        preview = summary.output
        if isinstance(preview, dict) and preview.get("truncated"):
            raise failures.DatabaseNotConfigured("the full output (only a preview is in the TaskRun)")
        return preview.get("value", preview) if isinstance(preview, dict) and \
            set(preview) == {"value"} else preview
    found, value = await history.read_output(await session.database("outputs"), summary.run_id)
    if not found:
        raise failures.RunNotFinished(summary.name, summary.phase)
    return value


def raise_unless_succeeded(summary: handles.RunSummary) -> None:
    """`RunFailed` (phase, reason, last error) for a final phase other than Succeeded."""
    if summary.phase == resources.Phase.SUCCEEDED:
        return
    if summary.phase not in resources.FINAL_PHASES:
        raise failures.RunNotFinished(summary.name, summary.phase)
    error = summary.last_error or {}
    raise failures.RunFailed(summary.name, str(summary.phase), summary.reason or str(summary.phase),
                             summary.message or "", error.get("type"), error.get("message"))


async def logs(session: sessions.Session, run: sessions.RunRef) -> list[handles.AttemptLog]:
    """The log of every attempt of the run, first attempt first.

    An attempt whose pod still exists is read from the pod (the whole log, up to the
    moment); any other from what its worker stored in Postgres, which outlives the
    pod (bounded: see `store.logs`). Without a database, only existing pods are read.
    """
    summary = await get(session, run)
    pods = await session.api.list_attempt_pods(summary.namespace, summary.run_id)
    live = {int((pod.metadata.labels or {}).get(kubeapi.ATTEMPT_LABEL, 0)): pod for pod in pods}
    stored: dict[int, stored_logs.StoredLog] = {}
    if session.database_url is not None:
        db = await session.database("stored logs")
        stored = {log.attempt: log for log in await stored_logs.read_logs(db, summary.run_id)}
    found = []
    for attempt in sorted(set(live) | set(stored)):
        pod = live.get(attempt)
        text = None
        if pod is not None:
            text = await _read_pod_log(session, summary.namespace, pod.metadata.name)
        if pod is not None and text is not None:
            found.append(handles.AttemptLog(attempt, pod.metadata.name, text))
        elif attempt in stored:
            log = stored[attempt]
            found.append(handles.AttemptLog(attempt, log.pod_name or "", log.text, source="stored",
                                            dropped_bytes=log.dropped))
        elif pod is not None:
            found.append(handles.AttemptLog(attempt, pod.metadata.name, ""))
    return found


async def _read_pod_log(session: sessions.Session, namespace: str, pod: str) -> str | None:
    """The pod's log; None when it has none to give (gone, or its container not started)."""
    try:
        return await session.api.read_pod_log(namespace, pod)
    except kubeapi.ApiException as error:
        if error.status in (400, 404):
            return None
        raise


async def send_event(session: sessions.Session, key: str, data: Any = None, *,
                     event_id: str | None = None) -> handles.EventDelivery:
    """Sends an event to the runs of the client's namespace waiting on `key`, or buffers
    it for the next one there. Keys under `durakube.io/` are
    refused (`waitpoints.ReservedEventKey`): they carry child runs' results."""
    waitpoints.check_event_key(key)
    db = await session.database("sending an event")
    delivery = await waitpoints.send_event(db, key, data, namespace=session.namespace,
                                           event_id=event_id)
    return handles.EventDelivery(str(delivery.event_id), list(delivery.run_ids),
                                 bool(delivery.buffered))


async def complete_token(session: sessions.Session, token: str, data: Any = None) -> str:
    """Completes the wait holding `token` with `data`; returns the waiting run's id."""
    db = await session.database("completing a token")
    return str(await waitpoints.complete_token(db, token, data))

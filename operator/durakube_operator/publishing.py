"""Publishing a run's new status: one patch, then one Event and the metrics of the change.

The Event is handed to the recorder (`recording`), which sends it off this path.

The last of the reconciler's four stages (observe -> decide -> act -> publish). The
status patch is the commit point: it comes after every action, so a crash before it
repeats the pass. An Event is recorded, and the run counters move, only when the
phase or the Succeeded condition's reason changed, so a pass repeated with the same
result adds nothing. An attempt that ended (its run left Running) is counted by the
outcome its worker recorded, and its steps' durations observed, from what
`observing` read in Postgres: worker pods live too briefly to be scraped. A run that
ended has its span exported with them, once (`tracing`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from durakube import resources
from durakube_operator import conditions, kubeapi, metrics, observing, recording, tracing


async def publish(api: kubeapi.KubeApi, events: recording.EventRecorder,
                  seen: observing.Observation,
                  before: resources.TaskRunStatus, after: resources.TaskRunStatus,
                  spans: tracing.RunSpans = tracing.OFF) -> dict[str, Any] | None:
    """Patches the status when it changed, then records one Event per transition, and
    exports the run's span when it ended (`spans`).

    Returns the TaskRun as patched (None when nothing was patched or it is gone)."""
    body = seen.body
    old = before.model_dump(mode="json", by_alias=True, exclude_none=True)
    new = after.model_dump(mode="json", by_alias=True, exclude_none=True)
    if old == new:
        return None
    # JSON merge patch: fields that went away are sent as null to remove them.
    patch: dict[str, Any] = {**{k: None for k in old if k not in new}, **new}
    meta = body["metadata"]
    patched = await api.patch_status("taskruns", meta["namespace"], meta["name"], patch)
    if conditions.changed(before, after):
        condition = conditions.succeeded(after)
        assert condition is not None
        count_transition(body, seen.queue, seen.created_at, before, after, condition.reason)
        if after.phase in resources.FINAL_PHASES:
            spans.run_ended(body, seen.queue, seen.created_at, after)
        if before.phase == resources.Phase.RUNNING and after.phase != resources.Phase.RUNNING:
            count_attempt_end(body, seen)
        elif observing.compensation_running(before) and not observing.compensation_running(after):
            count_attempt_end(body, seen)  # an attempt in compensation mode
        event_type = "Warning" if condition.status == resources.ConditionStatus.FALSE else "Normal"
        events.record(body, "TaskRun", condition.reason, condition.message, event_type)
    return patched


def _run_labels(body: dict[str, Any], queue: str) -> dict[str, str]:
    task = str(((body.get("spec") or {}).get("taskRef") or {}).get("name", ""))
    return {**metrics.queue_labels(queue), "task": task}


def count_attempt_end(body: dict[str, Any], seen: observing.Observation) -> None:
    """Counts an attempt that ended by its recorded outcome ("none": it recorded none) and
    observes how long each of its steps ran."""
    labels = _run_labels(body, seen.queue)
    outcome = seen.outcome.kind if seen.outcome is not None else "none"
    metrics.ATTEMPTS_FINISHED.labels(**labels, outcome=outcome).inc()
    step_duration = metrics.STEP_DURATION.labels(**labels)
    for seconds in seen.step_durations:
        step_duration.observe(seconds)


def count_transition(body: dict[str, Any], queue: str, created_at: datetime | None,
                     before: resources.TaskRunStatus, after: resources.TaskRunStatus,
                     reason: str) -> None:
    """Moves the run counters; `queue` is the resolved "<namespace>/<name>"."""
    labels = _run_labels(body, queue)
    if after.phase == resources.Phase.BACKING_OFF:
        metrics.RETRIES.labels(**labels, reason=reason).inc()
    elif after.phase in resources.FINAL_PHASES:
        metrics.RUNS_FINISHED.labels(**labels, outcome=str(after.phase)).inc()
        if created_at is not None and after.completion_time is not None:
            seconds = (after.completion_time - created_at).total_seconds()
            metrics.RUN_DURATION.labels(**labels, outcome=str(after.phase)).observe(seconds)
    elif before.phase is None:
        metrics.RUNS_STARTED.labels(**labels).inc()

"""What the client hands back: run handles, run, step and schedule summaries, event deliveries.

A `RunHandle` names one run (namespace, TaskRun name, run id = the TaskRun's uid)
and is what every managing call of the client accepts besides a plain name. A
`RunSummary` is one run as `get` and `list` report it, read either from the live
TaskRun (`source="api"`) or, once the TaskRun is gone, from the run history in
Postgres (`source="history"`). A `StepSummary` is one recorded step.

Pure data and the functions that build it from API objects and database rows: no
I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from durakube import durations, resources
from durakube.client import manifests

# What names a task in a trigger: its id (the Task object's name), or the @task function.
TaskLike = str | Callable[..., Awaitable[Any]]

PREVIEW_CHARS = 80


@dataclass(frozen=True)
class RunHandle:
    """One run: enough to get, wait for, cancel or replay it."""

    name: str
    namespace: str
    run_id: str
    task: str
    # False when an idempotency key matched a run that existed already.
    created: bool = True

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class RunSummary:
    name: str
    namespace: str
    run_id: str
    task: str
    queue: str | None
    phase: str | None
    reason: str | None
    message: str | None
    attempt: int
    current_step: str | None
    completed_steps: int | None
    created_at: datetime | None
    finished_at: datetime | None
    output: Any
    last_error: dict[str, Any] | None
    tags: list[str] = field(default_factory=list)
    source: Literal["api", "history"] = "api"
    # The run's metadata (`ctx.update_metadata`); None when its task set none.
    metadata: dict[str, Any] | None = None
    # The run a replay or fork started from: {"run", "runId", "fromStep"?, "latest"?}.
    replay_of: dict[str, Any] | None = None
    # The image the run's attempts run, as pinned (with its digest once known).
    pinned_image: str | None = None

    @property
    def handle(self) -> RunHandle:
        return RunHandle(self.name, self.namespace, self.run_id, self.task, created=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "runId": self.run_id,
                "task": self.task, "queue": self.queue, "phase": self.phase,
                "reason": self.reason, "message": self.message, "attempt": self.attempt,
                "currentStep": self.current_step, "completedSteps": self.completed_steps,
                "createdAt": _isoformat(self.created_at),
                "finishedAt": _isoformat(self.finished_at), "output": self.output,
                "lastError": self.last_error, "tags": self.tags, "source": self.source,
                "metadata": self.metadata, "replayOf": self.replay_of,
                "pinnedImage": self.pinned_image}


@dataclass(frozen=True)
class ScheduleSummary:
    """One TaskSchedule: when it runs, when it ran and will run next, and its last run."""

    name: str
    namespace: str
    task: str
    schedule: str  # the cron expression, or "every <interval>"
    time_zone: str | None
    paused: bool
    last_schedule_time: datetime | None
    next_schedule_time: datetime | None
    last_run_name: str | None
    runs: int
    skipped: int
    missed: int
    ready: str | None  # the Ready condition's reason: Scheduled, Paused, InvalidSchedule
    message: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "task": self.task,
                "schedule": self.schedule, "timeZone": self.time_zone, "paused": self.paused,
                "lastScheduleTime": _isoformat(self.last_schedule_time),
                "nextScheduleTime": _isoformat(self.next_schedule_time),
                "lastRunName": self.last_run_name, "runs": self.runs, "skipped": self.skipped,
                "missed": self.missed, "ready": self.ready, "message": self.message}


@dataclass(frozen=True)
class StepSummary:
    seq: int
    name: str
    status: str
    attempt: int
    duration_ms: float
    result: Any
    error: dict[str, Any] | None
    finished_at: datetime | None

    @property
    def result_preview(self) -> str:
        return preview(self.result)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "name": self.name, "status": self.status,
                "attempt": self.attempt, "durationMs": self.duration_ms, "result": self.result,
                "error": self.error, "finishedAt": _isoformat(self.finished_at)}


@dataclass(frozen=True)
class EventDelivery:
    """What `send_event` did: the runs whose wait it ended, or that it was buffered."""

    event_id: str
    run_ids: list[str]
    buffered: bool


@dataclass(frozen=True)
class AttemptLog:
    """The log of one attempt: read from its pod while the pod exists (`source` "pod"),
    else the copy its worker stored in Postgres ("stored"), which keeps the first and
    the last 512 KiB; `dropped_bytes` were written between them and not kept."""

    attempt: int
    pod: str
    text: str
    source: str = "pod"
    dropped_bytes: int = 0


@dataclass(frozen=True)
class TriggerRequest:
    """One run to create, as `batch_trigger` takes them (tuples (task, payload) work too)."""

    task: TaskLike  # a task id, or the @task function
    payload: Any = None  # a JSON object (dict) or a pydantic model
    queue: str | None = None
    concurrency_key: str | None = None
    priority: int | None = None
    idempotency_key: str | None = None
    delay: durations.Duration | None = None
    ttl: durations.Duration | None = None
    tags: tuple[str, ...] = ()


def summarize_taskrun(body: dict[str, Any]) -> RunSummary:
    """A summary of a TaskRun object as the API returns it (a dict)."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    status = body.get("status") or {}
    succeeded: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), {})
    return RunSummary(
        name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
        run_id=str(meta.get("uid", "")), task=str((spec.get("taskRef") or {}).get("name", "")),
        queue=spec.get("queue"), phase=status.get("phase"), reason=succeeded.get("reason"),
        message=succeeded.get("message"), attempt=int(status.get("attempt") or 0),
        current_step=status.get("currentStep"),
        completed_steps=int(status.get("completedSteps") or 0),
        created_at=_parse_time(meta.get("creationTimestamp")),
        finished_at=_parse_time(status.get("completionTime")), output=status.get("output"),
        last_error=status.get("lastError"), tags=manifests.read_tags(meta.get("labels") or {}),
        source="api", metadata=status.get("metadata"), replay_of=spec.get("replayOf"),
        pinned_image=_pinned_image(status))


def _pinned_image(status: dict[str, Any]) -> str | None:
    pinned = status.get("pinned")
    if not isinstance(pinned, dict) or not pinned.get("image"):
        return None
    return resources.pinned_image(str(pinned["image"]), pinned.get("imageDigest"))


def summarize_schedule(body: dict[str, Any]) -> ScheduleSummary:
    """A summary of a TaskSchedule object as the API returns it (a dict)."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    status = body.get("status") or {}
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return ScheduleSummary(
        name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
        task=str((spec.get("taskRef") or {}).get("name", "")),
        schedule=spec.get("schedule") or f"every {spec.get('interval', '?')}",
        time_zone=spec.get("timeZone"), paused=bool(spec.get("paused")),
        last_schedule_time=_parse_time(status.get("lastScheduleTime")),
        next_schedule_time=_parse_time(status.get("nextScheduleTime")),
        last_run_name=status.get("lastRunName"), runs=int(status.get("runs") or 0),
        skipped=int(status.get("skipped") or 0), missed=int(status.get("missed") or 0),
        ready=ready.get("reason"), message=ready.get("message"))


def summarize_history(record: Any) -> RunSummary:
    """A summary of a row of the run history (see `history.HISTORY_COLUMNS`)."""
    error = record["error"]
    return RunSummary(
        name=record["name"], namespace=record["namespace"], run_id=record["run_id"],
        task=record["task_id"], queue=record["queue"], phase=record["phase"],
        reason=None, message=None, attempt=int(record["attempt"]),
        current_step=record["last_step"], completed_steps=int(record["completed_steps"]),
        created_at=record["created_at"], finished_at=record["finished_at"],
        output=record["output"],
        last_error=({"type": error.get("type"), "message": error.get("message")}
                    if isinstance(error, dict) else None),
        tags=list(record["tags"] or []), source="history", metadata=record["metadata"])


def summarize_step(step: Any) -> StepSummary:
    """A summary of a `durakube.store.steps.Step`."""
    return StepSummary(seq=step.seq, name=step.name, status=step.status, attempt=step.attempt,
                       duration_ms=float(step.duration_ms), result=step.result, error=step.error,
                       finished_at=step.finished_at)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A one-line JSON preview of `value`, cut to `limit` characters with an ellipsis."""
    if value is None:
        return ""
    text = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    if isinstance(text, datetime):
        return text
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _isoformat(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()

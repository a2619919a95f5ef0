"""Reconciles one TaskRun: from what is observed now to the next status and action.

Reads top to bottom, as Tekton's TaskRun reconciler does: snapshot the status ->
stop early if finished -> resolve and validate references -> register the run in
Postgres -> handle cancellation -> observe the attempt's pod by its deterministic
name (create it if missing, adopt it on AlreadyExists) -> when the pod has ended,
read the attempt's outcome from Postgres and decide (succeed, fail, back off, retry
from the checkpoint) -> patch the status once -> emit an Event only when the
condition changed -> say when to look again.

Level-based and idempotent: running it twice changes nothing, and a pass cut short
by a crash is finished by the next one. The status patch is the commit point:
everything before it is safe to repeat.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pydantic

from durakube import durations, errors, resources
from durakube import retry as retry_module
from durakube.store import attempts, payloads, pools, queues, runs, waitpoints
from durakube_operator import (
    conditions,
    kubeapi,
    metrics,
    pods,
    progress,
    reasons,
    spawning,
    validating,
)
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

# Backoff after a pod died without an outcome (infrastructure): quick, capped.
_INFRA_RETRY = retry_module.Retry(max_attempts=1000, factor=2.0, min_timeout=1.0,
                                  max_timeout=30.0, randomize=True)
# Output preview kept in the CR; the full output lives in Postgres.
_PREVIEW_BYTES = 1024


@dataclass
class Context:
    """What every pass needs; built once at operator start."""

    api: kubeapi.KubeApi
    db: pools.Database
    settings: settings_module.Settings
    # Asks the admission loop for a pass over a queue (a run joined its line or left a slot).
    poke_admission: Callable[[str | None], None] = lambda queue: None
    # Asks the waking loop to resume runs whose wait just ended.
    wake_waiting_runs: Callable[[], None] = lambda: None
    # Namespaces where the database Secret is known to exist (saves a GET per pass).
    secrets_ensured: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Result:
    """When to look at the run again without a new event (None: only on events)."""

    requeue_after: float | None = None


async def reconcile(ctx: Context, namespace: str, name: str) -> Result:
    body = await ctx.api.get_taskrun(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Result()
    try:
        run = resources.TaskRun.model_validate(body)
    except pydantic.ValidationError as error:
        # The CRD schema already refuses most of this; what remains (say, a status an
        # older version wrote) must still end the run with a message, not a crash loop.
        status = resources.TaskRunStatus.model_validate(
            {k: v for k, v in (body.get("status") or {}).items() if k == "conditions"}
            if isinstance(body.get("status"), dict) else {})
        await _fail_invalid(ctx, body, status, reasons.INVALID, f"invalid TaskRun: {error}")
        return Result()
    before = run.status
    if before.phase in resources.FINAL_PHASES:
        return Result()
    status, requeue = await _next_status(ctx, body, run)
    if status.phase in resources.FINAL_PHASES or status.phase == resources.Phase.BACKING_OFF:
        # Finished, canceled or waiting to retry: no slot and no place in line.
        await _release_slot(ctx, status.run_id or "", None)
    await _publish(ctx, body, before, status)
    return Result(requeue)


async def _next_status(ctx: Context, body: dict[str, Any],
                       run: resources.TaskRun) -> tuple[resources.TaskRunStatus, float | None]:
    meta, generation = run.metadata, run.metadata.generation
    status = run.status
    assert meta.uid is not None and meta.namespace is not None
    if status.phase is None:
        status = conditions.transition(status, resources.Phase.PENDING, reasons.PENDING,
                                       "waiting for the operator", generation)
        status = status.model_copy(update={"run_id": meta.uid, "start_time": conditions.now()})

    task_body = await ctx.api.get_task(meta.namespace, run.spec.task_ref.name)
    if task_body is None:
        if run.spec.cancel:
            return _canceled(status, generation), None
        return conditions.transition(
            status, resources.Phase.FAILED, reasons.TASK_NOT_FOUND,
            f"Task {run.spec.task_ref.name!r} does not exist in namespace {meta.namespace!r}",
            generation), None
    problem = validating.validate_run(run, task_body)
    if problem is not None:
        return conditions.transition(status, resources.Phase.FAILED, problem.reason,
                                     problem.message, generation), None
    task = resources.Task.model_validate(task_body)

    queue = queue_of(run, task, ctx.settings)
    payload = run.spec.payload
    if run.spec.payload_ref is not None:
        stored = await payloads.get_payload(ctx.db, run.spec.payload_ref)
        if stored is None:
            return conditions.transition(
                status, resources.Phase.FAILED, reasons.INVALID,
                f"spec.payloadRef {run.spec.payload_ref} names no stored payload", generation), None
        payload = stored
    await runs.register_run(ctx.db, run_id=meta.uid, namespace=meta.namespace, name=meta.name,
                            task_id=task.spec.entrypoint, payload=payload, queue=queue)
    if ctx.settings.manage_database_secret and meta.namespace not in ctx.secrets_ensured:
        await ctx.api.ensure_secret(meta.namespace, ctx.settings.database_secret_name,
                                    {ctx.settings.database_secret_key: ctx.settings.database_url})
        ctx.secrets_ensured.add(meta.namespace)

    attempt = status.attempt
    pod = await ctx.api.get_pod(meta.namespace, status.pod_name) if status.pod_name else None

    if run.spec.cancel:
        if pod is not None and not _pod_finished(pod):
            if not pod["metadata"].get("deletionTimestamp"):
                await ctx.api.delete_pod(meta.namespace, pod["metadata"]["name"])
            return status, 1.0  # look again once the pod is gone
        return _canceled(status, generation), None

    if status.phase == resources.Phase.SUSPENDED and not await _wait_is_over(ctx, meta.uid, status):
        # No pod, no slot, no timer of its own: the waking loop or an event brings it back.
        return status, None
    if attempt == 0 or status.phase in (resources.Phase.BACKING_OFF, resources.Phase.QUEUED,
                                        resources.Phase.SUSPENDED):
        due = status.next_attempt_at or _first_attempt_due(run)
        if due is not None and due > conditions.now():
            return status, (due - conditions.now()).total_seconds()
        # A slot first: the pod of an attempt exists only while its run holds one.
        if await queues.holds_slot(ctx.db, meta.uid):
            return await _start_attempt(ctx, run, task, status, attempt + 1), None
        return await _wait_in_line(ctx, run, status, queue)

    # An attempt is under way (or ended): observe its pod.
    if pod is None and status.pod_name:
        # The pod may be gone (deleted, evicted and collected); its outcome may not.
        await _release_slot(ctx, meta.uid, queue)
        outcome = await attempts.read_outcome(ctx.db, meta.uid, attempt)
        if outcome is None:
            return _infrastructure_failure(status, task, reasons.POD_DELETED,
                                           f"pod {status.pod_name} disappeared without an outcome",
                                           generation), 0.0
        return await _conclude(ctx, run, task, status, outcome), 0.0
    assert pod is not None
    if not _pod_finished(pod):
        status = await progress.observe(ctx.db, status, meta.uid, pod)
        return status, ctx.settings.resync_seconds
    # The pod has ended: its slot goes back to the queue before anything else.
    await _release_slot(ctx, meta.uid, queue)
    outcome = await attempts.read_outcome(ctx.db, meta.uid, attempt)
    if outcome is None:
        reason, message = _why_pod_ended(pod)
        if reason == reasons.DEADLINE_EXCEEDED:
            return _timed_out(run, task, status, message, generation), 0.0
        return _infrastructure_failure(status, task, reason, message, generation), 0.0
    return await _conclude(ctx, run, task, status, outcome), 0.0


def queue_of(run: resources.TaskRun, task: resources.Task, settings: settings_module.Settings) -> str:
    """The run's queue as "<namespace>/<name>": the run's, else the task's, else the default."""
    return f"{run.metadata.namespace}/{run.spec.queue or task.spec.queue or settings.default_queue}"


def _first_attempt_due(run: resources.TaskRun) -> datetime | None:
    """When `spec.delay` lets the first attempt start (None: at once)."""
    created = run.metadata.model_extra.get("creationTimestamp") if run.metadata.model_extra else None
    if run.status.attempt or not run.spec.delay or not created:
        return None
    return _parse_time(created) + timedelta(seconds=durations.parse_duration(run.spec.delay))


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _wait_in_line(ctx: Context, run: resources.TaskRun, status: resources.TaskRunStatus,
                        queue: str) -> tuple[resources.TaskRunStatus, float | None]:
    meta = run.metadata
    assert meta.uid is not None and meta.namespace is not None
    created = meta.model_extra.get("creationTimestamp") if meta.model_extra else None
    created_at = _parse_time(created) if created else conditions.now()
    if run.spec.ttl and status.attempt == 0:
        expires = created_at + timedelta(seconds=durations.parse_duration(run.spec.ttl))
        if expires <= conditions.now():
            await _release_slot(ctx, meta.uid, queue)
            return conditions.transition(
                status, resources.Phase.EXPIRED, reasons.EXPIRED,
                f"still waiting in queue {queue} after its ttl of {run.spec.ttl}",
                meta.generation), None
    await queues.enqueue_run(ctx.db, run_id=meta.uid, queue=queue, namespace=meta.namespace,
                             name=meta.name, concurrency_key=run.spec.concurrency_key,
                             priority=run.spec.priority, created_at=created_at,
                             default_limit=ctx.settings.default_concurrency_limit)
    ctx.poke_admission(queue)
    place = await queues.position(ctx.db, meta.uid)
    if place is None:
        # Admitted between the enqueue and now: the next pass starts the attempt.
        return status, 0.0
    message = f"waiting for a slot in queue {queue} ({place[0]} of {place[1]} waiting)"
    status = status.model_copy(update={"queue_position": place[0]})
    status = conditions.transition(status, resources.Phase.QUEUED, reasons.QUEUED, message,
                                   meta.generation)
    if run.spec.ttl and status.attempt == 0:
        return status, (expires - conditions.now()).total_seconds()
    return status, ctx.settings.resync_seconds


async def _wait_is_over(ctx: Context, run_id: str, status: resources.TaskRunStatus) -> bool:
    step = (status.waiting_for or {}).get("step")
    if not isinstance(step, int):
        return True  # nothing recorded to wait for: resume rather than hang
    waitpoint = await waitpoints.load_waitpoint(ctx.db, run_id, step)
    return waitpoint is None or waitpoint.completed_at is not None


async def _release_slot(ctx: Context, run_id: str, queue: str | None) -> None:
    if await queues.release(ctx.db, run_id):
        ctx.poke_admission(queue)


async def _start_attempt(ctx: Context, run: resources.TaskRun, task: resources.Task,
                         status: resources.TaskRunStatus, attempt: int) -> resources.TaskRunStatus:
    meta = run.metadata
    assert meta.uid is not None and meta.namespace is not None
    manifest = pods.build_attempt_pod(run, task, attempt, ctx.settings)
    pod_name = manifest["metadata"]["name"]
    # Record the attempt first: a worker that starts finds its row, and a crash between
    # here and the pod's creation only repeats this idempotent write.
    await attempts.start_attempt(ctx.db, meta.uid, attempt, pod_name)
    created = await ctx.api.create_pod(meta.namespace, manifest)
    if not created:
        logger.info("adopting existing pod %s/%s", meta.namespace, pod_name)
    status = status.model_copy(update={"attempt": attempt, "pod_name": pod_name,
                                       "next_attempt_at": None, "queue_position": None,
                                       "waiting_for": None})
    return conditions.transition(status, resources.Phase.RUNNING, reasons.RUNNING,
                                 f"attempt {attempt} running in pod {pod_name}",
                                 meta.generation)


def _retry_policy(run: resources.TaskRun, task: resources.Task,
                  outcome: attempts.Outcome | None = None) -> retry_module.Retry:
    """The TaskRun's policy, else the Task's, else the decorator's the worker recorded."""
    spec = run.spec.retry or task.spec.retry
    if spec is not None:
        return spec.to_policy()
    if outcome is not None and outcome.policy is not None:
        return outcome.policy
    return retry_module.Retry()


def _user_attempts(status: resources.TaskRunStatus) -> int:
    """Attempts that count against maxAttempts: infrastructure failures and attempts
    that ended by suspending (a wait) do not."""
    return int(status.attempt - status.infrastructure_failures - status.resumes)


async def _conclude(ctx: Context, run: resources.TaskRun, task: resources.Task,
                    status: resources.TaskRunStatus,
                    outcome: attempts.Outcome) -> resources.TaskRunStatus:
    generation = run.metadata.generation
    assert run.metadata.uid is not None
    status = await progress.observe(ctx.db, status, run.metadata.uid, None)
    if outcome.kind == "suspended":
        # The pod of an attempt that ended by suspending did its work and recorded it:
        # remove it, so a waiting run holds no pod at all, not even a finished one.
        if status.pod_name:
            await ctx.api.delete_pod(run.metadata.namespace or "", status.pod_name)
        waiting_for = outcome.output if isinstance(outcome.output, dict) else {}
        status = status.model_copy(update={"waiting_for": waiting_for,
                                           "resumes": status.resumes + 1})
        until = f" until {waiting_for['until']}" if waiting_for.get("until") else ""
        return conditions.transition(status, resources.Phase.SUSPENDED, reasons.SUSPENDED,
                                     f"waiting for {waiting_for.get('kind', 'something')}{until}; "
                                     "no pod is held", generation)
    if outcome.kind == "succeeded":
        status = status.model_copy(update={"output": _preview(outcome.output), "last_error": None})
        return conditions.transition(status, resources.Phase.SUCCEEDED, reasons.SUCCEEDED,
                                     "the task returned", generation)
    error = outcome.error or {"type": "Error", "message": "no error recorded"}
    last_error = resources.RunError(type=str(error.get("type", "Error")),
                                    message=str(error.get("message", ""))[:2000],
                                    retryable=outcome.kind == "retry")
    status = status.model_copy(update={"last_error": last_error})
    if outcome.kind == "retry":
        policy = _retry_policy(run, task, outcome)
        if retry_module.has_attempts_left(policy, _user_attempts(status)):
            due = outcome.retry_at or (conditions.now() + timedelta(
                seconds=retry_module.backoff_delay(policy, _user_attempts(status))))
            return _backing_off(status, due, reasons.BACKING_OFF,
                                f"attempt {status.attempt} failed with {last_error.type}: "
                                f"{last_error.message}; next attempt at {due.isoformat()}",
                                generation)
        return conditions.transition(
            status, resources.Phase.FAILED, reasons.RETRIES_EXHAUSTED,
            f"{policy.max_attempts} attempts failed; last: {last_error.type}: {last_error.message}",
            generation)
    # A permanent failure; the error's code is the reason when it is one of ours.
    reason = str(error.get("code") or reasons.FAILED)
    if not reason.isidentifier() or not reason[0].isupper():
        reason = reasons.FAILED
    return conditions.transition(status, resources.Phase.FAILED, reason,
                                 f"{last_error.type}: {last_error.message}", generation)


def _backing_off(status: resources.TaskRunStatus, due: datetime, reason: str, message: str,
                 generation: int | None) -> resources.TaskRunStatus:
    status = status.model_copy(update={"next_attempt_at": due.replace(microsecond=0)})
    return conditions.transition(status, resources.Phase.BACKING_OFF, reason, message, generation)


def _infrastructure_failure(status: resources.TaskRunStatus, task: resources.Task, reason: str,
                            message: str, generation: int | None) -> resources.TaskRunStatus:
    failures = status.infrastructure_failures + 1
    status = status.model_copy(update={
        "infrastructure_failures": failures,
        "last_error": resources.RunError(type=reason, message=message, retryable=True)})
    if failures > task.spec.infrastructure_retries:
        return conditions.transition(
            status, resources.Phase.FAILED, reasons.INFRASTRUCTURE_FAILED,
            f"{failures} attempts ended without an outcome; last: {reason}: {message}", generation)
    due = conditions.now() + timedelta(seconds=retry_module.backoff_delay(_INFRA_RETRY, failures))
    return _backing_off(status, due, reason,
                        f"{message}; resuming from the last checkpoint at {due.isoformat()}",
                        generation)


def _timed_out(run: resources.TaskRun, task: resources.Task, status: resources.TaskRunStatus,
               message: str, generation: int | None) -> resources.TaskRunStatus:
    status = status.model_copy(update={"last_error": resources.RunError(
        type=reasons.TIMED_OUT, message=message, retryable=True)})
    policy = _retry_policy(run, task)
    if retry_module.has_attempts_left(policy, _user_attempts(status)):
        due = conditions.now() + timedelta(
            seconds=retry_module.backoff_delay(policy, _user_attempts(status)))
        return _backing_off(status, due, reasons.TIMED_OUT,
                            f"{message}; resuming from the last checkpoint at {due.isoformat()}",
                            generation)
    return conditions.transition(status, resources.Phase.TIMED_OUT, reasons.TIMED_OUT,
                                 message, generation)


def _canceled(status: resources.TaskRunStatus, generation: int | None) -> resources.TaskRunStatus:
    return conditions.transition(status, resources.Phase.CANCELED, reasons.CANCELED,
                                 "canceled by spec.cancel", generation)


def _pod_finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _why_pod_ended(pod: dict[str, Any]) -> tuple[str, str]:
    """The infrastructure reason a pod ended without its worker recording an outcome."""
    status = pod.get("status") or {}
    name = pod["metadata"]["name"]
    if status.get("reason") == "DeadlineExceeded":
        return reasons.DEADLINE_EXCEEDED, f"attempt pod {name} ran past its timeout"
    if status.get("reason") == "Evicted":
        return reasons.POD_EVICTED, f"pod {name} was evicted: {status.get('message', '')}"
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return reasons.OOM_KILLED, f"pod {name} exceeded its memory limit"
        if terminated:
            detail = (terminated.get("message") or "").strip()[-500:]
            return reasons.WORKER_CRASHED, (
                f"worker in pod {name} exited with code {terminated.get('exitCode')} "
                f"without recording an outcome{': ' + detail if detail else ''}")
    return reasons.WORKER_CRASHED, f"pod {name} ended without an outcome"


def _preview(output: Any) -> dict[str, Any] | None:
    """A small preview of the output for the CR (objects only; etcd stays small)."""
    text = json.dumps(output, default=str)
    if len(text) <= _PREVIEW_BYTES:
        return output if isinstance(output, dict) else {"value": output}
    return {"truncated": True, "bytes": len(text), "head": text[:_PREVIEW_BYTES // 2]}


async def _publish(ctx: Context, body: dict[str, Any], before: resources.TaskRunStatus,
                   after: resources.TaskRunStatus) -> None:
    """Patches the status when it changed, then records one Event per transition."""
    old = before.model_dump(mode="json", by_alias=True, exclude_none=True)
    new = after.model_dump(mode="json", by_alias=True, exclude_none=True)
    if old == new:
        return
    if before.phase != after.phase and after.run_id and after.phase is not None:
        # Before the status patch, which is the commit point: both writes are idempotent,
        # and a final status patched first would never be reconciled again to make them.
        # Postgres mirrors the phase: history outlives the TaskRun, and queues count by it.
        await runs.set_run_status(ctx.db, after.run_id, str(after.phase))
        if after.phase in resources.FINAL_PHASES and await spawning.report_child_end(ctx.db, body, after):
            ctx.wake_waiting_runs()
    # JSON merge patch: fields that went away are sent as null to remove them.
    patch: dict[str, Any] = {**{k: None for k in old if k not in new}, **new}
    await ctx.api.patch_status("taskruns", body["metadata"]["namespace"], body["metadata"]["name"],
                               patch)
    if conditions.changed(before, after):
        condition = conditions.succeeded(after)
        assert condition is not None
        _count_transition(body, before, after, condition.reason)
        event_type = "Warning" if condition.status == resources.ConditionStatus.FALSE else "Normal"
        await ctx.api.create_event(body, "TaskRun", condition.reason, condition.message, event_type)


def _count_transition(body: dict[str, Any], before: resources.TaskRunStatus,
                      after: resources.TaskRunStatus, reason: str) -> None:
    task = str(((body.get("spec") or {}).get("taskRef") or {}).get("name", ""))
    queue = f"{body['metadata']['namespace']}/{(body.get('spec') or {}).get('queue') or ''}"
    if after.phase == resources.Phase.BACKING_OFF:
        metrics.RETRIES.labels(task=task, reason=reason).inc()
    elif after.phase in resources.FINAL_PHASES:
        metrics.RUNS_FINISHED.labels(task=task, queue=queue, outcome=str(after.phase)).inc()
        created = body["metadata"].get("creationTimestamp")
        if created and after.completion_time is not None:
            metrics.RUN_DURATION.labels(task=task, queue=queue, outcome=str(after.phase)).observe(
                (after.completion_time - _parse_time(created)).total_seconds())
    elif before.phase is None:
        metrics.RUNS_STARTED.labels(task=task, queue=queue).inc()


async def _fail_invalid(ctx: Context, body: dict[str, Any], status: resources.TaskRunStatus,
                        reason: str, message: str) -> None:
    generation = body["metadata"].get("generation")
    failed = conditions.transition(status, resources.Phase.FAILED, reason, message, generation)
    await _publish(ctx, body, status, failed)


def error_reason(error: BaseException) -> str:
    """The reason word for an error raised while reconciling (for logs and metrics)."""
    if isinstance(error, errors.DurakubeError):
        return str(error.code)
    return type(error).__name__

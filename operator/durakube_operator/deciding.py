"""Deciding what happens to a TaskRun next: a pure function of what was seen and the time.

The second of the reconciler's four stages (observe -> decide -> act -> publish).
`decide(observation, now, settings)` returns the next status, the actions to
perform before that status is published (in order) and when to look again. It
holds the whole decision table of a run: registration, validation, cancellation,
delay, ttl, waiting for a slot, starting an attempt, reading the attempt's end
(success, a permanent failure, a retry within the budget, suspension, a timeout,
an infrastructure failure with its own budget) and back-off.

No I/O and no clock: the caller passes `now` (and, for tests, the jitter's random
source), so every transition is testable in microseconds. Every decision is
level-based: deciding again on the same observation gives the same result.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pydantic

from durakube import compensating, durations, errors, resources, retry
from durakube.store import attempts, queues
from durakube_operator import actions, conditions, observing, pinning, pods, reasons, retaining
from durakube_operator import settings as settings_module

Phase = resources.Phase

# Back-off after a pod died without an outcome (infrastructure): quick, capped. Its first
# delay is the operator's `infrastructure_retry_delay`.
INFRASTRUCTURE_RETRY = retry.Retry(max_attempts=1000, factor=2.0, min_timeout=1.0,
                                   max_timeout=30.0, randomize=True)
# Output preview kept in the CR; the full output lives in Postgres.
PREVIEW_BYTES = 1024
# Attempts in compensation mode and their back-off (`durakube.compensating`).
COMPENSATION_ATTEMPTS = compensating.ATTEMPTS
COMPENSATION_RETRY = compensating.RETRY
# The ends of a run that its compensations run before (a cancel does not compensate).
COMPENSATED_PHASES = frozenset({Phase.FAILED, Phase.TIMED_OUT})


@dataclass(frozen=True)
class Decision:
    status: resources.TaskRunStatus
    actions: tuple[actions.Action, ...] = ()
    # When to look at the run again without a new event (None: only on events).
    requeue_after: float | None = None


def decide(seen: observing.Observation, now: datetime, settings: settings_module.Settings,
           rng: random.Random | None = None) -> Decision:
    """The next status of the observed run, the actions that lead to it, and when to look again."""
    if seen.run is None:
        before = conditions_only(seen.body)
        generation = seen.body["metadata"].get("generation")
        return Decision(conditions.transition(before, Phase.FAILED, reasons.INVALID,
                                              seen.invalid or "invalid TaskRun", generation, now))
    before = seen.run.status
    if before.phase in resources.FINAL_PHASES:
        # Its retention was recorded when it finished, unless an operator from before
        # retention finished it: recorded now (the first record stands).
        if before.run_id is None:
            return Decision(before)
        return Decision(before, (actions.RecordRetention(before.run_id, retention_of(seen, settings),
                                                         before.completion_time),))
    try:
        decision = _Deciding(seen, now, settings, rng).decide()
    except _InvalidPolicy as error:
        decision = Decision(conditions.transition(before, Phase.FAILED, reasons.INVALID, str(error),
                                                  seen.run.metadata.generation, now))
    return _with_consequences(seen, before, decision, settings)


def after_joining(seen: observing.Observation, decision: Decision, place: queues.Place,
                  now: datetime, settings: settings_module.Settings) -> Decision:
    """The decision once the run has joined its line (`decision` had it join).

    Admitted at once: decided again from the status just decided, so the attempt
    starts in the same pass (one status patch, one Event, as for a Job's pod). In
    line: its place, with the phase mirrored. Neither (admitted and already let go):
    another pass at once.
    """
    assert seen.run is not None
    if place.holds_slot:
        run = seen.run.model_copy(update={"status": decision.status})
        return decide(dataclasses.replace(seen, run=run, place=place), now, settings)
    if place.in_line is None:
        return Decision(decision.status, (), 0.0)
    queued = _queued(decision.status, seen.queue, place.in_line, seen.run.metadata.generation, now)
    mirror: tuple[actions.Action, ...] = ()
    if decision.status.phase != queued.phase and queued.run_id is not None:
        mirror = (actions.MirrorPhase(queued.run_id, str(queued.phase)),)
    return Decision(queued, mirror, decision.requeue_after)


def pod_refused(seen: observing.Observation, decided: resources.TaskRunStatus, message: str,
                now: datetime, settings: settings_module.Settings) -> Decision:
    """The decision when the attempt's pod that `decided` would start was refused by the
    API server for what it is: the run fails now, instead of retrying a pod that can never
    be created, and gives its slot back."""
    assert seen.run is not None
    deciding = _Deciding(seen, now, settings, None)
    failed = deciding.transition(decided, Phase.FAILED, reasons.POD_REFUSED, message[:1024])
    failed = failed.model_copy(update={"pod_name": None})
    return _with_consequences(seen, seen.run.status, Decision(failed), settings)


def effective_policy(run: resources.TaskRun, task: resources.Task,
                     outcome: attempts.Outcome | None) -> retry.Retry:
    """The TaskRun's retry policy, else the Task's, else the one the worker's decorator
    declared (recorded with the outcome), else the defaults."""
    spec = run.spec.retry or task.spec.retry
    try:
        if spec is not None:
            return spec.to_policy()
        if outcome is not None and outcome.policy is not None:
            return outcome.policy
    except (pydantic.ValidationError, errors.InvalidDuration) as error:
        raise _InvalidPolicy(f"the retry policy is invalid: {error}") from error
    return retry.Retry()


class _InvalidPolicy(ValueError):
    pass


class _Deciding:
    """One decision; an object only to keep the observation, clock and settings at hand."""

    def __init__(self, seen: observing.Observation, now: datetime,
                 settings: settings_module.Settings, rng: random.Random | None) -> None:
        assert seen.run is not None
        self.seen, self.run, self.now, self.settings, self.rng = seen, seen.run, now, settings, rng
        self.generation = seen.run.metadata.generation
        meta = seen.run.metadata
        assert meta.uid is not None and meta.namespace is not None, "a stored TaskRun has both"
        self.uid, self.namespace = meta.uid, meta.namespace

    def transition(self, status: resources.TaskRunStatus, phase: Phase, reason: str,
                   message: str) -> resources.TaskRunStatus:
        return conditions.transition(status, phase, reason, message, self.generation, self.now)

    def decide(self) -> Decision:
        seen, run = self.seen, self.run
        status = run.status
        todo: list[actions.Action] = []
        if status.phase is None:
            status = self.transition(status, Phase.PENDING, reasons.PENDING, "waiting for the operator")
            status = status.model_copy(update={"run_id": self.uid,
                                               "start_time": self.now.replace(microsecond=0)})
        if seen.problem is not None:
            return Decision(self.transition(status, Phase.FAILED, seen.problem.reason,
                                            seen.problem.message))
        if seen.task is None:
            if run.spec.cancel:
                return Decision(self.canceled(status))
            return Decision(self.transition(
                status, Phase.FAILED, reasons.TASK_NOT_FOUND,
                f"Task {run.spec.task_ref.name!r} does not exist in namespace {self.namespace!r}"))
        if seen.payload_missing:
            return Decision(self.transition(
                status, Phase.FAILED, reasons.INVALID,
                f"spec.payloadRef {run.spec.payload_ref} names no stored payload"))
        if seen.fork_problem is not None and run.status.phase is None:
            return Decision(self.transition(status, Phase.FAILED, reasons.INVALID, seen.fork_problem))
        task = seen.task
        if run.status.phase is None:
            origin = run.spec.replay_of
            fork = None if origin is None or origin.from_step is None else \
                actions.Fork(source_run_id=origin.run_id, from_step=origin.from_step)
            debounce = None
            if run.spec.debounce is not None:
                # Unchanged since its creation (this pass writes its first status): the
                # version it was made with, which orders creations within a second.
                version = str(seen.body["metadata"].get("resourceVersion") or "")
                debounce = actions.DebounceEntry(
                    task=run.spec.task_ref.name, key=run.spec.debounce.key,
                    created_at=seen.created_at or self.now,
                    created_version=int(version) if version.isdigit() else None)
            todo.append(actions.RegisterRun(run_id=self.uid, namespace=self.namespace,
                                            name=run.metadata.name, task_id=task.spec.entrypoint,
                                            payload=seen.payload, queue=seen.queue, fork=fork,
                                            debounce=debounce,
                                            tags=tuple(resources.read_tags(run.metadata.labels))))
            if seen.undefined_queue is not None:
                todo.append(actions.Warn(seen.body, reasons.QUEUE_NOT_DEFINED, (
                    f"no TaskQueue {seen.undefined_queue!r} exists in namespace "
                    f"{self.namespace!r}: the run waits in the namespace's default queue "
                    f"{seen.queue}")))

        pod = seen.pod
        if run.spec.cancel:
            if pod is not None and not observing.pod_finished(pod):
                if not pod["metadata"].get("deletionTimestamp"):
                    todo.append(actions.DeletePod(self.namespace, pod["metadata"]["name"]))
                return Decision(status, tuple(todo), 1.0)  # look again once the pod is gone
            return Decision(self.canceled(status), tuple(todo))

        if status.phase == Phase.SUSPENDED and not seen.wait_over:
            # No pod, no slot, no timer of its own: the waking loop or an event brings it back.
            return Decision(status, tuple(todo))
        if status.phase == Phase.COMPENSATING:
            if status.compensation is None:
                # Only this operator writes the status; a status without its compensation
                # cannot say how the run failed: it ends rather than loops.
                return Decision(self.transition(status, Phase.FAILED, reasons.FAILED,
                                                "Compensating without status.compensation"),
                                tuple(todo))
            if observing.compensation_waiting(status):
                return self.start_or_wait(status, task, todo)
            return self.observe_compensation(status, task, todo)
        if status.attempt == 0 or status.phase in observing.WAITING_PHASES:
            return self.start_or_wait(status, task, todo)
        return self.then_compensate(self.observe_attempt(status, task, todo))

    def start_or_wait(self, status: resources.TaskRunStatus, task: resources.Task,
                      todo: list[actions.Action]) -> Decision:
        run, seen = self.run, self.seen
        due = status.next_attempt_at or self.first_attempt_due()
        if due is not None and due > self.now:
            return Decision(status, tuple(todo), (due - self.now).total_seconds())
        if seen.superseded_by is not None and run.spec.debounce is not None:
            # Debounced: a newer run with its key came within its delay and runs instead.
            return Decision(self.transition(
                status, Phase.CANCELED, reasons.DEBOUNCED,
                f"run {seen.superseded_by} came with the same debounce key "
                f"{run.spec.debounce.key!r} within {run.spec.debounce.delay}: it runs instead"),
                tuple(todo))
        assert seen.place is not None, "observed while the run may start"
        if seen.place.holds_slot and status.phase == Phase.COMPENSATING:
            return self.start_compensating(status, task, todo)
        if seen.place.holds_slot:
            # A slot first: the pod of an attempt exists only while its run holds one.
            attempt = status.attempt + 1
            if status.pinned is None:
                # The first attempt pins the code every later attempt and resume runs.
                if seen.pin_source is None and pinning.keeps_source_pin(run):
                    todo.append(actions.Warn(seen.body, reasons.PIN_NOT_FOUND, (
                        f"the replayed run {run.spec.replay_of.run if run.spec.replay_of else ''!r} "
                        "has no pinned code to keep (gone, or started before pinning): "
                        "this run is pinned to the current Task")))
                status = status.model_copy(update={
                    "pinned": pinning.snapshot(run, task, seen.pin_source)})
            assert status.pinned is not None
            task = status.pinned.task(task.metadata.name, task)
            if seen.task_deleted:
                todo.append(actions.Warn(seen.body, reasons.TASK_DELETED, (
                    f"Task {run.spec.task_ref.name!r} was deleted: attempt {attempt} runs "
                    "from the run's pinned snapshot of it")))
            manifest = pods.build_attempt_pod(run, task, attempt, self.settings, status.oom_kills)
            pod_name = manifest["metadata"]["name"]
            resumed = status.phase == Phase.SUSPENDED
            todo.append(actions.StartAttempt(run_id=self.uid, namespace=self.namespace,
                                             name=run.metadata.name, queue=seen.queue,
                                             attempt=attempt, pod=manifest,
                                             due_since=None if resumed else due or seen.created_at))
            status = status.model_copy(update={"attempt": attempt, "pod_name": pod_name,
                                               "next_attempt_at": None, "queue_position": None,
                                               "waiting_for": None})
            return Decision(self.transition(status, Phase.RUNNING, reasons.RUNNING,
                                            f"attempt {attempt} running in pod {pod_name}"),
                            tuple(todo))
        # Waiting in line, unless the ttl ran out first. No timer otherwise: the admission
        # loop brings the run back when it gets a slot (a line of 10,000 runs costs no pass
        # while it waits, and its place in `status.queuePosition` is the one it last saw).
        requeue = None
        if run.spec.ttl and status.attempt == 0:
            created = seen.created_at or self.now
            expires = created + timedelta(seconds=durations.parse_duration(run.spec.ttl))
            if expires <= self.now:
                return Decision(self.transition(
                    status, Phase.EXPIRED, reasons.EXPIRED,
                    f"still waiting in queue {seen.queue} after its ttl of {run.spec.ttl}"),
                    tuple(todo))
            requeue = (expires - self.now).total_seconds()
        if seen.place.in_line is not None:
            return Decision(_queued(status, seen.queue, seen.place.in_line, self.generation, self.now),
                            tuple(todo), requeue)
        todo.append(actions.Enqueue(run_id=self.uid, queue=seen.queue, namespace=self.namespace,
                                    name=run.metadata.name, concurrency_key=run.spec.concurrency_key,
                                    priority=run.spec.priority, created_at=seen.created_at or self.now))
        return Decision(status, tuple(todo), requeue)

    def observe_attempt(self, status: resources.TaskRunStatus, task: resources.Task,
                        todo: list[actions.Action]) -> Decision:
        seen = self.seen
        pod = seen.pod
        status = _with_progress(status, seen)
        if pod is not None and status.pinned is not None and status.pinned.image_digest is None:
            # The digest the pinned image resolved to, once the kubelet reports it.
            digest = pinning.pod_image_digest(pod, status.pinned.image)
            if digest is not None:
                status = status.model_copy(update={
                    "pinned": status.pinned.model_copy(update={"image_digest": digest})})
        if pod is not None and not observing.pod_finished(pod) and node_loss(pod) is None:
            return Decision(status, tuple(todo), self.progress_resync(pod))
        # A pod on a lost node never finishes on its own (no kubelet confirms its deletion):
        # it counts as ended. Kubernetes removes it when the node returns or goes; a worker
        # still running there is fenced when the next attempt starts.
        # The pod has ended or gone: its slot goes back to the queue before anything else.
        todo.append(actions.ReleaseSlot(self.uid, seen.queue))
        if seen.outcome is not None:
            status, more = self.conclude(status, task, seen.outcome)
            return Decision(status, (*todo, *more), 0.0)
        if pod is None:
            # The pod may be gone (deleted, evicted and collected) without an outcome.
            return Decision(self.infrastructure_failure(
                status, task, reasons.POD_DELETED,
                f"pod {status.pod_name} disappeared without an outcome"), tuple(todo), 0.0)
        # Ended without an outcome while its pod is still there: keep the end of the pod's
        # log, which its worker may have had no time to store (not on a lost node: no
        # kubelet there would answer).
        if node_loss(pod) is None:
            todo.append(actions.SaveLogTail(self.uid, status.attempt, self.namespace,
                                            pod["metadata"]["name"]))
        reason, message = why_pod_ended(pod)
        if reason == reasons.DEADLINE_EXCEEDED:
            return Decision(self.timed_out(status, task, message), tuple(todo), 0.0)
        return Decision(self.infrastructure_failure(status, task, reason, message), tuple(todo), 0.0)

    def progress_resync(self, pod: dict[str, Any]) -> float | None:
        """When to look again at an attempt whose pod has not ended: every resync while its
        worker runs (the steps it completed and its metadata go to the status), never
        while the pod waits for a node or its image (no worker, no progress): its events
        bring the run back."""
        if (pod.get("status") or {}).get("phase") == "Running":
            return self.settings.resync_seconds
        return None

    def conclude(self, status: resources.TaskRunStatus, task: resources.Task,
                 outcome: attempts.Outcome) -> tuple[resources.TaskRunStatus, list[actions.Action]]:
        if outcome.kind == "suspended":
            # The pod of an attempt that ended by suspending did its work and recorded it:
            # remove it, so a waiting run holds no pod at all, not even a finished one.
            todo: list[actions.Action] = []
            if status.pod_name:
                todo.append(actions.DeletePod(self.namespace, status.pod_name))
            waiting_for = outcome.output if isinstance(outcome.output, dict) else {}
            # A token completes its wait: whoever may read the TaskRun must not see it, even
            # from a worker of a release that still recorded it.
            waiting_for = {name: value for name, value in waiting_for.items() if name != "token"}
            status = status.model_copy(update={"waiting_for": waiting_for,
                                               "resumes": status.resumes + 1})
            until = f" until {waiting_for['until']}" if waiting_for.get("until") else ""
            return self.transition(status, Phase.SUSPENDED, reasons.SUSPENDED,
                                   f"waiting for {waiting_for.get('kind', 'something')}{until}; "
                                   "no pod is held"), todo
        if outcome.kind == "succeeded":
            status = status.model_copy(update={"output": preview(outcome.output), "last_error": None})
            return self.transition(status, Phase.SUCCEEDED, reasons.SUCCEEDED, "the task returned"), []
        error = outcome.error or {"type": "Error", "message": "no error recorded"}
        last_error = resources.RunError(type=str(error.get("type", "Error")),
                                        message=str(error.get("message", ""))[:2000],
                                        retryable=outcome.kind == "retry")
        status = status.model_copy(update={"last_error": last_error})
        if outcome.kind == "retry":
            policy = effective_policy(self.run, task, outcome)
            used = user_attempts(status)
            if retry.has_attempts_left(policy, used):
                due = outcome.retry_at or self.now + timedelta(
                    seconds=retry.backoff_delay(policy, used, self.rng))
                return self.backing_off(status, due, reasons.BACKING_OFF,
                                        f"attempt {status.attempt} failed with {last_error.type}: "
                                        f"{last_error.message}; next attempt at {_display(due)}"), []
            return self.transition(
                status, Phase.FAILED, reasons.RETRIES_EXHAUSTED,
                f"{policy.max_attempts} attempts failed; last: {last_error.type}: "
                f"{last_error.message}"), []
        # A permanent failure; the error's code is the reason when it is one of ours.
        reason = str(error.get("code") or reasons.FAILED)
        if not reason.isidentifier() or not reason[0].isupper():
            reason = reasons.FAILED
        return self.transition(status, Phase.FAILED, reason,
                               f"{last_error.type}: {last_error.message}"), []

    def then_compensate(self, decision: Decision) -> Decision:
        """`decision`, unless it ends the run Failed or TimedOut while compensations are
        pending: then the run enters the Compensating phase instead, remembering the end
        it takes once they ran (a retry, a cancel or a success never compensates)."""
        ended = decision.status
        summary = self.seen.compensation_summary
        if ended.phase not in COMPENSATED_PHASES or summary.pending == 0:
            return decision
        failed = conditions.succeeded(ended)
        assert ended.phase is not None and failed is not None
        compensation = resources.CompensationStatus(
            state=resources.CompensationState.WAITING, end_phase=ended.phase,
            reason=failed.reason, message=failed.message, total=summary.total,
            completed=summary.completed, failed=summary.failing)
        status = ended.model_copy(update={"compensation": compensation, "completion_time": None,
                                          "next_attempt_at": None})
        status = self.transition(status, Phase.COMPENSATING, reasons.COMPENSATING,
                                 f"{failed.reason}: {failed.message}; running "
                                 f"{summary.pending} compensation(s), newest first")
        return Decision(status, decision.actions, 0.0)

    def start_compensating(self, status: resources.TaskRunStatus, task: resources.Task,
                           todo: list[actions.Action]) -> Decision:
        """Starts an attempt in compensation mode: the run holds a slot for its pod only."""
        assert status.compensation is not None
        run = self.run
        attempt = status.attempt + 1
        manifest = pods.build_attempt_pod(run, task, attempt, self.settings, status.oom_kills,
                                          compensating=True)
        pod_name = manifest["metadata"]["name"]
        todo.append(actions.StartAttempt(run_id=self.uid, namespace=self.namespace,
                                         name=run.metadata.name, queue=self.seen.queue,
                                         attempt=attempt, pod=manifest, due_since=None))
        compensation = status.compensation.model_copy(update={
            "state": resources.CompensationState.RUNNING,
            "attempts": status.compensation.attempts + 1})
        status = status.model_copy(update={"attempt": attempt, "pod_name": pod_name,
                                           "next_attempt_at": None, "queue_position": None,
                                           "compensation": compensation})
        return Decision(self.transition(
            status, Phase.COMPENSATING, reasons.COMPENSATING,
            f"compensating in pod {pod_name} (attempt {compensation.attempts} of at most "
            f"{COMPENSATION_ATTEMPTS}): {compensation.total - compensation.completed} "
            f"compensation(s) left"), tuple(todo))

    def observe_compensation(self, status: resources.TaskRunStatus, task: resources.Task,
                             todo: list[actions.Action]) -> Decision:
        """An attempt in compensation mode: running, done (the run ends as it failed), or
        ended with a compensation failed or no outcome (retried within the budget)."""
        seen, pod = self.seen, self.seen.pod
        compensation = status.compensation
        assert compensation is not None
        if pod is not None and not observing.pod_finished(pod) and node_loss(pod) is None:
            return Decision(status, tuple(todo), self.progress_resync(pod))
        todo.append(actions.ReleaseSlot(self.uid, seen.queue))
        summary = seen.compensation_summary
        compensation = compensation.model_copy(update={
            "total": summary.total, "completed": summary.completed, "failed": summary.failing})
        outcome = seen.outcome
        if summary.pending == 0 or (outcome is not None and outcome.kind == "succeeded"):
            return Decision(self.end_compensating(
                status, compensation, resources.CompensationState.COMPLETED), tuple(todo), 0.0)
        if outcome is not None:
            error = outcome.error or {}
            last_error = resources.RunError(type=str(error.get("type", "Error")),
                                            message=str(error.get("message", ""))[:2000],
                                            retryable=True)
        else:
            if pod is not None and node_loss(pod) is None:
                todo.append(actions.SaveLogTail(self.uid, status.attempt, self.namespace,
                                                pod["metadata"]["name"]))
            reason, message = why_pod_ended(pod) if pod is not None else (
                reasons.POD_DELETED, f"pod {status.pod_name} disappeared without an outcome")
            last_error = resources.RunError(type=reason, message=message, retryable=True)
        compensation = compensation.model_copy(update={"last_error": last_error})
        if compensation.attempts >= COMPENSATION_ATTEMPTS:
            return Decision(self.end_compensating(
                status, compensation, resources.CompensationState.FAILED), tuple(todo), 0.0)
        due = self.now + timedelta(seconds=retry.backoff_delay(
            COMPENSATION_RETRY, compensation.attempts, self.rng))
        compensation = compensation.model_copy(update={
            "state": resources.CompensationState.WAITING})
        status = status.model_copy(update={"compensation": compensation, "next_attempt_at": due})
        return Decision(self.transition(
            status, Phase.COMPENSATING, reasons.COMPENSATION_BACKING_OFF,
            f"compensating: {last_error.type}: {last_error.message}; "
            f"{summary.pending} compensation(s) left, next attempt at {_display(due)}"),
            tuple(todo), (due - self.now).total_seconds())

    def end_compensating(self, status: resources.TaskRunStatus,
                         compensation: resources.CompensationStatus,
                         state: resources.CompensationState) -> resources.TaskRunStatus:
        """The run's end as it failed (phase, reason and message, its lastError kept), with
        what its compensations did."""
        compensation = compensation.model_copy(update={"state": state})
        done = f"{compensation.completed} of {compensation.total} compensation(s) ran"
        if state == resources.CompensationState.FAILED and compensation.last_error is not None:
            done += (f"; {compensation.total - compensation.completed} left undone after "
                     f"{compensation.attempts} attempts, last: {compensation.last_error.type}: "
                     f"{compensation.last_error.message}")
        status = status.model_copy(update={"compensation": compensation, "next_attempt_at": None})
        return self.transition(status, compensation.end_phase, compensation.reason,
                               f"{compensation.message}; {done}")

    def backing_off(self, status: resources.TaskRunStatus, due: datetime, reason: str,
                    message: str) -> resources.TaskRunStatus:
        # Sub-second precision is kept: rounding would break "never sooner than half the delay".
        status = status.model_copy(update={"next_attempt_at": due})
        return self.transition(status, Phase.BACKING_OFF, reason, message)

    def infrastructure_failure(self, status: resources.TaskRunStatus, task: resources.Task,
                               reason: str, message: str) -> resources.TaskRunStatus:
        failures = status.infrastructure_failures + 1
        if reason == reasons.OOM_KILLED:
            status, message = self.after_oom_kill(status, task, message)
        status = status.model_copy(update={
            "infrastructure_failures": failures,
            "last_error": resources.RunError(type=reason, message=message, retryable=True)})
        if failures > task.spec.infrastructure_retries:
            return self.transition(
                status, Phase.FAILED, reasons.INFRASTRUCTURE_FAILED,
                f"{failures} attempts ended without an outcome; last: {reason}: {message}")
        policy = INFRASTRUCTURE_RETRY.model_copy(
            update={"min_timeout": self.settings.infrastructure_retry_delay})
        due = self.now + timedelta(seconds=retry.backoff_delay(policy, failures, self.rng))
        return self.backing_off(status, due, reason,
                                f"{message}; resuming from the last checkpoint at {_display(due)}")

    def after_oom_kill(self, status: resources.TaskRunStatus, task: resources.Task,
                       message: str) -> tuple[resources.TaskRunStatus, str]:
        """Counts the OOM kill; with the Task's outOfMemory.resources, the next attempts
        get larger resources, which the status and the message name."""
        kills = status.oom_kills + 1
        larger = task.spec.out_of_memory.resources if task.spec.out_of_memory else []
        if not larger:
            return status.model_copy(update={"oom_kills": kills}), message
        worker = pods.attempt_resources(task, kills)
        index = min(kills, len(larger)) - 1
        return (status.model_copy(update={"oom_kills": kills, "resources": worker}),
                f"{message}; the next attempts get outOfMemory.resources[{index}] "
                f"({_describe_resources(worker)})")

    def timed_out(self, status: resources.TaskRunStatus, task: resources.Task,
                  message: str) -> resources.TaskRunStatus:
        status = status.model_copy(update={"last_error": resources.RunError(
            type=reasons.TIMED_OUT, message=message, retryable=True)})
        policy = effective_policy(self.run, task, None)
        used = user_attempts(status)
        if retry.has_attempts_left(policy, used):
            due = self.now + timedelta(seconds=retry.backoff_delay(policy, used, self.rng))
            return self.backing_off(status, due, reasons.TIMED_OUT,
                                    f"{message}; resuming from the last checkpoint at {_display(due)}")
        return self.transition(status, Phase.TIMED_OUT, reasons.TIMED_OUT, message)

    def canceled(self, status: resources.TaskRunStatus) -> resources.TaskRunStatus:
        return self.transition(status, Phase.CANCELED, reasons.CANCELED, "canceled by spec.cancel")

    def first_attempt_due(self) -> datetime | None:
        """When `spec.delay` and `spec.debounce.delay` (the longer) let the first attempt
        start (None: at once)."""
        created, spec = self.seen.created_at, self.run.spec
        delays = [durations.parse_duration(value) for value in
                  (spec.delay, spec.debounce.delay if spec.debounce else None) if value]
        if self.run.status.attempt or not delays or created is None:
            return None
        return created + timedelta(seconds=max(delays))


def _describe_resources(worker: dict[str, Any] | None) -> str:
    """"limits memory=1Gi, requests memory=512Mi" for a container's resources."""
    parts = []
    for part in ("limits", "requests"):
        values = (worker or {}).get(part)
        if isinstance(values, dict) and values:
            parts.append(f"{part} " + ", ".join(f"{name}={value}" for name, value in values.items()))
    return "; ".join(parts) or "no resources"


def user_attempts(status: resources.TaskRunStatus) -> int:
    """Attempts that count against maxAttempts: infrastructure failures and attempts
    that ended by suspending (a wait) do not."""
    return int(status.attempt - status.infrastructure_failures - status.resumes)


# Why Kubernetes deleted a pod (the reason of its DisruptionTarget condition), as ours.
_DISRUPTIONS = {
    "DeletionByTaintManager": reasons.NODE_LOST,  # NoExecute: not ready or unreachable
    "DeletionByPodGC": reasons.NODE_LOST,  # its node object is gone
    "EvictionByEvictionAPI": reasons.POD_EVICTED,  # a drain, or a disruption budget's eviction
    "TerminationByKubelet": reasons.POD_EVICTED,  # node pressure, or graceful node shutdown
    "PreemptionByScheduler": reasons.POD_PREEMPTED,
}


def disruption(pod: dict[str, Any]) -> tuple[str, str] | None:
    """Our reason and Kubernetes' message when Kubernetes took the pod away (its
    DisruptionTarget condition), else None."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            reason = _DISRUPTIONS.get(str(condition.get("reason")), reasons.POD_EVICTED)
            return reason, str(condition.get("message") or condition.get("reason") or "")
    return None


def node_loss(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(NodeLost, message) for a pod being deleted because its node is lost, while its
    node no longer reports it ready; None otherwise. Such a pod stays Terminating until
    the node comes back. A pod evicted from a live node (a drain, a NoExecute taint an
    administrator added) is still ready: its worker gets its grace period to finish."""
    if not pod["metadata"].get("deletionTimestamp"):
        return None
    found = disruption(pod)
    if found is None or found[0] != reasons.NODE_LOST:
        return None
    conditions = (pod.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return None
    node = (pod.get("spec") or {}).get("nodeName") or "its node"
    return reasons.NODE_LOST, (f"node {node} of pod {pod['metadata']['name']} is lost "
                               f"({found[1] or 'not ready'})")


def why_pod_ended(pod: dict[str, Any]) -> tuple[str, str]:
    """The infrastructure reason a pod ended without its worker recording an outcome."""
    status = pod.get("status") or {}
    name = pod["metadata"]["name"]
    lost = node_loss(pod)
    if lost is not None:
        return lost
    if status.get("reason") == "DeadlineExceeded":
        return reasons.DEADLINE_EXCEEDED, f"attempt pod {name} ran past its timeout"
    if status.get("reason") == "Evicted":
        return reasons.POD_EVICTED, f"pod {name} was evicted: {status.get('message', '')}"
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return reasons.OOM_KILLED, f"pod {name} exceeded its memory limit"
    # Killed because Kubernetes took the pod away, not because the worker crashed.
    disrupted = disruption(pod)
    if disrupted is not None:
        return disrupted[0], f"pod {name} was taken away: {disrupted[1]}"
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated:
            detail = (terminated.get("message") or "").strip()[-500:]
            return reasons.WORKER_CRASHED, (
                f"worker in pod {name} exited with code {terminated.get('exitCode')} "
                f"without recording an outcome{': ' + detail if detail else ''}")
    return reasons.WORKER_CRASHED, f"pod {name} ended without an outcome"


def preview(output: Any) -> dict[str, Any] | None:
    """A small preview of the output for the CR (objects only; etcd stays small)."""
    text = json.dumps(output, default=str)
    if len(text) <= PREVIEW_BYTES:
        return output if isinstance(output, dict) else {"value": output}
    return {"truncated": True, "bytes": len(text), "head": text[:PREVIEW_BYTES // 2]}


def _with_consequences(seen: observing.Observation, before: resources.TaskRunStatus,
                       decision: Decision, settings: settings_module.Settings) -> Decision:
    """Adds what every change of phase implies: the Postgres mirror (with the run's
    retention when it finished), the slot given back when the run no longer runs, and a
    child's result for its parent."""
    after = decision.status
    if after.phase == before.phase or after.run_id is None or after.phase is None:
        return decision
    todo = list(decision.actions)
    if after.phase == Phase.BACKING_OFF and before.pod_name and \
            retaining.finished_pod_seconds(settings) is not None and \
            not any(isinstance(action, actions.DeletePod) for action in todo):
        # The attempt's outcome is read and another attempt follows: its pod goes now.
        todo.append(actions.DeletePod(seen.body["metadata"]["namespace"], before.pod_name))
    if after.phase in resources.FINAL_PHASES or after.phase == Phase.BACKING_OFF:
        if not any(isinstance(action, actions.ReleaseSlot) for action in todo):
            todo.append(actions.ReleaseSlot(after.run_id, seen.queue))
    if after.phase in resources.FINAL_PHASES:
        todo.append(actions.MirrorPhase(after.run_id, str(after.phase),
                                        retention_of(seen, settings)))
    elif after.phase != Phase.PENDING:  # registration wrote Pending
        todo.append(actions.MirrorPhase(after.run_id, str(after.phase)))
    if after.phase in resources.FINAL_PHASES and seen.is_child:
        todo.append(actions.ReportChildEnd(seen.body, after))
    return Decision(after, tuple(todo), decision.requeue_after)


def retention_of(seen: observing.Observation, settings: settings_module.Settings) -> actions.Retention:
    """How long the finished run's TaskRun and history are kept (see `retaining`)."""
    assert seen.run is not None
    meta = seen.run.metadata
    pod_seconds = retaining.finished_pod_seconds(settings)
    pod_name = seen.run.status.pod_name if pod_seconds is not None else None
    return actions.Retention(namespace=meta.namespace or "", name=meta.name,
                             ttl_seconds=retaining.ttl_after_finished(seen.run, seen.task, settings),
                             history_seconds=retaining.history_retention(seen.task, settings),
                             pod_name=pod_name, pod_seconds=pod_seconds if pod_name else None)


def _queued(status: resources.TaskRunStatus, queue: str, place: tuple[int, int],
            generation: int | None, now: datetime) -> resources.TaskRunStatus:
    status = status.model_copy(update={"queue_position": place[0]})
    if status.phase == Phase.COMPENSATING:
        # A compensating run waits in line in its own phase.
        return conditions.transition(status, Phase.COMPENSATING, reasons.COMPENSATING,
                                     f"compensations waiting for a slot in queue {queue} "
                                     f"({place[0]} of {place[1]} waiting)", generation, now)
    return conditions.transition(status, Phase.QUEUED, reasons.QUEUED,
                                 f"waiting for a slot in queue {queue} ({place[0]} of {place[1]} waiting)",
                                 generation, now)


def _with_progress(status: resources.TaskRunStatus,
                   seen: observing.Observation) -> resources.TaskRunStatus:
    if seen.progress is None:
        return status
    update: dict[str, Any] = {"completed_steps": seen.progress.completed}
    if seen.progress.metadata is not None:
        update["metadata"] = seen.progress.metadata
    if seen.progress.last_name is not None:
        update["current_step"] = seen.progress.last_name
    return status.model_copy(update=update)


def conditions_only(body: dict[str, Any]) -> resources.TaskRunStatus:
    """What can be kept of an unparseable TaskRun's status: its conditions, if they parse."""
    status = body.get("status")
    try:
        return resources.TaskRunStatus.model_validate(
            {"conditions": status.get("conditions") or []} if isinstance(status, dict) else {})
    except pydantic.ValidationError:
        return resources.TaskRunStatus()


def _display(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()

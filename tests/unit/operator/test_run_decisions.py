"""The reconciler's decision table: every transition, budget and reason, without a cluster.

Each case is an observation written as inline YAML (the TaskRun's status and spec,
the Task's spec, the attempt's pod, its outcome, the run's place in line) and the
decision expected from `deciding.decide` at a fixed time with a seeded jitter.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from durakube import resources, retry
from durakube.store import attempts, queues, steps
from durakube_operator import actions, children, deciding, observing, reasons, validating
from durakube_operator import settings as settings_module

NOW = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
CREATED = "2026-03-01T11:59:00Z"
SETTINGS = settings_module.Settings(database_url="postgresql://db/durakube", resync_seconds=30.0)

RUNNING = """
phase: Running
runId: uid-1
attempt: 1
podName: report-1
startTime: "2026-03-01T11:59:01Z"
conditions:
- {type: Succeeded, status: Unknown, reason: Running, lastTransitionTime: "2026-03-01T11:59:02Z"}
"""


def status(text: str, **changes: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(text) or {}
    return {**loaded, **changes}


def pod(phase: str = "Running", name: str = "report-1", **status_fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team"},
            "status": {"phase": phase, **status_fields}}


def ended(name: str = "report-1", exit_code: int = 137, reason: str = "Error",
          message: str = "") -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": reason, "message": message}
    return pod("Failed", name, containerStatuses=[{"name": "task", "state": {"terminated": terminated}}])


def disrupted(reason: str, ready: str = "False", phase: str = "Running",
              **fields: Any) -> dict[str, Any]:
    """An attempt pod Kubernetes is taking away: DisruptionTarget, deletionTimestamp."""
    taken = pod(phase, conditions=[
        {"type": "Ready", "status": ready},
        {"type": "DisruptionTarget", "status": "True", "reason": reason,
         "message": "Taint manager: deleting due to NoExecute taint"}], **fields)
    taken["metadata"]["deletionTimestamp"] = "2026-03-01T11:59:50Z"
    taken["spec"] = {"nodeName": "node-b"}
    return taken


def outcome(kind: attempts.OutcomeKind, **fields: Any) -> attempts.Outcome:
    return attempts.Outcome(kind, **fields)


IN_LINE = queues.Place(holds_slot=False, in_line=(2, 5))
NOT_IN_LINE = queues.Place(holds_slot=False)
ADMITTED = queues.Place(holds_slot=True)
PROGRESS = steps.Progress(completed=2, last_name="embed")


@dataclass(frozen=True)
class Case:
    id: str
    status: dict[str, Any] = field(default_factory=dict)
    spec: str = ""
    task_spec: str | None = ""  # None: the Task does not exist
    labels: dict[str, str] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)
    settings: settings_module.Settings = SETTINGS
    # Expected.
    phase: str | None = None
    reason: str | None = None
    actions: tuple[str, ...] = ()
    requeue: float | None = None
    check: Callable[[resources.TaskRunStatus, deciding.Decision], None] | None = None


def observation(case: Case) -> observing.Observation:
    body = {
        "apiVersion": resources.API_VERSION, "kind": "TaskRun",
        "metadata": {"name": "report", "namespace": "team", "uid": "uid-1", "generation": 1,
                     "creationTimestamp": CREATED, "labels": case.labels},
        "spec": {"taskRef": {"name": "work"}, "payload": {"n": 1}, **(yaml.safe_load(case.spec) or {})},
        "status": case.status,
    }
    run = resources.TaskRun.model_validate(body)
    task = None
    if case.task_spec is not None:
        task = resources.Task.model_validate({
            "metadata": {"name": "work", "namespace": "team"},
            "spec": {"image": "tasks:1", "entrypoint": "work", **(yaml.safe_load(case.task_spec) or {})}})
    defaults: dict[str, Any] = {"payload": run.spec.payload, "task": task}
    if task is not None and (run.status.attempt == 0 or run.status.phase in observing.WAITING_PHASES):
        defaults["place"] = NOT_IN_LINE
    return observing.Observation(body=body, run=run, queue="team/default", **{**defaults, **case.seen})


def after_backoff(seconds: float) -> Callable[[resources.TaskRunStatus, deciding.Decision], None]:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        assert after.next_attempt_at == NOW + timedelta(seconds=seconds)
    return check


def backoff_between(low: float, high: float) -> Callable[[resources.TaskRunStatus, deciding.Decision], None]:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        assert after.next_attempt_at is not None
        delay = (after.next_attempt_at - NOW).total_seconds()
        assert low <= delay <= high, delay
    return check


def sub_second(after: resources.TaskRunStatus) -> None:
    # Rounding to the second would allow a retry sooner than half the nominal delay.
    assert after.next_attempt_at is not None and after.next_attempt_at.microsecond != 0


def fields(**expected: Any) -> Callable[[resources.TaskRunStatus, deciding.Decision], None]:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        got = after.model_dump(by_alias=False)
        for name, value in expected.items():
            assert got[name] == value, (name, got[name])
    return check


def message_has(text: str) -> Callable[[resources.TaskRunStatus, deciding.Decision], None]:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        condition = after.conditions[-1]
        assert text in condition.message, condition.message
    return check


def warned(reason: str, *texts: str) -> Callable[[resources.TaskRunStatus, deciding.Decision], None]:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        warning = next(a for a in decision.actions if isinstance(a, actions.Warn))
        assert warning.reason == reason
        assert all(text in warning.message for text in texts), warning.message
        # The run joins the queue it will really use.
        enqueue = next(a for a in decision.actions if isinstance(a, actions.Enqueue))
        assert enqueue.queue == "team/default"
    return check


def started(attempt: int, due_since: datetime | None) -> Callable[[resources.TaskRunStatus,
                                                                   deciding.Decision], None]:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        start = next(a for a in decision.actions if isinstance(a, actions.StartAttempt))
        assert (start.attempt, start.due_since) == (attempt, due_since)
        assert start.pod["metadata"]["name"] == f"report-{attempt}" == after.pod_name
        assert after.attempt == attempt and after.next_attempt_at is None
        assert after.waiting_for is None and after.queue_position is None
    return check


# Memory after OOM kills: 512Mi, then 2Gi; the template's CPU limit and request stay.
LARGER_AFTER_OOM = """
podTemplate: {resources: {limits: {memory: 128Mi, cpu: "1"}, requests: {memory: 64Mi}}}
outOfMemory: {resources: [{limits: {memory: 512Mi}}, {limits: {memory: 2Gi}}]}
"""


def worker_resources_are(expected: dict[str, Any]) -> Callable[[resources.TaskRunStatus,
                                                                 deciding.Decision], None]:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        start = next(a for a in decision.actions if isinstance(a, actions.StartAttempt))
        assert start.pod["spec"]["containers"][0]["resources"] == expected
    return check


def registered_debounce(decision: deciding.Decision, task: str, key: str) -> None:
    register = next(a for a in decision.actions if isinstance(a, actions.RegisterRun))
    assert register.debounce is not None
    assert (register.debounce.task, register.debounce.key) == (task, key)
    assert register.debounce.created_at == CREATED_AT


CREATED_AT = datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
BACKING_OFF = status(RUNNING, phase="BackingOff", nextAttemptAt="2026-03-01T11:59:30Z",
                     lastError={"type": "ValueError", "message": "boom", "retryable": True})
SUSPENDED = status(RUNNING, phase="Suspended", resumes=1, podName="report-1",
                   waitingFor={"kind": "sleep", "step": 3})
QUEUED = status("""
phase: Queued
runId: uid-1
queuePosition: 2
conditions:
- {type: Succeeded, status: Unknown, reason: Queued, lastTransitionTime: "2026-03-01T11:59:02Z",
   message: "waiting for a slot in queue team/default (2 of 5 waiting)", observedGeneration: 1}
""", observedGeneration=1, startTime="2026-03-01T11:59:01Z")
PENDING = {"phase": "Pending", "runId": "uid-1"}
RETRY_30S = "retry: {maxAttempts: 3, minTimeout: 30s, maxTimeout: 30s, randomize: false}"
DECORATOR_10S = retry.Retry(max_attempts=5, min_timeout=10.0, max_timeout=10.0, randomize=False)

CASES = [
    # First pass: registration, then a place in line or a pod.
    Case("new-run-registers-and-joins-the-line", phase="Pending", reason="Pending",
         actions=("RegisterRun", "Enqueue"),
         check=fields(run_id="uid-1", start_time=NOW.replace(microsecond=0))),
    Case("new-run-already-admitted-starts-attempt-1", seen={"place": ADMITTED}, phase="Running",
         reason="Running", actions=("RegisterRun", "StartAttempt", "MirrorPhase"),
         check=started(1, CREATED_AT)),
    Case("a-queue-no-taskqueue-defines-warns-and-uses-the-default", seen={"undefined_queue": "big"},
         phase="Pending", actions=("RegisterRun", "Warn", "Enqueue"),
         check=warned("QueueNotDefined", "no TaskQueue 'big'", "default queue team/default")),
    Case("new-run-in-line-shows-its-place", seen={"place": IN_LINE}, phase="Queued", reason="Queued",
         actions=("RegisterRun", "MirrorPhase"),
         check=fields(queue_position=2)),
    Case("queued-run-with-the-same-place-changes-nothing", status=QUEUED, seen={"place": IN_LINE},
         phase="Queued", check=message_has("(2 of 5 waiting)")),
    Case("delay-not-over-waits-without-a-slot", spec="delay: 5m", phase="Pending",
         actions=("RegisterRun",), requeue=(CREATED_AT + timedelta(minutes=5) - NOW).total_seconds()),
    Case("delay-over-joins-the-line", spec="delay: 30s", phase="Pending",
         actions=("RegisterRun", "Enqueue")),
    Case("debounced-run-registers-its-key-and-waits-its-delay",
         spec="debounce: {key: user-7, delay: 5m}", phase="Pending", actions=("RegisterRun",),
         requeue=(CREATED_AT + timedelta(minutes=5) - NOW).total_seconds(),
         check=lambda after, decision: registered_debounce(decision, "work", "user-7")),
    Case("debounce-and-delay-wait-the-longer", spec="{delay: 30s, debounce: {key: k, delay: 2m}}",
         phase="Pending", actions=("RegisterRun",),
         requeue=(CREATED_AT + timedelta(minutes=2) - NOW).total_seconds()),
    Case("debounced-run-with-a-newer-one-of-its-key-ends-debounced", status=PENDING,
         spec="debounce: {key: user-7, delay: 30s}", seen={"superseded_by": "report-newer"},
         phase="Canceled", reason="Debounced", actions=("ReleaseSlot", "MirrorPhase"),
         check=message_has("run report-newer came with the same debounce key 'user-7' within 30s")),
    Case("debounced-run-without-a-newer-one-starts", status=PENDING,
         spec="debounce: {key: user-7, delay: 30s}", seen={"place": ADMITTED}, phase="Running",
         actions=("StartAttempt", "MirrorPhase")),
    Case("ttl-passed-while-queued-expires", status=QUEUED, spec="ttl: 1m", seen={"place": IN_LINE},
         phase="Expired", reason="Expired", actions=("ReleaseSlot", "MirrorPhase"),
         check=fields(completion_time=NOW.replace(microsecond=0))),
    Case("ttl-not-passed-looks-again-when-it-would", status=QUEUED, spec="ttl: 90s",
         seen={"place": IN_LINE}, phase="Queued",
         requeue=(CREATED_AT + timedelta(seconds=90) - NOW).total_seconds()),
    Case("ttl-ignored-once-an-attempt-ran", status=BACKING_OFF | {"nextAttemptAt": None},
         spec="ttl: 1s", phase="BackingOff", actions=("Enqueue",)),
    # References and validation.
    Case("missing-task-fails", task_spec=None, phase="Failed", reason="TaskNotFound",
         actions=("ReleaseSlot", "MirrorPhase"), check=message_has("'work' does not exist")),
    Case("missing-task-and-cancel-is-canceled", task_spec=None, spec="cancel: true",
         phase="Canceled", reason="Canceled", actions=("ReleaseSlot", "MirrorPhase")),
    Case("invalid-payload-fails-before-any-pod", seen={
        # As observed: a run with a problem is not looked at further, its Task included.
        "task": None, "problem": validating.Problem(reasons.INVALID_PAYLOAD, "payload does not match")},
         phase="Failed", reason="InvalidPayload", actions=("ReleaseSlot", "MirrorPhase")),
    Case("missing-stored-payload-fails", seen={"payload_missing": True},
         spec="payloadRef: sha256:" + "0" * 64, phase="Failed", reason="Invalid",
         actions=("ReleaseSlot", "MirrorPhase"), check=message_has("names no stored payload")),
    Case("finished-run-only-records-its-retention", status=status(RUNNING, phase="Succeeded"),
         phase="Succeeded", actions=("RecordRetention",)),
    # Cancellation.
    Case("cancel-deletes-the-running-pod-first", status=status(RUNNING), spec="cancel: true",
         seen={"pod": pod()}, phase="Running", actions=("DeletePod",), requeue=1.0),
    Case("cancel-waits-for-a-pod-being-deleted", status=status(RUNNING), spec="cancel: true",
         seen={"pod": pod() | {"metadata": {"name": "report-1", "deletionTimestamp": "x"}}},
         phase="Running", requeue=1.0),
    Case("cancel-after-the-pod-ended", status=status(RUNNING), spec="cancel: true",
         seen={"pod": pod("Failed")}, phase="Canceled", reason="Canceled",
         actions=("ReleaseSlot", "MirrorPhase")),
    Case("cancel-while-queued", status=QUEUED, spec="cancel: true", phase="Canceled",
         actions=("ReleaseSlot", "MirrorPhase")),
    Case("canceled-child-reports-to-its-parent", status=QUEUED, spec="cancel: true",
         labels={children.LABEL_PARENT_UID: "parent-uid"}, phase="Canceled",
         actions=("ReleaseSlot", "MirrorPhase", "ReportChildEnd")),
    # A running attempt.
    Case("running-pod-shows-progress", status=status(RUNNING),
         seen={"pod": pod(), "progress": PROGRESS}, phase="Running", requeue=30.0,
         check=fields(completed_steps=2, current_step="embed")),
    Case("success-keeps-an-output-preview", status=status(RUNNING),
         seen={"pod": pod("Succeeded"), "outcome": outcome("succeeded", output={"pages": 3})},
         phase="Succeeded", reason="Succeeded", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=fields(output={"pages": 3}, last_error=None)),
    Case("large-output-is-truncated-in-the-status", status=status(RUNNING),
         seen={"pod": pod("Succeeded"), "outcome": outcome("succeeded", output="x" * 5000)},
         phase="Succeeded", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=fields(output={"truncated": True, "bytes": 5002, "head": '"' + "x" * 511})),
    Case("scalar-output-is-wrapped", status=status(RUNNING),
         seen={"pod": pod("Succeeded"), "outcome": outcome("succeeded", output=7)},
         phase="Succeeded", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=fields(output={"value": 7})),
    Case("succeeded-child-reports-to-its-parent", status=status(RUNNING),
         labels={children.LABEL_PARENT_UID: "parent-uid"},
         seen={"pod": pod("Succeeded"), "outcome": outcome("succeeded", output={})},
         phase="Succeeded", actions=("ReleaseSlot", "MirrorPhase", "ReportChildEnd"), requeue=0.0),
    Case("permanent-error-fails-with-its-code", status=status(RUNNING),
         seen={"pod": pod("Failed"), "outcome": outcome("failed", error={
             "type": "NonDeterministicReplay", "code": "NonDeterministicReplay", "message": "m"})},
         phase="Failed", reason="NonDeterministicReplay", actions=("ReleaseSlot", "MirrorPhase"),
         requeue=0.0),
    Case("permanent-user-error-fails", status=status(RUNNING),
         seen={"pod": pod("Failed"), "outcome": outcome("failed", error={
             "type": "KeyError", "code": "not a reason", "message": "'x'"})},
         phase="Failed", reason="Failed", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=message_has("KeyError: 'x'")),
    # Retries: the policy's source and the budget.
    Case("retryable-error-backs-off-by-the-default-policy", status=status(RUNNING),
         seen={"pod": pod("Failed"), "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="BackingOff", reason="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=backoff_between(0.5, 1.0)),
    Case("retry-at-asked-for-by-the-task-wins", status=status(RUNNING),
         seen={"pod": pod("Failed"), "outcome": outcome(
             "retry", error={"type": "E", "message": "m"}, retry_at=NOW + timedelta(hours=2))},
         task_spec=RETRY_30S, phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=after_backoff(7200)),
    Case("task-retry-policy-sets-the-delay", status=status(RUNNING), task_spec=RETRY_30S,
         seen={"pod": pod("Failed"), "outcome": outcome(
             "retry", error={"type": "E", "message": "m"}, policy=DECORATOR_10S)},
         phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0, check=after_backoff(30)),
    Case("taskrun-retry-policy-overrides-the-task", status=status(RUNNING), task_spec=RETRY_30S,
         spec="retry: {minTimeout: 2s, maxTimeout: 2s, randomize: false}",
         seen={"pod": pod("Failed"), "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0, check=after_backoff(2)),
    Case("decorator-policy-applies-without-a-spec", status=status(RUNNING),
         seen={"pod": pod("Failed"), "outcome": outcome(
             "retry", error={"type": "E", "message": "m"}, policy=DECORATOR_10S)},
         phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0, check=after_backoff(10)),
    Case("decorator-budget-applies-without-a-spec", status=status(RUNNING, attempt=4, podName="report-4"),
         seen={"pod": pod("Failed", "report-4"), "outcome": outcome(
             "retry", error={"type": "E", "message": "m"}, policy=DECORATOR_10S)},
         phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0, check=after_backoff(10)),
    Case("retries-exhausted-fails", status=status(RUNNING, attempt=3, podName="report-3"),
         seen={"pod": pod("Failed", "report-3"),
               "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="Failed", reason="RetriesExhausted", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=message_has("3 attempts failed; last: E: m")),
    Case("infrastructure-failures-do-not-use-the-budget",
         status=status(RUNNING, attempt=3, podName="report-3", infrastructureFailures=1),
         seen={"pod": pod("Failed", "report-3"),
               "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=backoff_between(1.0, 2.0)),
    Case("suspensions-do-not-use-the-budget",
         status=status(RUNNING, attempt=3, podName="report-3", resumes=2),
         seen={"pod": pod("Failed", "report-3"),
               "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=backoff_between(0.5, 1.0)),
    Case("sub-second-back-off-keeps-its-precision", status=status(RUNNING),
         task_spec="retry: {minTimeout: 1s, maxTimeout: 1s, randomize: true}",
         seen={"pod": pod("Failed"), "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=lambda after, _: (backoff_between(0.5, 1.0)(after, _), sub_second(after))),
    Case("inconsistent-task-policy-fails-the-run", status=status(RUNNING),
         task_spec="retry: {minTimeout: 2m, maxTimeout: 1m}",
         seen={"pod": pod("Failed"), "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="Failed", reason="Invalid", actions=("ReleaseSlot", "MirrorPhase"),
         check=message_has("retry policy is invalid")),
    # Suspension.
    Case("suspending-attempt-gives-up-its-pod", status=status(RUNNING, resumes=0),
         seen={"pod": pod("Succeeded"), "outcome": outcome(
             "suspended", output={"kind": "sleep", "step": 3, "until": "2026-03-02T00:00:00Z"})},
         phase="Suspended", reason="Suspended", actions=("ReleaseSlot", "DeletePod", "MirrorPhase"),
         requeue=0.0, check=lambda after, _: (fields(resumes=1)(after, _),
                                              message_has("until 2026-03-02")(after, _))),
    Case("suspended-run-waits-without-a-timer", status=SUSPENDED, phase="Suspended", requeue=None),
    Case("suspended-run-whose-wait-ended-joins-the-line", status=SUSPENDED,
         seen={"wait_over": True}, phase="Suspended", actions=("Enqueue",)),
    Case("resumed-run-with-a-slot-starts-the-next-attempt", status=SUSPENDED,
         seen={"wait_over": True, "place": ADMITTED}, phase="Running",
         actions=("StartAttempt", "MirrorPhase"), check=started(2, None)),
    # Pods that end without an outcome: infrastructure, with its own budget.
    Case("pod-gone-without-outcome-resumes", status=status(RUNNING), seen={"pod": None},
         phase="BackingOff", reason="PodDeleted", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=lambda after, _: (fields(infrastructure_failures=1)(after, _),
                                 backoff_between(0.5, 1.0)(after, _))),
    Case("without-an-infrastructure-delay-the-next-attempt-is-due-at-once", status=status(RUNNING),
         seen={"pod": ended(exit_code=137, message="Killed")}, phase="BackingOff",
         reason="WorkerCrashed", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         settings=SETTINGS.model_copy(update={"infrastructure_retry_delay": 0.0}),
         check=backoff_between(0.0, 0.0)),
    Case("pod-gone-after-recording-success-succeeds", status=status(RUNNING),
         seen={"pod": None, "outcome": outcome("succeeded", output={"ok": True})},
         phase="Succeeded", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0),
    Case("deadline-exceeded-retries-from-the-checkpoint", status=status(RUNNING),
         seen={"pod": pod("Failed", reason="DeadlineExceeded")}, phase="BackingOff", reason="TimedOut",
         actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         check=lambda after, _: fields(infrastructure_failures=0)(after, _)),
    Case("deadline-exceeded-on-the-last-attempt-times-out",
         status=status(RUNNING, attempt=3, podName="report-3"),
         seen={"pod": pod("Failed", "report-3", reason="DeadlineExceeded")}, phase="TimedOut",
         reason="TimedOut", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0),
    Case("evicted-pod-resumes", status=status(RUNNING),
         seen={"pod": pod("Failed", reason="Evicted", message="node pressure")}, phase="BackingOff",
         reason="PodEvicted", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         check=message_has("node pressure")),
    Case("oom-killed-pod-resumes", status=status(RUNNING), seen={"pod": ended(reason="OOMKilled")},
         phase="BackingOff", reason="OOMKilled", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"),
         requeue=0.0),
    Case("oom-killed-pod-resumes-with-the-tasks-next-larger-resources", status=status(RUNNING),
         seen={"pod": ended(reason="OOMKilled")}, task_spec=LARGER_AFTER_OOM,
         phase="BackingOff", reason="OOMKilled", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"),
         requeue=0.0, check=lambda after, _: (
             fields(oom_kills=1, infrastructure_failures=1, resources={
                 "limits": {"memory": "512Mi", "cpu": "1"}, "requests": {"memory": "64Mi"}})(after, _),
             message_has("the next attempts get outOfMemory.resources[0] (limits memory=512Mi, "
                         "cpu=1; requests memory=64Mi)")(after, _))),
    Case("oom-killed-past-the-last-larger-resources-keeps-the-last", task_spec=LARGER_AFTER_OOM,
         status=status(RUNNING, oomKills=2, resources={"limits": {"memory": "2Gi", "cpu": "1"}}),
         seen={"pod": ended(reason="OOMKilled")}, phase="BackingOff", reason="OOMKilled",
         actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         check=lambda after, _: (
             fields(oom_kills=3, resources={
                 "limits": {"memory": "2Gi", "cpu": "1"}, "requests": {"memory": "64Mi"}})(after, _),
             message_has("outOfMemory.resources[1]")(after, _))),
    Case("oom-killed-without-larger-resources-only-counts", status=status(RUNNING),
         seen={"pod": ended(reason="OOMKilled")}, phase="BackingOff", reason="OOMKilled",
         actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         check=fields(oom_kills=1, resources=None)),
    Case("crashed-worker-resumes", status=status(RUNNING),
         seen={"pod": ended(exit_code=137, message="Killed")}, phase="BackingOff",
         reason="WorkerCrashed", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         check=message_has("exited with code 137 without recording an outcome: Killed")),
    Case("pod-on-a-lost-node-resumes-without-waiting-for-it",
         status=status(RUNNING), seen={"pod": disrupted("DeletionByTaintManager")},
         phase="BackingOff", reason="NodeLost", actions=("ReleaseSlot", "MirrorPhase"),
         requeue=0.0, check=lambda after, _: (
             fields(infrastructure_failures=1)(after, _),
             message_has("node node-b of pod report-1 is lost (Taint manager")(after, _))),
    Case("pod-tainted-off-a-live-node-gets-its-grace-period",
         status=status(RUNNING), seen={"pod": disrupted("DeletionByTaintManager", ready="True")},
         phase="Running", requeue=30.0),
    Case("pod-being-drained-gets-its-grace-period",
         status=status(RUNNING), seen={"pod": disrupted("EvictionByEvictionAPI")},
         phase="Running", requeue=30.0),
    Case("drained-pod-killed-is-evicted-not-crashed",
         status=status(RUNNING), seen={"pod": disrupted(
             "EvictionByEvictionAPI", phase="Failed", containerStatuses=[
                 {"name": "task", "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}])},
         phase="BackingOff", reason="PodEvicted", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"),
         requeue=0.0),
    Case("preempted-pod-says-so",
         status=status(RUNNING), seen={"pod": disrupted("PreemptionByScheduler", phase="Failed")},
         phase="BackingOff", reason="PodPreempted", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"),
         requeue=0.0),
    Case("pod-of-a-lost-node-back-reports-node-lost", status=status(RUNNING),
         seen={"pod": disrupted("DeletionByTaintManager", phase="Failed", containerStatuses=[
             {"name": "task", "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}])},
         phase="BackingOff", reason="NodeLost", actions=("ReleaseSlot", "MirrorPhase"),
         requeue=0.0),
    Case("infrastructure-budget-exhausted-fails",
         status=status(RUNNING, infrastructureFailures=2), task_spec="infrastructureRetries: 2",
         seen={"pod": ended()}, phase="Failed", reason="InfrastructureFailed",
         actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         check=message_has("3 attempts ended")),
    # Backing off, then the next attempt.
    Case("back-off-not-over-waits", status=BACKING_OFF | {"nextAttemptAt": "2026-03-01T12:00:10Z"},
         phase="BackingOff", requeue=9.75),
    Case("back-off-over-joins-the-line", status=BACKING_OFF, phase="BackingOff",
         actions=("Enqueue",)),
    Case("back-off-over-with-a-slot-starts-the-next-attempt", status=BACKING_OFF,
         seen={"place": ADMITTED}, phase="Running", actions=("StartAttempt", "MirrorPhase"),
         check=started(2, datetime(2026, 3, 1, 11, 59, 30, tzinfo=UTC))),
    Case("the-attempt-after-an-oom-kill-runs-with-larger-resources", task_spec=LARGER_AFTER_OOM,
         status=BACKING_OFF | {"oomKills": 1, "resources": {"limits": {"memory": "512Mi", "cpu": "1"}}},
         seen={"place": ADMITTED}, phase="Running", actions=("StartAttempt", "MirrorPhase"),
         check=lambda after, decision: worker_resources_are(
             {"limits": {"memory": "512Mi", "cpu": "1"}, "requests": {"memory": "64Mi"}})(after, decision)),
    Case("pending-run-admitted-later-starts", status=PENDING | {"startTime": "2026-03-01T11:59:01Z"},
         seen={"place": ADMITTED}, phase="Running",
         actions=("StartAttempt", "MirrorPhase")),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_decision(case: Case) -> None:
    decision = deciding.decide(observation(case), NOW, case.settings, random.Random(7))
    after = decision.status
    assert (str(after.phase) if after.phase else None) == case.phase
    if case.reason is not None:
        assert after.conditions[-1].reason == case.reason
    assert tuple(type(action).__name__ for action in decision.actions) == case.actions
    assert decision.requeue_after == pytest.approx(case.requeue) if case.requeue is not None \
        else decision.requeue_after is None
    if case.check is not None:
        case.check(after, decision)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_deciding_twice_gives_the_same_decision(case: Case) -> None:
    seen = observation(case)
    first = deciding.decide(seen, NOW, case.settings, random.Random(7))
    assert deciding.decide(seen, NOW, case.settings, random.Random(7)) == first


def test_an_unparseable_taskrun_fails_with_its_conditions_kept() -> None:
    body = {"metadata": {"name": "r", "namespace": "team", "generation": 2},
            "status": {"conditions": "not a list"}}
    seen = observing.Observation(body=body, run=None, invalid="invalid TaskRun: spec missing")
    decision = deciding.decide(seen, NOW, SETTINGS)
    assert decision.status.phase == resources.Phase.FAILED
    assert decision.status.conditions[-1].reason == "Invalid"
    assert decision.status.conditions[-1].observed_generation == 2
    assert decision.actions == ()


def test_a_run_that_joined_its_line_shows_its_place() -> None:
    seen = observation(Case("x"))
    decision = deciding.decide(seen, NOW, SETTINGS)
    placed = deciding.after_joining(seen, decision, IN_LINE, NOW, SETTINGS)
    assert placed.status.phase == resources.Phase.QUEUED and placed.status.queue_position == 2
    assert placed.requeue_after is None  # the admission loop brings it back
    assert placed.actions == (actions.MirrorPhase("uid-1", "Queued"),)


def test_a_run_admitted_as_it_joined_starts_in_the_same_pass() -> None:
    seen = observation(Case("x"))
    decision = deciding.decide(seen, NOW, SETTINGS)
    started = deciding.after_joining(seen, decision, ADMITTED, NOW, SETTINGS)
    assert started.status.phase == resources.Phase.RUNNING and started.status.attempt == 1
    # Registered and enqueued already: only what starting the attempt takes.
    assert [type(a).__name__ for a in started.actions] == ["StartAttempt", "MirrorPhase"]
    assert started.status.run_id == "uid-1" and started.status.start_time is not None


def test_a_run_admitted_and_let_go_at_once_is_looked_at_again() -> None:
    seen = observation(Case("x"))
    decision = deciding.decide(seen, NOW, SETTINGS)
    again = deciding.after_joining(seen, decision, NOT_IN_LINE, NOW, SETTINGS)
    assert again.status == decision.status and again.actions == () and again.requeue_after == 0.0


def test_conditions_move_only_when_their_status_changes() -> None:
    seen = observation(Case("x", status=status(RUNNING), seen={"pod": pod(), "progress": PROGRESS}))
    later = NOW + timedelta(minutes=5)
    decision = deciding.decide(seen, later, SETTINGS)
    assert decision.status.conditions[-1].last_transition_time == datetime(2026, 3, 1, 11, 59, 2, tzinfo=UTC)


def test_a_refused_pod_fails_the_run_and_gives_its_slot_back() -> None:
    seen = observation(Case("admitted", seen={"place": ADMITTED}))
    decided = deciding.decide(seen, NOW, SETTINGS, random.Random(7))
    assert decided.status.phase == "Running"
    decision = deciding.pod_refused(seen, decided.status, "violates PodSecurity \"restricted\"",
                                    NOW, SETTINGS)
    assert decision.status.phase == "Failed" and decision.status.pod_name is None
    assert decision.status.conditions[-1].reason == "PodRefused"
    assert "violates PodSecurity" in decision.status.conditions[-1].message
    assert [type(action).__name__ for action in decision.actions] == ["ReleaseSlot", "MirrorPhase"]

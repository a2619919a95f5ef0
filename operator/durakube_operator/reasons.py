"""Reasons: the CamelCase words that status conditions, Events and metrics share.

One module, so a reason reads the same in `kubectl get`, `kubectl describe` and
Grafana. Pure constants.
"""

from __future__ import annotations

from typing import Final

# Succeeded=Unknown while the run is active.
PENDING: Final = "Pending"
QUEUED: Final = "Queued"
RUNNING: Final = "Running"
BACKING_OFF: Final = "BackingOff"
SUSPENDED: Final = "Suspended"
COMPENSATING: Final = "Compensating"  # failed for good; its compensations run
COMPENSATION_BACKING_OFF: Final = "CompensationBackingOff"  # a compensation failed; retried

# Succeeded=True.
SUCCEEDED: Final = "Succeeded"

# Succeeded=False.
FAILED: Final = "Failed"  # the task raised a permanent error
RETRIES_EXHAUSTED: Final = "RetriesExhausted"  # retryable errors used up maxAttempts
INFRASTRUCTURE_FAILED: Final = "InfrastructureFailed"  # pods kept dying without an outcome
TIMED_OUT: Final = "TimedOut"  # the last attempt ran past its timeout
CANCELED: Final = "Canceled"
DEBOUNCED: Final = "Debounced"  # a newer run with the same debounce key came within its delay
EXPIRED: Final = "Expired"  # still queued when its ttl ran out
INVALID: Final = "Invalid"  # the TaskRun cannot run as written
TASK_NOT_FOUND: Final = "TaskNotFound"
INVALID_PAYLOAD: Final = "InvalidPayload"
POD_REFUSED: Final = "PodRefused"  # the namespace's Pod Security level or an admission policy
# A permanent failure of the SDK's own (NonDeterministicReplay, NonSerializableState,
# ...) takes the error's code as its reason: the code is already CamelCase.

# Why an attempt ended without the worker recording an outcome (infrastructure).
POD_DELETED: Final = "PodDeleted"
POD_EVICTED: Final = "PodEvicted"
NODE_LOST: Final = "NodeLost"  # its node stopped reporting (not ready, unreachable or gone)
POD_PREEMPTED: Final = "PodPreempted"  # the scheduler made room for a pod of higher priority
OOM_KILLED: Final = "OOMKilled"
DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
WORKER_CRASHED: Final = "WorkerCrashed"

# Warnings that do not stop a run.
QUEUE_NOT_DEFINED: Final = "QueueNotDefined"  # it waits in the namespace's default queue
PIN_NOT_FOUND: Final = "PinNotFound"  # a replay's run has no snapshot to keep: the current Task runs
TASK_DELETED: Final = "TaskDeleted"  # a pinned run goes on from its snapshot without its Task

# A TaskSchedule's Ready condition (True: Scheduled; False: Paused or InvalidSchedule)
# and its Events.
SCHEDULED: Final = "Scheduled"
PAUSED: Final = "Paused"
INVALID_SCHEDULE: Final = "InvalidSchedule"  # a bad cron expression, time zone or interval
RUN_CREATED: Final = "RunCreated"
RUN_SKIPPED: Final = "RunSkipped"  # a run of the schedule was still active (overlapPolicy)
RUN_QUEUED: Final = "RunQueued"  # overlapPolicy QueueOne: it runs when the active run ends
RUNS_MISSED: Final = "RunsMissed"  # older than the catch-up window after a downtime
RUN_REFUSED: Final = "RunRefused"  # the API server refused the TaskRun as written

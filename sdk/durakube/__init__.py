"""Durakube: durable Python tasks on Kubernetes.

What task code imports: the `task` and `step` decorators, the `TaskContext` a task
receives, the `Retry` policy, and the errors a task may raise or catch. The worker
runtime (`durakube.worker`), the Postgres store (`durakube.store`) and the custom
resource models are imported by their own module names.
"""

from durakube.context import TaskContext
from durakube.durations import parse_duration
from durakube.errors import (
    AttemptTimedOut,
    DurakubeError,
    InvalidDuration,
    InvalidPayload,
    NonDeterministicReplay,
    NonSerializableState,
    PermanentError,
    RetryableError,
    RunNotFound,
    StepFailed,
    TaskNotFound,
)
from durakube.retry import Retry
from durakube.tasks import Registry, TaskDefinition, step, task
from durakube.triggering import ChildRunFailed
from durakube.waiting import WaitTimedOut

__all__ = [
    "AttemptTimedOut",
    "ChildRunFailed",
    "DurakubeError",
    "InvalidDuration",
    "InvalidPayload",
    "NonDeterministicReplay",
    "NonSerializableState",
    "PermanentError",
    "Registry",
    "Retry",
    "RetryableError",
    "RunNotFound",
    "StepFailed",
    "TaskContext",
    "TaskDefinition",
    "TaskNotFound",
    "WaitTimedOut",
    "parse_duration",
    "step",
    "task",
]

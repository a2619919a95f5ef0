"""Durakube: durable Python tasks on Kubernetes.

What task code imports: the `task` and `step` decorators, the `TaskContext` an
`async def` task receives (a `def` task gets a `SyncTaskContext`), the `Retry`
policy, and the errors a task may raise or catch. The worker runtime
(`durakube.worker`), the Postgres store (`durakube.store`) and the custom
resource models are imported by their own module names.

`TaskContext`, `WaitTimedOut` and `ChildRunFailed` belong to the step engine
(`context`, `waiting`, `triggering`) and load on first use: every
`import durakube.client` runs this module first, and a process that only
triggers runs must not load the engine that executes them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from durakube.blocking import SyncTaskContext
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
    ValueRefused,
)
from durakube.retry import Retry
from durakube.tasks import Registry, TaskDefinition, step, task

if TYPE_CHECKING:
    from durakube.context import TaskContext
    from durakube.triggering import ChildRunFailed
    from durakube.waiting import WaitTimedOut

_STEP_ENGINE = {
    "TaskContext": "durakube.context",
    "ChildRunFailed": "durakube.triggering",
    "WaitTimedOut": "durakube.waiting",
}

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
    "SyncTaskContext",
    "TaskContext",
    "TaskDefinition",
    "TaskNotFound",
    "ValueRefused",
    "WaitTimedOut",
    "parse_duration",
    "step",
    "task",
]


def __getattr__(name: str) -> Any:
    module = _STEP_ENGINE.get(name)
    if module is None:
        raise AttributeError(f"module 'durakube' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_STEP_ENGINE})

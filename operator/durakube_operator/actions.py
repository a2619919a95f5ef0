"""The actions a decision about a run asks for, as plain data.

`deciding` returns them; `acting` performs them in the order given, before the
run's status is published. Each names everything its performer needs, so
performing one reads nothing else, and each is idempotent.

Pure data: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from durakube import resources


@dataclass(frozen=True, kw_only=True)
class _OfRun:
    """An action about one run: who it is and which queue it uses."""

    run_id: str
    namespace: str
    name: str
    queue: str


@dataclass(frozen=True, kw_only=True)
class RegisterRun(_OfRun):
    """Records the run and its payload in Postgres, with a fork's copied steps (idempotent)."""

    task_id: str
    payload: Any
    # A fork: the run whose steps before `from_step` are copied with the registration.
    fork: Fork | None = None
    # spec.debounce: recorded with the registration.
    debounce: DebounceEntry | None = None
    # The TaskRun's tags (its durakube.io/tag-* labels), for the history.
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DebounceEntry:
    """A run with spec.debounce, as its registration orders it among the runs of its key:
    the Task's name, the key, and when and at which resourceVersion its TaskRun was made."""

    task: str
    key: str
    created_at: datetime
    created_version: int | None


@dataclass(frozen=True)
class Fork:
    """Where a forked run starts: the steps of `source_run_id` before `from_step`."""

    source_run_id: str
    from_step: int


@dataclass(frozen=True, kw_only=True)
class Enqueue(_OfRun):
    """Puts the run in its queue's line for a slot (idempotent)."""

    concurrency_key: str | None
    priority: int
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class StartAttempt(_OfRun):
    """Records the attempt with a key of its namespace's key ring as its credential, then
    creates its pod (adopting one that exists)."""

    attempt: int
    pod: dict[str, Any]
    # When the attempt became due (created, delay or back-off over); None for resumes.
    due_since: datetime | None


@dataclass(frozen=True)
class Warn:
    """Records a Warning Event on the TaskRun: something the user should fix that does not
    stop the run."""

    body: dict[str, Any]
    reason: str
    message: str


@dataclass(frozen=True)
class ReleaseSlot:
    """Gives back the run's slot, takes it out of line and revokes its attempts'
    database credentials: its pod has ended, or the run is over (idempotent)."""

    run_id: str
    queue: str


@dataclass(frozen=True)
class DeletePod:
    """Deletes a pod with its grace period (a pod already gone is no error)."""

    namespace: str
    name: str


@dataclass(frozen=True)
class SaveLogTail:
    """Stores the end of an attempt pod's own log with the attempt's stored log: the pod
    ended without an outcome (crashed, OOM-killed, past its deadline), so its worker may
    not have stored its last output (idempotent: the tail is set, not appended)."""

    run_id: str
    attempt: int
    namespace: str
    pod: str


@dataclass(frozen=True)
class Retention:
    """How long a finished run's TaskRun and history are kept (None: for ever)."""

    namespace: str
    name: str
    ttl_seconds: int | None
    history_seconds: float | None
    # The last attempt's pod, and how long it is kept (None: until the TaskRun goes).
    pod_name: str | None = None
    pod_seconds: int | None = None


@dataclass(frozen=True)
class MirrorPhase:
    """Mirrors the phase in Postgres: history outlives the TaskRun; queues count by it. A
    final phase carries its `retention`, recorded with it (the first record stands)."""

    run_id: str
    phase: str
    retention: Retention | None = None


@dataclass(frozen=True)
class RecordRetention:
    """Records the retention of a run that finished before the operator recorded any (an
    install from before retention existed); a run's first record stands."""

    run_id: str
    retention: Retention
    finished_at: datetime | None


@dataclass(frozen=True)
class ReportChildEnd:
    """Sends a finished child run's result to the parent waiting on it."""

    body: dict[str, Any]
    status: resources.TaskRunStatus


Action = (RegisterRun | Warn | Enqueue | ReleaseSlot | StartAttempt | DeletePod | MirrorPhase
          | RecordRetention | ReportChildEnd | SaveLogTail)

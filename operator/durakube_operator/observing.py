"""Observing one TaskRun: everything a decision about it needs, read into one value.

The first of the reconciler's four stages (observe -> decide -> act -> publish).
Reads the TaskRun, its Task (as the run pinned it once its first attempt started,
`pinning`) and the attempt's pod (by its deterministic name), as the watches
delivered them (`caching`), then from Postgres the run's place in its
queue, the attempt's outcome (with its steps' durations, for the metrics), the
steps recorded so far and whether a wait is over, each only when the run's status
says it can matter.

Reads only: no write to Kubernetes or Postgres happens here, so observing twice
changes nothing. What it reads is a snapshot; `deciding` turns it into a status.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic

from durakube import resources
from durakube.store import attempts, compensations, payloads, pools, queues, runs, steps, waitpoints
from durakube_operator import caching, children, pinning, validating


@dataclass(frozen=True)
class Observation:
    """What was seen of one TaskRun and what it depends on, at one moment."""

    body: dict[str, Any]
    # The parsed TaskRun; None when the object cannot be parsed (see `invalid`).
    run: resources.TaskRun | None
    invalid: str | None = None
    # The run's queue as "<namespace>/<name>", resolved from the run, its Task or the default.
    queue: str = ""
    # The queue the run or its Task names when no TaskQueue defines it: the run waits in
    # the namespace's default queue instead (a name alone never mints slots).
    undefined_queue: str | None = None
    task: resources.Task | None = None
    # Why the run cannot run as written (checked until its first attempt starts).
    problem: validating.Problem | None = None
    # The payload to register on the first pass (inline or stored); `payload_missing`
    # when spec.payloadRef names nothing stored.
    payload: Any = None
    payload_missing: bool = False
    pod: dict[str, Any] | None = None
    # Read while the run may start an attempt: its slot and place in line.
    place: queues.Place | None = None
    # Read once the attempt's pod has ended or gone: what the worker recorded (None: nothing).
    outcome: attempts.Outcome | None = None
    progress: steps.Progress | None = None
    # Read with the outcome: how long each step of the attempt ran, in seconds (for metrics).
    step_durations: tuple[float, ...] = ()
    # Read while suspended: whether the wait it suspended on has ended.
    wait_over: bool = False
    # Read before the first attempt of a replay that keeps its run's code: that run's
    # snapshot (None: none to keep, the current Task is pinned).
    pin_source: resources.PinnedTask | None = None
    # Whether the run's Task is gone (a pinned run goes on from its snapshot).
    task_deleted: bool = False
    # A fork that cannot be made (registration only): why.
    fork_problem: str | None = None
    # Read before the first attempt of a run with spec.debounce: the newest run registered
    # after it with the same Task and key (None: none, it may start).
    superseded_by: str | None = None
    # Read with the outcome of an attempt that did not succeed, and of every attempt in
    # compensation mode: the run's recorded compensations at a glance.
    compensation_summary: compensations.Summary = compensations.NONE

    @property
    def created_at(self) -> datetime | None:
        return self.run.metadata.creation_timestamp if self.run is not None else None

    @property
    def is_child(self) -> bool:
        return children.LABEL_PARENT_UID in ((self.body.get("metadata") or {}).get("labels") or {})


async def observe(api: caching.CachedReads, db: pools.Database, default_queue: str,
                  namespace: str, name: str) -> Observation | None:
    """The observation of TaskRun `namespace/name`; None when it is gone or being deleted.

    Objects come from what the watches delivered (`caching`), from the API on a miss."""
    body = await api.get_taskrun(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        run = resources.TaskRun.model_validate(body)
    except pydantic.ValidationError as error:
        # The CRD schema refuses most of this; what remains (say, a status an older
        # version wrote) must still end the run with a message, not a crash loop.
        return Observation(body=body, run=None, invalid=f"invalid TaskRun: {error}",
                           queue=f"{namespace}/{default_queue}")
    status = run.status
    # The queue until the Task is known: the run's own, else the default.
    unresolved = f"{namespace}/{run.spec.queue or default_queue}"
    if status.phase in resources.FINAL_PHASES:
        # Its Task only for the retention it may set (see `retaining`).
        return Observation(body=body, run=run, queue=unresolved,
                           task=_parsed_task(await api.get_task(namespace, run.spec.task_ref.name)))

    task_body = await api.get_task(namespace, run.spec.task_ref.name)
    # A run that started keeps its snapshot of the Task (`pinning`), with or without it.
    if task_body is None and status.pinned is None:
        return Observation(body=body, run=run, queue=unresolved)
    # The inputs are fixed once the first attempt started: check them until then.
    if status.attempt == 0 and task_body is not None:
        problem = await validating.check_run(run, task_body)
        if problem is not None:
            return Observation(body=body, run=run, problem=problem, queue=unresolved)
    current = resources.Task.model_validate(task_body) if task_body is not None else None
    task = pinning.pinned_task(run, current)
    named = run.spec.queue or task.spec.queue or default_queue
    undefined = None
    if named != default_queue and await api.get_taskqueue(namespace, named) is None:
        undefined, named = named, default_queue
    seen = Observation(body=body, run=run, queue=f"{namespace}/{named}", task=task,
                       undefined_queue=undefined, task_deleted=task_body is None)
    assert run.metadata.uid is not None

    if status.phase is None:
        # The first pass registers the run with its payload (and a fork's steps).
        payload: Any = run.spec.payload
        if run.spec.payload_ref is not None:
            payload = await payloads.get_payload(db, run.spec.payload_ref)
            if payload is None:
                return dataclasses.replace(seen, payload_missing=True)
        seen = dataclasses.replace(seen, payload=payload,
                                   fork_problem=await pinning.fork_problem(db, run))
    if status.pinned is None and status.attempt == 0:
        seen = dataclasses.replace(seen, pin_source=await pinning.read_pin_source(api, run))

    # Only a running attempt has a pod worth reading (a cancel may have to stop it).
    pod = None
    if status.pod_name and (status.phase == resources.Phase.RUNNING or run.spec.cancel
                            or compensation_running(status)):
        pod = await api.get_pod(namespace, status.pod_name)
    seen = dataclasses.replace(seen, pod=pod)
    if run.spec.cancel:
        return seen
    if status.phase == resources.Phase.SUSPENDED:
        seen = dataclasses.replace(seen, wait_over=await _wait_is_over(db, run.metadata.uid, status))
        if not seen.wait_over:
            return seen
    if status.attempt == 0 or status.phase in WAITING_PHASES or compensation_waiting(status):
        if status.attempt == 0 and run.spec.debounce is not None and status.phase is not None:
            seen = dataclasses.replace(
                seen, superseded_by=await runs.newer_debounced_run(db, run.metadata.uid))
        if status.phase is None:
            # Not registered yet, so neither in line nor holding a slot: what joining the
            # line finds (`acting`) is its place, even after a pass cut short that had
            # registered it (joining is idempotent, and a run holding a slot never joins).
            return dataclasses.replace(seen, place=queues.Place(holds_slot=False))
        return dataclasses.replace(seen, place=await queues.place(db, run.metadata.uid))
    # An attempt is under way or has ended. A pod not started yet (waiting for a node or
    # its image) has no worker that could have made progress: nothing to read.
    if pod is None or pod_finished(pod) or (pod.get("status") or {}).get("phase") != "Pending":
        seen = dataclasses.replace(seen, progress=await steps.summarize_steps(db, run.metadata.uid))
    if pod is None or pod_finished(pod):
        outcome = await attempts.read_outcome(db, run.metadata.uid, status.attempt)
        durations = await steps.attempt_step_durations(db, run.metadata.uid, status.attempt)
        seen = dataclasses.replace(seen, outcome=outcome, step_durations=tuple(durations))
        # Whether the run has compensations to run matters only when it may fail now.
        if outcome is None or outcome.kind not in ("succeeded", "suspended") or \
                status.phase == resources.Phase.COMPENSATING:
            seen = dataclasses.replace(
                seen, compensation_summary=await compensations.summarize_compensations(
                    db, run.metadata.uid))
    return seen


def compensation_waiting(status: resources.TaskRunStatus) -> bool:
    """Compensating, with no attempt under way: waiting for its back-off or a slot."""
    return (status.phase == resources.Phase.COMPENSATING and status.compensation is not None
            and status.compensation.state == resources.CompensationState.WAITING)


def compensation_running(status: resources.TaskRunStatus) -> bool:
    """Compensating, with an attempt in compensation mode under way."""
    return (status.phase == resources.Phase.COMPENSATING and status.compensation is not None
            and status.compensation.state == resources.CompensationState.RUNNING)


# Phases in which a run has no attempt under way and may start the next one.
WAITING_PHASES = frozenset({resources.Phase.BACKING_OFF, resources.Phase.QUEUED,
                            resources.Phase.SUSPENDED})


def _parsed_task(body: dict[str, Any] | None) -> resources.Task | None:
    if body is None:
        return None
    try:
        return resources.Task.model_validate(body)
    except pydantic.ValidationError:
        return None


def pod_finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


async def _wait_is_over(db: pools.Database, run_id: str, status: resources.TaskRunStatus) -> bool:
    step = (status.waiting_for or {}).get("step")
    if not isinstance(step, int):
        return True  # nothing recorded to wait for: resume rather than hang
    waitpoint = await waitpoints.load_waitpoint(db, run_id, step)
    return waitpoint is None or waitpoint.completed_at is not None

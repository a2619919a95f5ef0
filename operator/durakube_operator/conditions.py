"""The `Succeeded` condition and the phase that goes with it.

Kubernetes API conventions: a condition's `lastTransitionTime` moves only when
its status changes; `reason` is a CamelCase word from `reasons`; the phase is a
summary for people and printer columns. Pure functions over the status model: the
caller passes the time, so a decision can be replayed with any clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from durakube import resources

SUCCEEDED = "Succeeded"

_PHASE_STATUS = {
    resources.Phase.SUCCEEDED: resources.ConditionStatus.TRUE,
    resources.Phase.FAILED: resources.ConditionStatus.FALSE,
    resources.Phase.CANCELED: resources.ConditionStatus.FALSE,
    resources.Phase.TIMED_OUT: resources.ConditionStatus.FALSE,
    resources.Phase.EXPIRED: resources.ConditionStatus.FALSE,
}


def now() -> datetime:
    """The wall clock, the reconciler's default: conditions show whole seconds, decisions
    keep their precision."""
    return datetime.now(UTC)


def succeeded(status: resources.TaskRunStatus) -> resources.Condition | None:
    return next((c for c in status.conditions if c.type == SUCCEEDED), None)


def transition(status: resources.TaskRunStatus, phase: resources.Phase, reason: str,
               message: str, generation: int | None, now: datetime) -> resources.TaskRunStatus:
    """A copy of `status` in `phase`, with the Succeeded condition to match."""
    stamp = now.replace(microsecond=0)
    condition_status = _PHASE_STATUS.get(phase, resources.ConditionStatus.UNKNOWN)
    previous = succeeded(status)
    moved = previous is None or previous.status != condition_status
    condition = resources.Condition(
        type=SUCCEEDED,
        status=condition_status,
        reason=reason,
        message=message[:2000],
        last_transition_time=stamp if moved or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    others = [c for c in status.conditions if c.type != SUCCEEDED]
    update: dict[str, object] = {"phase": phase, "conditions": [*others, condition],
                                 "observed_generation": generation}
    if phase in resources.FINAL_PHASES and status.completion_time is None:
        update["completion_time"] = stamp
    return status.model_copy(update=update)


def changed(before: resources.TaskRunStatus, after: resources.TaskRunStatus) -> bool:
    """Whether the phase or the Succeeded condition's reason differs: worth an Event."""
    old, new = succeeded(before), succeeded(after)
    return (before.phase != after.phase
            or (old.reason if old else None) != (new.reason if new else None))

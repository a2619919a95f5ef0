"""Progress of a running attempt, read from Postgres into the TaskRun's status.

`currentStep` and `completedSteps` come from the steps the worker has recorded;
the operator never learns them from the pod. Called by the reconciler; reads only.
"""

from __future__ import annotations

from typing import Any

from durakube import resources
from durakube.store import pools, steps


async def observe(db: pools.Database, status: resources.TaskRunStatus, run_id: str,
                  pod: dict[str, Any] | None) -> resources.TaskRunStatus:
    """`status` with currentStep and completedSteps as recorded so far."""
    summary = await steps.summarize_steps(db, run_id)
    update: dict[str, Any] = {"completed_steps": summary.completed}
    if summary.last_name is not None:
        update["current_step"] = summary.last_name
    return status.model_copy(update=update)

"""Validation of a TaskRun against its Task, beyond what the CRD schema can say.

The CRD's OpenAPI schema refuses malformed objects at `kubectl apply`; what needs
another object (the Task) or Python's parsers is checked here, before any pod is
created: the Task itself, the payload's size and shape (`durakube.limits`) and the
payload against the Task's input schema, retry and timeout overrides. A problem
becomes phase Failed with a reason and a message; it never raises, so an invalid
run cannot crash-loop the operator.

Pure functions, and `check_run`, which runs them (in a thread when there is a
schema to check a payload against).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pydantic

from durakube import durations, errors, limits, resources, schemas
from durakube_operator import reasons


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


async def check_run(run: resources.TaskRun, task_body: dict[str, Any]) -> Problem | None:
    """`validate_run`, off the event loop when the Task has an input schema: checking a
    payload against one may take a while, and every namespace's runs share the loop. The
    other checks take microseconds, less than handing them to a thread."""
    if (task_body.get("spec") or {}).get("inputSchema"):
        return await asyncio.to_thread(validate_run, run, task_body)
    return validate_run(run, task_body)


def validate_run(run: resources.TaskRun, task_body: dict[str, Any]) -> Problem | None:
    """The first problem that keeps `run` from running, or None."""
    try:
        task = resources.Task.model_validate(task_body)
    except pydantic.ValidationError as error:
        return Problem(reasons.INVALID, f"Task {run.spec.task_ref.name!r} is invalid: {error}")
    for where, policy in (("Task", task.spec.retry), ("TaskRun", run.spec.retry)):
        if policy is None:
            continue
        try:
            policy.to_policy()
        except (pydantic.ValidationError, errors.InvalidDuration) as error:
            return Problem(reasons.INVALID, f"{where} retry policy is invalid: {_first(error)}")
    for where, text in (("Task timeout", task.spec.timeout), ("TaskRun timeout", run.spec.timeout),
                        ("delay", run.spec.delay), ("ttl", run.spec.ttl)):
        if text is None:
            continue
        try:
            if durations.parse_duration(text) <= 0:
                return Problem(reasons.INVALID, f"{where} must be longer than zero, got {text!r}")
        except errors.InvalidDuration as error:
            return Problem(reasons.INVALID, f"{where} is invalid: {error}")
    if run.spec.payload_ref is None:
        refused = limits.problem(run.spec.payload)
        if refused is not None:
            return Problem(reasons.INVALID_PAYLOAD, f"the payload {refused}")
    if task.spec.input_schema and run.spec.payload_ref is None:
        # Inline payloads only (at most the inline limit), checked with a linear-time
        # regex engine.
        try:
            shown = schemas.check_payload_sync(run.spec.payload, task.spec.input_schema)
        except schemas.InvalidSchema as error:
            return Problem(reasons.INVALID, f"Task {run.spec.task_ref.name!r} is invalid: {error}")
        if shown is not None:
            return Problem(reasons.INVALID_PAYLOAD,
                           f"payload does not match the input of task {task.spec.entrypoint!r}: {shown}")
    return None


def _first(error: Exception) -> str:
    if isinstance(error, pydantic.ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(error)

"""Retry policies and the backoff between attempts.

A `Retry` is declared on a task (`@task(retry=Retry(...))`); a Task's or a
TaskRun's `spec.retry` overrides it (the TaskRun's first), and the operator hands
that one to the worker. The worker uses the policy to classify an attempt's error
(retried or permanent); the operator computes the back-off and owns the attempt
budget (`max_attempts`, with infrastructure failures counted apart), so nothing
here decides that a run is finished.

Pure functions over a pydantic model: no I/O, no clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from durakube import durations, errors


class Retry(BaseModel):
    """How often and how soon a failed run is tried again.

    `on` lists exception types (names, "ConnectionError" or qualified
    "httpx.ConnectError", or the classes themselves) whose raising retries the run;
    any other uncaught exception is permanent, except `errors.RetryableError`,
    which is always retried.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=3, ge=1)
    factor: float = Field(default=2.0, ge=1.0)
    min_timeout: float = Field(default=1.0, ge=0.0, description="seconds, or a duration string")
    max_timeout: float = Field(default=60.0, ge=0.0, description="seconds, or a duration string")
    randomize: bool = True
    on: tuple[str, ...] = ()

    @field_validator("min_timeout", "max_timeout", mode="before")
    @classmethod
    def _parse_durations(cls, value: Any) -> Any:
        if isinstance(value, str):
            return durations.parse_duration(value)
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _name_exception_types(cls, value: Any) -> Any:
        if isinstance(value, str | type):
            value = [value]
        if isinstance(value, Iterable):
            return tuple(
                errors.qualified_name(item)
                if isinstance(item, type) and issubclass(item, BaseException) else item
                for item in value
            )
        return value

    @model_validator(mode="after")
    def _check_timeouts_ordered(self) -> Retry:
        if self.min_timeout > self.max_timeout:
            raise ValueError(
                f"min_timeout ({self.min_timeout:g}s) must not exceed "
                f"max_timeout ({self.max_timeout:g}s)"
            )
        return self


def backoff_delay(policy: Retry, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    delay = min(max_timeout, min_timeout * factor ** (attempt - 1)); with
    `randomize`, the delay is drawn uniformly from [delay / 2, delay] ("equal
    jitter": runs that failed together spread out, yet never retry sooner than half
    the nominal delay nor later than it).
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    try:
        nominal = policy.min_timeout * policy.factor ** (attempt - 1)
    except OverflowError:
        nominal = policy.max_timeout
    delay = min(policy.max_timeout, nominal)
    if policy.randomize:
        delay = (rng or random).uniform(delay / 2, delay)
    return delay


def is_retryable(policy: Retry, error: BaseException) -> bool:
    """Whether `error` asks for another attempt under `policy`.

    Durakube's own errors decide for themselves (`retry.on` cannot make a
    `NonDeterministicReplay` or a `PermanentError` retried); `retry.on` applies to
    user exceptions, including those a `StepFailed` carries.
    """
    if isinstance(error, errors.StepFailed):
        return error.step_retryable or _names_match(policy.on, [error.type])
    if isinstance(error, errors.DurakubeError):
        return error.retryable
    names = [errors.qualified_name(kind) for kind in type(error).__mro__
             if issubclass(kind, BaseException)]
    return _names_match(policy.on, names)


def has_attempts_left(policy: Retry, attempt: int) -> bool:
    """Whether attempt number `attempt` may be followed by another one."""
    return attempt < policy.max_attempts


def _names_match(wanted: Iterable[str], qualified: Iterable[str]) -> bool:
    # "ConnectError" matches "httpx.ConnectError": a bare name matches any module.
    candidates = set()
    for name in qualified:
        candidates.add(name)
        candidates.add(name.rsplit(".", 1)[-1])
    return any(name in candidates for name in wanted)

"""The retry policy: validation, the backoff formula, jitter bounds, retry_at, classification."""

from __future__ import annotations

import random

import pydantic
import pytest

from durakube import errors, retry


@pytest.mark.parametrize(
    ("policy", "attempt", "expected"),
    [
        (retry.Retry(randomize=False), 1, 1.0),
        (retry.Retry(randomize=False), 2, 2.0),
        (retry.Retry(randomize=False), 3, 4.0),
        (retry.Retry(randomize=False), 7, 60.0),
        (retry.Retry(randomize=False, factor=1.0, min_timeout=5), 9, 5.0),
        (retry.Retry(randomize=False, factor=3, min_timeout="2s", max_timeout="1m"), 3, 18.0),
        (retry.Retry(randomize=False, min_timeout="10m", max_timeout="1h"), 4, 3600.0),
        (retry.Retry(randomize=False, max_timeout=30), 10_000, 30.0),
    ],
    ids=["first", "second", "third", "capped", "constant", "factor-3", "durations", "overflow"],
)
def test_backoff_follows_the_formula(policy: retry.Retry, attempt: int, expected: float) -> None:
    assert retry.backoff_delay(policy, attempt) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10])
def test_jitter_stays_between_half_and_the_full_delay(attempt: int) -> None:
    policy = retry.Retry(randomize=True)
    nominal = retry.backoff_delay(policy.model_copy(update={"randomize": False}), attempt)
    rng = random.Random(attempt)
    delays = [retry.backoff_delay(policy, attempt, rng) for _ in range(500)]
    assert all(nominal / 2 <= delay <= nominal for delay in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_attempts": 0}, "greater than or equal to 1"),
        ({"factor": 0.5}, "greater than or equal to 1"),
        ({"min_timeout": 10, "max_timeout": 5}, "must not exceed max_timeout"),
        ({"min_timeout": "soon"}, "invalid duration 'soon'"),
        ({"attempts": 3}, "Extra inputs are not permitted"),
    ],
    ids=["no-attempts", "shrinking-factor", "min-over-max", "bad-duration", "unknown-field"],
)
def test_invalid_policies_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        retry.Retry.model_validate(fields)


class FlakyNetwork(ConnectionError):
    pass


@pytest.mark.parametrize(
    ("on", "error", "retryable"),
    [
        ((), errors.RetryableError("later"), True),
        ((), errors.AttemptTimedOut(10), True),
        ((), ValueError("bad"), False),
        ((), errors.PermanentError("no"), False),
        (("ValueError",), ValueError("bad"), True),
        (("ConnectionError",), FlakyNetwork(), True),
        ((FlakyNetwork,), FlakyNetwork(), True),
        (("test_backoff_delays.FlakyNetwork",), FlakyNetwork(), True),
        (("KeyError",), ValueError(), False),
        (("ValueError",), errors.StepFailed("fetch", 1, "ValueError", "bad"), True),
        (("TimeoutError",), errors.StepFailed("fetch", 1, "httpx.ConnectError", "x"), False),
    ],
    ids=["retryable-error", "timeout", "plain", "permanent", "listed", "listed-base",
         "listed-class", "qualified", "other", "step-failed-listed", "step-failed-other"],
)
def test_errors_are_classified_by_the_policy(on: tuple[object, ...], error: Exception,
                                             retryable: bool) -> None:
    policy = retry.Retry.model_validate({"on": on})
    assert retry.is_retryable(policy, error) is retryable


def test_attempt_budget() -> None:
    policy = retry.Retry(max_attempts=3)
    assert [retry.has_attempts_left(policy, n) for n in (1, 2, 3)] == [True, True, False]

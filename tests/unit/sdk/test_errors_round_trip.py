"""Errors are data: every Durakube error and any user exception round-trips through JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from durakube import errors

ERRORS = [
    errors.DurakubeError("something"),
    errors.RetryableError("rate limited"),
    errors.RetryableError("rate limited", retry_at=datetime(2030, 5, 1, 12, tzinfo=UTC)),
    errors.PermanentError("card declined"),
    errors.NonDeterministicReplay(3, "embed", "store"),
    errors.NonSerializableState("step 2 'fetch' result", "datetime.datetime", "['at']"),
    errors.TaskNotFound("embed", ["a", "b"]),
    errors.RunNotFound("run-1"),
    errors.InvalidPayload("embed", "1 validation error"),
    errors.InvalidDuration("soon"),
    errors.AttemptTimedOut(600),
    errors.StepFailed("charge", 2, "stripe.CardError", "declined", retryable=True),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: error.code)
def test_durakube_errors_round_trip_through_json(error: errors.DurakubeError) -> None:
    data = json.loads(json.dumps(error.to_json()))
    rebuilt = errors.DurakubeError.from_json(data)
    assert type(rebuilt) is type(error)
    assert rebuilt == error
    assert rebuilt.fields == error.fields
    assert str(rebuilt) == str(error)
    assert rebuilt.to_json() == error.to_json()
    assert errors.rebuild_exception(data) == error


def test_non_deterministic_replay_names_both_steps() -> None:
    error = errors.NonDeterministicReplay(3, "embed", "store")
    assert str(error).startswith(
        "step 3 was 'embed' when recorded but is 'store' now: "
        "task code must take the same path on replay")
    assert error.code == "NonDeterministicReplay"
    assert error.to_json()["retryable"] is False


def test_retry_at_survives_the_round_trip() -> None:
    at = datetime(2030, 5, 1, 12, tzinfo=UTC)
    rebuilt = errors.DurakubeError.from_json(errors.RetryableError("later", at).to_json())
    assert isinstance(rebuilt, errors.RetryableError)
    assert rebuilt.retry_at == at


class LedgerError(Exception):
    pass


def test_user_exceptions_are_described_and_rebuilt_as_step_failed() -> None:
    try:
        raise LedgerError("balance would go negative")
    except LedgerError as caught:
        data = errors.describe_exception(caught, retryable=False)
    assert data["type"] == "test_errors_round_trip.LedgerError"
    assert data["message"] == "balance would go negative"
    assert data["retryable"] is False
    assert "raise LedgerError" in data["traceback"]
    assert len(data["traceback"]) <= errors.TRACEBACK_TAIL_CHARS
    rebuilt = errors.rebuild_exception(json.loads(json.dumps(data)))
    assert isinstance(rebuilt, errors.StepFailed)
    assert (rebuilt.type, rebuilt.message) == (data["type"], data["message"])
    assert rebuilt.traceback == data["traceback"]


@pytest.mark.parametrize(("error", "type_name"), [
    (ValueError("x"), "ValueError"),
    (KeyError("k"), "KeyError"),
    (LedgerError(), "test_errors_round_trip.LedgerError"),
    (errors.StepFailed("s", 1, "httpx.ConnectError", "refused"), "httpx.ConnectError"),
    (errors.PermanentError("no"), "durakube.errors.PermanentError"),
])
def test_described_type_is_the_type_the_user_sees(error: Exception, type_name: str) -> None:
    data = errors.describe_exception(error)
    assert data["type"] == type_name
    assert data["message"]

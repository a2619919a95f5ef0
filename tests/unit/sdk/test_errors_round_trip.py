"""Errors are data: every Durakube error and any user exception round-trips through JSON."""

from __future__ import annotations

import importlib
import inspect
import json
import pickle
import pkgutil
import types
import typing
from datetime import UTC, datetime
from typing import Any

import pytest

import durakube
from durakube import errors, waiting

# Every module that may define an error registers it on import.
for _module in pkgutil.walk_packages(durakube.__path__, "durakube."):
    importlib.import_module(_module.name)

SAMPLES: dict[Any, Any] = {
    int: 3,
    float: 2.5,
    bool: True,
    datetime: datetime(2030, 5, 1, 12, tzinfo=UTC),
    list[str]: ["b", "a"],
}


def sample(name: str, annotation: Any) -> Any:
    """A value for a parameter; strings name their parameter, so swapped fields show."""
    if annotation is str:
        return f"{name}-value"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        return sample(name, annotation)
    assert annotation in SAMPLES, f"no sample value for {name}: {annotation!r}; add one"
    return SAMPLES[annotation]


def build(kind: type[errors.DurakubeError]) -> errors.DurakubeError:
    """An instance of `kind` with every parameter given, defaults included."""
    hints = typing.get_type_hints(kind.__init__)
    parameters = list(inspect.signature(kind.__init__).parameters)[1:]
    return kind(**{name: sample(name, hints[name]) for name in parameters})


SDK_ERRORS = sorted((kind for kind in errors.codes().values()
                     if kind.__module__.startswith("durakube.")), key=lambda kind: kind.code)


def test_the_registry_holds_the_errors_of_every_module() -> None:
    modules = {kind.__module__ for kind in SDK_ERRORS}
    assert modules >= {"durakube.errors", "durakube.waiting", "durakube.triggering",
                       "durakube.store.waitpoints", "durakube.client.failures"}


@pytest.mark.parametrize("kind", SDK_ERRORS, ids=lambda kind: kind.code)
def test_every_error_round_trips_through_json(kind: type[errors.DurakubeError]) -> None:
    error = build(kind)
    data = json.loads(json.dumps(errors.describe_exception(error)))
    rebuilt = errors.rebuild_exception(data)
    assert type(rebuilt) is kind
    assert (str(rebuilt), rebuilt.message) == (str(error), error.message)
    assert rebuilt.fields == error.fields
    assert rebuilt == error
    assert rebuilt.to_json() == data


@pytest.mark.parametrize("kind", SDK_ERRORS, ids=lambda kind: kind.code)
def test_every_error_pickles(kind: type[errors.DurakubeError]) -> None:
    error = build(kind)
    error.traceback = "File ..."
    copied = pickle.loads(pickle.dumps(error))
    assert type(copied) is kind
    assert copied == error and str(copied) == str(error) and copied.args == error.args
    assert copied.traceback == "File ..."


def test_a_second_class_taking_a_code_fails_at_its_creation() -> None:
    with pytest.raises(TypeError, match=r"'WaitTimedOut' .* already taken by "
                                        r"durakube\.waiting\.WaitTimedOut"):
        class WaitTimedOut(errors.DurakubeError):
            __module__ = "durakube.client.failures"  # as the client's timeout once was
    assert errors.codes()["WaitTimedOut"] is waiting.WaitTimedOut


def test_task_modules_may_each_define_an_error_of_the_same_name() -> None:
    class Declined(errors.PermanentError):
        __module__ = "acme.billing"
        __qualname__ = "Declined"

    class Declined2(errors.PermanentError):
        __module__ = "acme.shipping"
        __qualname__ = "Declined"

    assert (Declined.code, Declined2.code) == ("acme.billing.Declined", "acme.shipping.Declined")
    rebuilt = errors.rebuild_exception(errors.describe_exception(Declined2("no")))
    assert type(rebuilt) is Declined2


def test_an_error_with_unnamed_parameters_fails_at_its_creation() -> None:
    with pytest.raises(TypeError, match="every parameter needs a name"):
        class Vague(errors.DurakubeError):
            def __init__(self, *parts: str) -> None:
                super().__init__(" ".join(parts))
    assert "Vague" not in errors.codes()


def test_a_recorded_wait_timeout_replays_once_the_client_is_imported() -> None:
    # The client's own timeout once took the code "WaitTimedOut" and broke this replay.
    import durakube.client  # noqa: F401

    recorded = errors.describe_exception(waiting.WaitTimedOut("event", "'approval'", " of 1h"))
    rebuilt = errors.rebuild_exception(json.loads(json.dumps(recorded)))
    assert type(rebuilt) is waiting.WaitTimedOut
    assert str(rebuilt) == "no event 'approval' arrived before the timeout of 1h"


@pytest.mark.parametrize(("row", "expected"), [
    ({"type": "durakube.waiting.WaitTimedOut", "message": "no event 'k' arrived before the timeout",
      "retryable": False, "code": "WaitTimedOut",
      "fields": {"kind": "event", "what": "'k'", "timeout": ""}},
     waiting.WaitTimedOut("event", "'k'")),
    ({"type": "durakube.errors.RetryableError", "message": "later", "retryable": True,
      "code": "RetryableError", "fields": {"retry_at": "2030-05-01T12:00:00+00:00"}},
     errors.RetryableError("later", datetime(2030, 5, 1, 12, tzinfo=UTC))),
    ({"type": "stripe.CardError", "message": "declined", "retryable": False, "code": "StepFailed",
      "fields": {"step": "charge", "seq": 2, "type": "stripe.CardError", "retryable": False}},
     errors.StepFailed("charge", 2, "stripe.CardError", "declined")),
    ({"type": "durakube.triggering.ChildRunFailed", "message": "child run c-1 ended Failed: E: m",
      "retryable": False, "code": "ChildRunFailed",
      "fields": {"name": "c-1", "phase": "Failed", "error_type": "E", "error_message": "m"}},
     durakube.ChildRunFailed("c-1", "Failed", "E", "m")),
], ids=["WaitTimedOut", "RetryableError", "StepFailed", "ChildRunFailed"])
def test_rows_recorded_by_earlier_versions_still_rebuild(
        row: dict[str, Any], expected: errors.DurakubeError) -> None:
    assert errors.rebuild_exception(row) == expected


def test_a_row_that_no_longer_fits_its_class_replays_as_step_failed() -> None:
    row = {"type": "durakube.errors.NonDeterministicReplay", "message": "step 3 was 'a'",
           "retryable": False, "code": "NonDeterministicReplay", "fields": {"seq": 3}}
    rebuilt = errors.rebuild_exception(row)
    assert isinstance(rebuilt, errors.StepFailed)
    assert (rebuilt.type, rebuilt.message) == (row["type"], row["message"])


class PaymentDeclined(errors.PermanentError):
    """An error a user's task module defines: it needs no code of its own to round-trip."""

    def __init__(self, card: str, amount: float, at: datetime | None = None) -> None:
        super().__init__(f"card {card} declined {amount:.2f}")
        self.card, self.amount, self.at = card, amount, at


def test_errors_defined_by_task_code_round_trip_too() -> None:
    error = PaymentDeclined("visa-42", 12.5, datetime(2030, 1, 1, tzinfo=UTC))
    rebuilt = errors.rebuild_exception(json.loads(json.dumps(errors.describe_exception(error))))
    assert type(rebuilt) is PaymentDeclined and rebuilt == error
    assert rebuilt.at == error.at and rebuilt.amount == 12.5


def test_tokens_show_only_their_prefix() -> None:
    from durakube.store import waitpoints

    token = waitpoints.new_token()
    error = waitpoints.TokenNotFound(waitpoints.shown_token(token))
    assert token not in json.dumps(error.to_json())


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

"""The client's errors: catchable as Python's own, round-trip through JSON, never leak a password."""

from __future__ import annotations

import pytest

from durakube import errors
from durakube.client import failures, history

CASES = [
    failures.UnknownTask("echo", "team-a", ["greet"]),
    failures.UnregisteredFunction("mod.fn"),
    failures.TaskRunNotFound("r-1", "team-a"),
    failures.PermissionDenied("get Task team-a/echo", 'User "bob" cannot get resource "tasks"'),
    failures.DatabaseUnreachable("db:5432/durakube", "ConnectionRefusedError: refused"),
    failures.DatabaseNotConfigured("steps"),
    failures.RunFailed("r-1", "Failed", "Failed", "ValueError: bad", "ValueError", "bad"),
    failures.RunWaitTimedOut("r-1", 5.0, "Running"),
    failures.NotSupported("send-event", "no durakube.events table"),
    failures.RunNotFinished("r-1", "Queued"),
]


@pytest.mark.parametrize("error", CASES, ids=[type(e).__name__ for e in CASES])
def test_errors_round_trip_through_json(error: errors.DurakubeError) -> None:
    rebuilt = errors.DurakubeError.from_json(error.to_json())
    assert type(rebuilt) is type(error)
    assert rebuilt == error and str(rebuilt) == str(error)


def test_errors_are_the_builtins_callers_expect() -> None:
    assert isinstance(failures.RunWaitTimedOut("r", 1, None), TimeoutError)
    assert isinstance(failures.PermissionDenied("a", "b"), PermissionError)
    assert isinstance(failures.DatabaseUnreachable("a", "b"), ConnectionError)
    assert isinstance(failures.TaskRunNotFound("r", "ns"), errors.RunNotFound)
    assert isinstance(failures.UnknownTask("t", "ns"), LookupError)


def test_run_failed_names_phase_reason_and_the_task_error() -> None:
    error = failures.RunFailed("r-1", "Failed", "RetriesExhausted", "3 attempts failed",
                               "ValueError", "cannot process invoice-7")
    assert str(error) == ("run 'r-1' ended Failed (RetriesExhausted): "
                          "ValueError: cannot process invoice-7")


@pytest.mark.parametrize(("dsn", "target"), [
    ("postgresql://u:secret@db.internal:6543/durakube", "db.internal:6543/durakube"),
    ("postgres://u:secret@10.0.0.5/x?sslmode=require", "10.0.0.5:5432/x"),
    ("postgresql:///local", "localhost:5432/local"),
])
def test_database_target_is_host_port_database_without_credentials(dsn: str, target: str) -> None:
    assert history.describe_target(dsn) == target
    assert "secret" not in history.describe_target(dsn)


async def test_unreachable_database_is_reported_without_the_password() -> None:
    with pytest.raises(failures.DatabaseUnreachable) as caught:
        await history.open_pool("postgresql://u:pa55word@127.0.0.1:1/d")
    assert "127.0.0.1:1/d" in str(caught.value) and "pa55word" not in str(caught.value)

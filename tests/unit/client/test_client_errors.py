"""The client's errors: catchable as Python's own, never leak a password.

Their JSON round trip is pinned with every other error's in `unit/sdk/test_errors_round_trip.py`.
"""

from __future__ import annotations

import pytest

from durakube import errors
from durakube.client import failures, history


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

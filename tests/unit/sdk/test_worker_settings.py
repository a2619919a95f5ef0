"""The worker's settings: each DURAKUBE_ variable an attempt pod gets, and one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from durakube import environment, worker

REQUIRED = {"DURAKUBE_RUN_ID": "run-1", "DURAKUBE_ATTEMPT": "2", "DURAKUBE_DATABASE_URL": "pg://db",
            "DURAKUBE_ATTEMPT_SECRET": "s3cret"}


def test_defaults() -> None:
    settings = environment.WorkerSettings.from_environ(REQUIRED)
    assert settings.model_dump() == {
        "run_id": "run-1", "attempt": 2, "database_url": "pg://db", "attempt_secret": "s3cret",
        "task_modules": (),
        "termination_message_path": "/dev/termination-log", "pod_name": None,
        "statement_cache_size": None, "retry_policy": None, "store_retry_seconds": 60.0,
        "log_format": "plain", "compensating": False,
    }


VARIABLES = [
    ({"DURAKUBE_TASK_MODULES": "a, b,,a"}, "task_modules", ("a", "b")),
    ({"DURAKUBE_TERMINATION_MESSAGE_PATH": "/tmp/t"}, "termination_message_path", "/tmp/t"),
    ({"DURAKUBE_POD_NAME": "run-1-2", "HOSTNAME": "host"}, "pod_name", "run-1-2"),
    ({"DURAKUBE_POD_NAME": "", "HOSTNAME": "host"}, "pod_name", "host"),
    ({"DURAKUBE_STATEMENT_CACHE_SIZE": "0"}, "statement_cache_size", 0),
    ({"DURAKUBE_STATEMENT_CACHE_SIZE": ""}, "statement_cache_size", None),
    ({"DURAKUBE_RETRY_POLICY": '{"max_attempts": 2}'}, "retry_policy", '{"max_attempts": 2}'),
    ({"DURAKUBE_STORE_RETRY_SECONDS": "5.5"}, "store_retry_seconds", 5.5),
    ({"DURAKUBE_LOG_FORMAT": "json"}, "log_format", "json"),
    ({"DURAKUBE_COMPENSATING": "true"}, "compensating", True),
]


@pytest.mark.parametrize(("environ", "field", "expected"), VARIABLES,
                         ids=["modules", "termination-path", "pod-name", "pod-name-from-hostname",
                              "cache-size", "empty-cache-size", "retry-policy", "store-retry",
                              "log-format", "compensating"])
def test_each_variable_is_read(environ: dict[str, str], field: str, expected: Any) -> None:
    settings = environment.WorkerSettings.from_environ({**REQUIRED, **environ})
    assert getattr(settings, field) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DURAKUBE_ATTEMPT": "1"}, "missing environment variables: DURAKUBE_RUN_ID, "
         "DURAKUBE_DATABASE_URL, DURAKUBE_ATTEMPT_SECRET"),
        ({**REQUIRED, "DURAKUBE_ATTEMPT": "2nd"}, "DURAKUBE_ATTEMPT must be an integer, got '2nd'"),
        ({**REQUIRED, "DURAKUBE_ATTEMPT": "0"}, "DURAKUBE_ATTEMPT must be at least 1, got '0'"),
        ({**REQUIRED, "DURAKUBE_STATEMENT_CACHE_SIZE": "-1"},
         "DURAKUBE_STATEMENT_CACHE_SIZE must be at least 0, got '-1'"),
    ],
    ids=["missing", "attempt-not-a-number", "attempt-zero", "negative-cache"],
)
def test_bad_settings_give_one_message_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(environment.SettingsError) as refused:
        environment.WorkerSettings.from_environ(environ)
    assert str(refused.value) == message


def test_the_database_url_and_the_attempt_secret_can_come_from_files(tmp_path: Path) -> None:
    dsn, secret = tmp_path / "dsn", tmp_path / "secret"
    dsn.write_text("pg://from-file\n")
    secret.write_text("from-a-file")
    environ = {**REQUIRED, "DURAKUBE_DATABASE_URL_FILE": str(dsn),
               "DURAKUBE_ATTEMPT_SECRET_FILE": str(secret)}
    del environ["DURAKUBE_DATABASE_URL"], environ["DURAKUBE_ATTEMPT_SECRET"]
    settings = environment.WorkerSettings.from_environ(environ)
    assert (settings.database_url, settings.attempt_secret) == ("pg://from-file", "from-a-file")
    assert "from-a-file" not in repr(settings)
    with pytest.raises(environment.SettingsError, match="are both set"):
        environment.WorkerSettings.from_environ({**environ, "DURAKUBE_DATABASE_URL": "pg://db"})


def test_a_secret_never_appears_in_an_error() -> None:
    class WithSecretPort(environment.Settings):
        port: int = pydantic.Field(repr=False)

    with pytest.raises(environment.SettingsError) as refused:
        WithSecretPort.from_environ({"DURAKUBE_PORT": "hunter2"})
    assert str(refused.value) == "DURAKUBE_PORT must be an integer"


def test_worker_flags_add_modules_after_the_environment() -> None:
    settings = worker.read_settings({**REQUIRED, "DURAKUBE_TASK_MODULES": "a,b"}, ["b", "", "c"])
    assert settings.task_modules == ("a", "b", "c")

"""The operator's settings: each DURAKUBE_ variable, its default, and one clear error."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from durakube_operator import settings

DSN = "postgresql://db/durakube"
REQUIRED = {"DURAKUBE_DATABASE_URL": DSN}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DURAKUBE_ (or OTLP endpoint) variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith(("DURAKUBE_", "OTEL_EXPORTER_OTLP_")):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    config = settings.Settings.from_environ(REQUIRED)
    assert config.model_dump() == {
        "database_url": DSN, "migration_database_url": None, "worker_database_url": None,
        "namespaces": (), "worker_uid": 65532,
        "default_queue": "default", "default_concurrency_limit": 100, "workers": 32,
        "api_qps": 50.0, "api_burst": None, "event_qps": 50.0, "event_burst": None,
        "metrics_port": 8080, "health_port": 8081,
        "webhook_port": 8082, "webhook_secret": None, "key_ring_size": 64, "resync_seconds": 30.0,
        "leader_election": True, "lease_name": "durakube-operator", "lease_namespace": "default",
        "lease_duration_seconds": 15.0, "renew_deadline_seconds": 10.0,
        "retry_period_seconds": 2.0, "pod_name": socket.gethostname(), "log_format": "plain",
        "ttl_seconds_after_finished": 7 * 86400, "history_retention": 30 * 86400.0,
        "finished_pod_seconds": None, "otlp_endpoint": None, "otlp_traces_endpoint": None,
        "trace_sample_ratio": 1.0, "infrastructure_retry_delay": 1.0, "fault_points": (),
    }


@pytest.mark.parametrize(("retry", "renew", "duration"), [("2", "10", "10"), ("5", "4", "15")],
                         ids=["renew-deadline-not-under-lease", "retry-not-under-renew"])
def test_lease_timings_that_could_make_two_leaders_are_refused(
        retry: str, renew: str, duration: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**REQUIRED, "DURAKUBE_RETRY_PERIOD_SECONDS": retry,
                        "DURAKUBE_RENEW_DEADLINE_SECONDS": renew,
                        "DURAKUBE_LEASE_DURATION_SECONDS": duration}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError, match="DURAKUBE_RETRY_PERIOD_SECONDS < "):
        settings.from_environment()


VARIABLES = [
    ("DURAKUBE_NAMESPACES", "a, b,,a", "namespaces", ("a", "b")),
    ("DURAKUBE_MIGRATION_DATABASE_URL", "pg://owner", "migration_database_url", "pg://owner"),
    ("DURAKUBE_WORKER_DATABASE_URL", "pg://worker", "worker_database_url", "pg://worker"),
    ("DURAKUBE_WORKER_UID", "1000", "worker_uid", 1000),
    ("DURAKUBE_OTLP_ENDPOINT", "http://collector:4318", "otlp_endpoint", "http://collector:4318"),
    ("DURAKUBE_TRACE_SAMPLE_RATIO", "0.25", "trace_sample_ratio", 0.25),
    ("DURAKUBE_INFRASTRUCTURE_RETRY_DELAY", "0", "infrastructure_retry_delay", 0.0),
    ("DURAKUBE_DEFAULT_QUEUE", "batch", "default_queue", "batch"),
    ("DURAKUBE_DEFAULT_CONCURRENCY_LIMIT", "1000", "default_concurrency_limit", 1000),
    ("DURAKUBE_WORKERS", "16", "workers", 16),
    ("DURAKUBE_API_QPS", "20", "api_qps", 20.0),
    ("DURAKUBE_API_BURST", "30", "api_burst", 30),
    ("DURAKUBE_METRICS_PORT", "0", "metrics_port", 0),
    ("DURAKUBE_HEALTH_PORT", "9091", "health_port", 9091),
    ("DURAKUBE_LEADER_ELECTION", "false", "leader_election", False),
    ("DURAKUBE_LEASE_NAME", "ops", "lease_name", "ops"),
    ("DURAKUBE_LEASE_NAMESPACE", "durakube-system", "lease_namespace", "durakube-system"),
    ("DURAKUBE_POD_NAME", "durakube-7d9-x2", "pod_name", "durakube-7d9-x2"),
    ("DURAKUBE_LEASE_DURATION_SECONDS", "30", "lease_duration_seconds", 30.0),
    ("DURAKUBE_WEBHOOK_PORT", "0", "webhook_port", 0),
    ("DURAKUBE_WEBHOOK_SECRET", "s3cret", "webhook_secret", "s3cret"),
    ("DURAKUBE_RESYNC_SECONDS", "5", "resync_seconds", 5.0),
    ("DURAKUBE_WORKERS", "", "workers", 32),  # empty means unset
]


@pytest.mark.parametrize(("variable", "value", "field", "expected"), VARIABLES,
                         ids=[f"{variable}={value}" for variable, value, _, _ in VARIABLES])
def test_each_variable_is_read(variable: str, value: str, field: str, expected: Any) -> None:
    config = settings.Settings.from_environ({**REQUIRED, variable: value})
    assert getattr(config, field) == expected


def test_from_environment_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURAKUBE_DATABASE_URL", DSN)
    monkeypatch.setenv("DURAKUBE_WORKERS", "3")
    config = settings.from_environment()
    assert (config.database_url, config.workers) == (DSN, 3)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "missing environment variables: DURAKUBE_DATABASE_URL"),
        ({"DURAKUBE_DATABASE_URL": ""}, "missing environment variables: DURAKUBE_DATABASE_URL"),
        ({**REQUIRED, "DURAKUBE_WORKERS": "many"}, "DURAKUBE_WORKERS must be an integer, got 'many'"),
        ({**REQUIRED, "DURAKUBE_WORKERS": "0"}, "DURAKUBE_WORKERS must be at least 1, got '0'"),
        ({**REQUIRED, "DURAKUBE_API_QPS": "0"}, "DURAKUBE_API_QPS must be greater than 0, got '0'"),
        ({**REQUIRED, "DURAKUBE_API_QPS": "fast"}, "DURAKUBE_API_QPS must be a number, got 'fast'"),
        ({**REQUIRED, "DURAKUBE_API_BURST": "0"}, "DURAKUBE_API_BURST must be at least 1"),
        ({**REQUIRED, "DURAKUBE_LEADER_ELECTION": "maybe"},
         "DURAKUBE_LEADER_ELECTION must be true or false, got 'maybe'"),
        ({**REQUIRED, "DURAKUBE_METRICS_PORT": "70000"}, "DURAKUBE_METRICS_PORT must be at most 65535"),
        ({"DURAKUBE_WORKERS": "0"},
         "missing environment variables: DURAKUBE_DATABASE_URL; DURAKUBE_WORKERS must be at least 1"),
    ],
    ids=["missing-dsn", "empty-dsn", "workers-not-a-number", "no-workers", "qps-zero", "qps-not-a-number",
         "burst-zero", "bad-bool", "port-too-high", "all-problems-at-once"],
)
def test_bad_settings_give_one_message_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(settings.SettingsError) as refused:
        settings.Settings.from_environ(environ)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    ("variable", "field"),
    [("DURAKUBE_DATABASE_URL", "database_url"), ("DURAKUBE_WEBHOOK_SECRET", "webhook_secret"),
     ("DURAKUBE_MIGRATION_DATABASE_URL", "migration_database_url"),
     ("DURAKUBE_WORKER_DATABASE_URL", "worker_database_url")],
)
def test_a_secret_can_come_from_a_file(tmp_path: Path, variable: str, field: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-the-file\n")  # the trailing newline of `echo` is not part of it
    config = settings.Settings.from_environ({**REQUIRED, variable: "", f"{variable}_FILE": str(secret)})
    assert getattr(config, field) == "from-the-file"


def test_a_secret_set_twice_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(DSN)
    with pytest.raises(settings.SettingsError,
                       match="DURAKUBE_DATABASE_URL and DURAKUBE_DATABASE_URL_FILE are both set"):
        settings.Settings.from_environ({**REQUIRED, "DURAKUBE_DATABASE_URL_FILE": str(secret)})


def test_an_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(settings.SettingsError, match=r"DURAKUBE_WEBHOOK_SECRET_FILE: cannot read .*missing"):
        settings.Settings.from_environ(
            {**REQUIRED, "DURAKUBE_WEBHOOK_SECRET_FILE": str(tmp_path / "missing")})


def test_only_secrets_have_a_file_variant(tmp_path: Path) -> None:
    workers = tmp_path / "workers"
    workers.write_text("3")
    config = settings.Settings.from_environ({**REQUIRED, "DURAKUBE_WORKERS_FILE": str(workers)})
    assert config.workers == 32


def test_secrets_are_never_shown() -> None:
    config = settings.Settings.from_environ({
        **REQUIRED, "DURAKUBE_WEBHOOK_SECRET": "s3cret", "DURAKUBE_WORKER_DATABASE_URL": "pg://w",
        "DURAKUBE_MIGRATION_DATABASE_URL": "pg://owner"})
    assert all(secret not in repr(config) for secret in (DSN, "s3cret", "pg://w", "pg://owner"))


def test_migrations_and_workers_default_to_the_operators_login() -> None:
    config = settings.Settings.from_environ(REQUIRED)
    assert (config.migrating_database_url, config.attempt_database_url) == (DSN, DSN)
    config = settings.Settings.from_environ({
        **REQUIRED, "DURAKUBE_WORKER_DATABASE_URL": "pg://w",
        "DURAKUBE_MIGRATION_DATABASE_URL": "pg://owner"})
    assert (config.migrating_database_url, config.attempt_database_url) == ("pg://owner", "pg://w")


def test_settings_can_be_built_in_code() -> None:
    config = settings.Settings(database_url=DSN, worker_database_url="pg://w", namespaces=("a",))
    assert (config.worker_database_url, config.namespaces) == ("pg://w", ("a",))

"""Retention's pure rules: which TTL and history retention a finished run gets, the
cutoff of the clean-up, and the settings the operator refuses at start."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from durakube import resources
from durakube.store import attempts
from durakube_operator import actions, deciding, observing, retaining
from durakube_operator import settings as settings_module

DSN = "postgresql://db/durakube"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def configured(**environ: str) -> settings_module.Settings:
    return settings_module.Settings.from_environ({"DURAKUBE_DATABASE_URL": DSN, **environ})


def taskrun(spec: str = "") -> resources.TaskRun:
    return resources.TaskRun.model_validate({
        "metadata": {"name": "report", "namespace": "team", "uid": "uid-1", "generation": 1,
                     "creationTimestamp": "2026-03-01T11:59:00Z"},
        "spec": {"taskRef": {"name": "work"}, **(yaml.safe_load(spec) or {})}})


def task(spec: str = "") -> resources.Task:
    return resources.Task.model_validate({
        "metadata": {"name": "work", "namespace": "team"},
        "spec": {"image": "tasks:1", "entrypoint": "work", **(yaml.safe_load(spec) or {})}})


TTL_CASES = [
    ("run-wins", "ttlSecondsAfterFinished: 60", "ttlSecondsAfterFinished: 600", {}, 60),
    ("run-zero-wins", "ttlSecondsAfterFinished: 0", "ttlSecondsAfterFinished: 600", {}, 0),
    ("task-next", "", "ttlSecondsAfterFinished: 600", {}, 600),
    ("operator-default", "", "", {}, 7 * 86400),
    ("operator-setting", "", "", {"DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "3600"}, 3600),
    ("operator-never", "", "", {"DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "never",
                                "DURAKUBE_HISTORY_RETENTION": "never"}, None),
    ("run-over-never", "ttlSecondsAfterFinished: 5", "",
     {"DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "never"}, 5),
]


@pytest.mark.parametrize(("run_spec", "task_spec", "environ", "expected"),
                         [case[1:] for case in TTL_CASES], ids=[case[0] for case in TTL_CASES])
def test_ttl_is_the_runs_then_the_tasks_then_the_operators(
        run_spec: str, task_spec: str, environ: dict[str, str], expected: int | None) -> None:
    assert retaining.ttl_after_finished(taskrun(run_spec), task(task_spec),
                                        configured(**environ)) == expected


def test_a_run_whose_task_is_gone_gets_the_operators_ttl() -> None:
    assert retaining.ttl_after_finished(taskrun(), None, configured()) == 7 * 86400


@pytest.mark.parametrize(("task_spec", "environ", "expected"), [
    ("historyRetention: 90d", {}, 90 * 86400.0),
    ("", {}, 30 * 86400.0),
    ("", {"DURAKUBE_HISTORY_RETENTION": "45d"}, 45 * 86400.0),
    ("", {"DURAKUBE_HISTORY_RETENTION": "never"}, None),
    ("historyRetention: 1h", {"DURAKUBE_HISTORY_RETENTION": "never"}, 3600.0),
], ids=["task-wins", "operator-default", "operator-setting", "operator-never", "task-over-never"])
def test_history_retention_is_the_tasks_then_the_operators(
        task_spec: str, environ: dict[str, str], expected: float | None) -> None:
    assert retaining.history_retention(task(task_spec), configured(**environ)) == expected


def test_the_cutoff_is_the_retention_before_now() -> None:
    assert retaining.cutoff(NOW, 30 * 86400.0) == NOW - timedelta(days=30)
    assert retaining.cutoff(NOW, 0.0) == NOW
    assert retaining.cutoff(NOW, None) is None


@pytest.mark.parametrize(("environ", "ttl", "history"), [
    ({}, 604800, 2592000.0),
    ({"DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "0", "DURAKUBE_HISTORY_RETENTION": "0"}, 0, 0.0),
    ({"DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "NEVER"}, None, 2592000.0),
    ({"DURAKUBE_HISTORY_RETENTION": "never"}, 604800, None),
    ({"DURAKUBE_HISTORY_RETENTION": "7d"}, 604800, 604800.0),
    ({"DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "60", "DURAKUBE_HISTORY_RETENTION": "1h30m"},
     60, 5400.0),
], ids=["defaults", "zero", "ttl-never", "history-never", "history-equal-to-ttl", "duration-form"])
def test_retention_settings_are_read(environ: dict[str, str], ttl: int | None,
                                     history: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("DURAKUBE_")]:
        monkeypatch.delenv(name)
    for name, value in {"DURAKUBE_DATABASE_URL": DSN, **environ}.items():
        monkeypatch.setenv(name, value)
    config = settings_module.from_environment()
    assert (config.ttl_seconds_after_finished, config.history_retention) == (ttl, history)


@pytest.mark.parametrize(("environ", "message"), [
    ({"DURAKUBE_HISTORY_RETENTION": "1d"},
     r"DURAKUBE_HISTORY_RETENTION \(1d\) must be at least DURAKUBE_TTL_SECONDS_AFTER_FINISHED "
     r"\(604800 s, 7d\)"),
    ({"DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "-1"},
     "DURAKUBE_TTL_SECONDS_AFTER_FINISHED must be at least 0"),
    ({"DURAKUBE_TTL_SECONDS_AFTER_FINISHED": "a week"},
     "DURAKUBE_TTL_SECONDS_AFTER_FINISHED must be an integer"),
    ({"DURAKUBE_HISTORY_RETENTION": "a month"}, "DURAKUBE_HISTORY_RETENTION .*invalid duration"),
], ids=["history-shorter-than-ttl", "negative-ttl", "ttl-not-a-number", "history-not-a-duration"])
def test_bad_retention_settings_stop_the_operator_with_a_clear_message(
        environ: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("DURAKUBE_")]:
        monkeypatch.delenv(name)
    for name, value in {"DURAKUBE_DATABASE_URL": DSN, **environ}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(settings_module.SettingsError, match=message):
        settings_module.from_environment()


RUNNING: dict[str, Any] = {
    "phase": "Running", "runId": "uid-1", "attempt": 1, "podName": "report-1",
    "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running",
                    "lastTransitionTime": "2026-03-01T11:59:02Z"}]}


def observed(run_spec: str, task_spec: str, outcome: attempts.Outcome,
             status: dict[str, Any]) -> observing.Observation:
    run = taskrun(run_spec).model_copy(update={"status": resources.TaskRunStatus.model_validate(status)})
    return observing.Observation(body=run.model_dump(mode="json", by_alias=True), run=run,
                                 queue="team/default", task=task(task_spec), outcome=outcome)


def test_a_run_that_finishes_records_its_retention_with_its_final_phase() -> None:
    seen = observed("ttlSecondsAfterFinished: 30", "historyRetention: 2d",
                    attempts.Outcome("succeeded", output={"ok": True}), RUNNING)
    decision = deciding.decide(seen, NOW, configured())
    assert decision.status.phase == resources.Phase.SUCCEEDED
    mirror = next(a for a in decision.actions if isinstance(a, actions.MirrorPhase))
    assert mirror == actions.MirrorPhase("uid-1", "Succeeded", actions.Retention(
        namespace="team", name="report", ttl_seconds=30, history_seconds=2 * 86400.0))


def test_a_run_that_goes_on_records_no_retention() -> None:
    seen = observed("", "", attempts.Outcome("retry", error={"type": "Flaky", "message": "again"}),
                    RUNNING)
    decision = deciding.decide(seen, NOW, configured())
    assert decision.status.phase == resources.Phase.BACKING_OFF
    mirror = next(a for a in decision.actions if isinstance(a, actions.MirrorPhase))
    assert mirror.retention is None


def test_a_run_finished_before_retention_existed_gets_it_from_its_completion_time() -> None:
    finished = {**RUNNING, "phase": "Succeeded", "completionTime": "2026-02-01T08:00:00Z"}
    seen = observed("", "ttlSecondsAfterFinished: 60", attempts.Outcome("succeeded"), finished)
    decision = deciding.decide(seen, NOW, configured())
    assert seen.run is not None and decision.status == seen.run.status
    assert decision.actions == (actions.RecordRetention(
        "uid-1", actions.Retention(namespace="team", name="report", ttl_seconds=60,
                                   history_seconds=30 * 86400.0),
        datetime(2026, 2, 1, 8, 0, tzinfo=UTC)),)


def test_with_finished_pod_seconds_a_retried_attempts_pod_goes_when_its_outcome_is_read() -> None:
    retried = attempts.Outcome("retry", error={"type": "Flaky", "message": "again"})
    kept = deciding.decide(observed("", "", retried, RUNNING), NOW, configured())
    assert not any(isinstance(a, actions.DeletePod) for a in kept.actions)
    decision = deciding.decide(observed("", "", retried, RUNNING), NOW,
                               configured(DURAKUBE_FINISHED_POD_SECONDS="30"))
    assert decision.status.phase == resources.Phase.BACKING_OFF
    assert actions.DeletePod("team", "report-1") in decision.actions


def test_with_finished_pod_seconds_the_last_pod_is_recorded_to_go_after_them() -> None:
    seen = observed("", "", attempts.Outcome("succeeded", output={}), RUNNING)
    mirror = next(a for a in deciding.decide(seen, NOW, configured(
        DURAKUBE_FINISHED_POD_SECONDS="30")).actions if isinstance(a, actions.MirrorPhase))
    assert mirror.retention is not None
    assert (mirror.retention.pod_name, mirror.retention.pod_seconds) == ("report-1", 30)
    # By default every attempt's pod stays until the TaskRun goes (logs are read from pods).
    default = next(a for a in deciding.decide(seen, NOW, configured()).actions
                   if isinstance(a, actions.MirrorPhase))
    assert default.retention is not None and default.retention.pod_name is None

"""The CLI's human tables: kubectl's look, stable columns, ages and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durakube.client import handles, tables

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def summary(name: str, **fields: object) -> handles.RunSummary:
    values: dict[str, object] = {
        "name": name, "namespace": "ns", "run_id": "uid-" + name, "task": "echo", "queue": None,
        "phase": "Running", "reason": "Running", "message": None, "attempt": 1,
        "current_step": "fetch", "completed_steps": 1, "created_at": NOW - timedelta(seconds=30),
        "finished_at": None, "output": None, "last_error": None}
    values.update(fields)
    return handles.RunSummary(**values)  # type: ignore[arg-type]


def test_columns_are_aligned_and_empty_cells_shown() -> None:
    text = tables.format_table(["NAME", "PHASE"], [["a-long-name", "Running"], ["b", ""]])
    assert text.splitlines() == ["NAME          PHASE", "a-long-name   Running", "b             -"]


@pytest.mark.parametrize(("seconds", "shown"), [
    (5, "5s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"), (3 * 86400, "3d")])
def test_ages_read_like_kubectl(seconds: int, shown: str) -> None:
    assert tables.format_age(NOW - timedelta(seconds=seconds), NOW) == shown


@pytest.mark.parametrize(("ms", "shown"), [(0.25, "0.25ms"), (850, "850ms"), (1234, "1.2s"),
                                           (123_000, "2m03s")])
def test_step_durations(ms: float, shown: str) -> None:
    assert tables.format_milliseconds(ms) == shown


def test_runs_table_marks_history_rows() -> None:
    lines = tables.format_runs([summary("r-1"), summary("r-0", phase="Succeeded",
                                                         current_step=None, source="history")],
                               NOW).splitlines()
    assert lines[0].split() == ["NAME", "TASK", "PHASE", "REASON", "ATTEMPT", "STEP", "AGE", "SOURCE"]
    assert lines[1].split() == ["r-1", "echo", "Running", "Running", "1", "fetch", "30s", "-"]
    assert lines[2].split() == ["r-0", "echo", "Succeeded", "Running", "1", "-", "30s", "history"]


def test_steps_table_previews_results_and_errors() -> None:
    steps = [handles.StepSummary(1, "fetch", "succeeded", 1, 12.0, {"id": "x" * 200}, None, None),
             handles.StepSummary(2, "store", "failed", 2, 1500.0, None,
                                 {"type": "ValueError", "message": "bad"}, None)]
    lines = tables.format_steps(steps).splitlines()
    assert lines[1].split()[:5] == ["1", "fetch", "succeeded", "1", "12ms"]
    assert lines[1].split()[5].endswith("…") and len(lines[1].split()[5]) == handles.PREVIEW_CHARS
    assert lines[2].split()[:5] == ["2", "store", "failed", "2", "1.5s"]
    assert lines[2].endswith("ValueError: bad")


def test_one_run_as_key_value_lines() -> None:
    text = tables.format_run(summary("r-1", last_error={"type": "E", "message": "m"},
                                     tags=["nightly"]), NOW)
    assert "Name:        ns/r-1" in text
    assert "Last error:  E: m" in text and "Tags:        nightly" in text


def test_schedules_show_the_last_and_next_times_from_now() -> None:
    bodies = [
        {"metadata": {"name": "nightly", "namespace": "ns"},
         "spec": {"schedule": "0 2 * * *", "timeZone": "Europe/Paris", "taskRef": {"name": "report"}},
         "status": {"lastScheduleTime": "2025-01-01T11:00:00Z", "nextScheduleTime": (
             NOW + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "lastRunName": "nightly-1767229200", "runs": 4,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled"}]}},
        {"metadata": {"name": "poll", "namespace": "ns"},
         "spec": {"interval": "30s", "taskRef": {"name": "poll"}, "paused": True}},
    ]
    schedules = [handles.summarize_schedule(body) for body in bodies]
    lines = tables.format_schedules(schedules, NOW).splitlines()
    assert lines[0].split() == ["NAME", "SCHEDULE", "TASK", "PAUSED", "LAST", "NEXT", "LAST", "RUN",
                                "READY"]
    assert "0 2 * * * (Europe/Paris)" in lines[1] and "60m ago" in lines[1] and "in 5m" in lines[1]
    assert "nightly-1767229200" in lines[1] and lines[1].endswith("Scheduled")
    assert lines[2].split()[:5] == ["poll", "every", "30s", "poll", "yes"]
    assert schedules[0].to_json()["runs"] == 4 and schedules[1].to_json()["ready"] is None

"""The runs list's filters: what a query asks for, which runs match, counts per phase."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest

from durakube import resources
from durakube.client import handles
from durakube.dashboard import filters

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def run(name: str, phase: str | None, *, task: str = "report", queue: str | None = None,
        tags: list[str] | None = None, age: timedelta = timedelta(minutes=5),
        namespace: str = "team-a") -> handles.RunSummary:
    return handles.RunSummary(
        name=name, namespace=namespace, run_id=name, task=task, queue=queue, phase=phase,
        reason=None, message=None, attempt=1, current_step=None, completed_steps=0,
        created_at=NOW - age, finished_at=None, output=None, last_error=None, tags=tags or [])


def test_a_query_is_read_with_defaults() -> None:
    wanted = filters.RunFilter.from_query({"phase": "Failed", "task": " report ", "since": "bogus"},
                                          "team-a")
    assert wanted == filters.RunFilter(namespace="team-a", task="report", phase="Failed")
    assert wanted.since == filters.DEFAULT_WINDOW
    assert filters.RunFilter.from_query({"namespace": "*"}, "team-a").namespace is None
    assert filters.RunFilter.from_query({}, None).namespace is None


@pytest.mark.parametrize(("query", "key", "expected"), [
    ({}, None, True),
    ({"task": "report"}, None, True),
    ({"task": "other"}, None, False),
    ({"phase": "running"}, None, True),
    ({"phase": "Failed"}, None, False),
    ({"queue": "bulk"}, None, True),
    ({"queue": "default"}, None, False),
    ({"key": "tenant-a"}, "tenant-a", True),
    ({"key": "tenant-a"}, "tenant-b", False),
    ({"tag": "monthly"}, None, True),
    ({"tag": "weekly"}, None, False),
    ({"since": "1h"}, None, True),
    ({"namespace": "team-b"}, None, False),
], ids=["nothing", "task", "other-task", "phase-any-case", "other-phase", "queue", "other-queue",
        "key", "other-key", "tag", "other-tag", "window", "other-namespace"])
def test_a_run_matches_what_the_filter_asks(query: dict[str, str], key: str | None,
                                            expected: bool) -> None:
    subject = run("r1", "Running", queue="bulk", tags=["monthly"])
    wanted = filters.RunFilter.from_query(query, "team-a")
    assert filters.matches(subject, wanted, NOW, concurrency_key=key) is expected


def test_runs_older_than_the_window_are_left_out() -> None:
    wanted = filters.RunFilter.from_query({"since": "1h"}, "team-a")
    assert not filters.matches(run("old", "Succeeded", age=timedelta(hours=2)), wanted, NOW)
    assert filters.matches(run("old", "Succeeded", age=timedelta(hours=2)),
                           filters.RunFilter.from_query({"since": "all"}, "team-a"), NOW)


def test_every_phase_is_counted_in_lifecycle_order() -> None:
    counts = filters.count_phases([run("a", "Running"), run("b", "Running"), run("c", "Failed"),
                                   run("d", None)])
    assert list(counts) == [phase.value for phase in resources.Phase]
    assert {phase: n for phase, n in counts.items() if n} == {"Pending": 1, "Running": 2,
                                                              "Failed": 1}


def test_history_and_filtering_by_tag_or_key_list_live_runs_only() -> None:
    assert not filters.RunFilter(namespace="team-a").live_only
    assert filters.RunFilter(namespace="team-a", tag="x").live_only
    assert filters.RunFilter(namespace="team-a", key="x").live_only
    assert filters.RunFilter(namespace=None).live_only


def test_a_filter_links_to_itself_with_one_change() -> None:
    wanted = filters.RunFilter(namespace="team-a", task="report", phase="Failed")
    assert parse_qs(wanted.query(phase="Running")) == {
        "namespace": ["team-a"], "task": ["report"], "phase": ["Running"], "since": ["24h"]}
    assert "phase" not in parse_qs(wanted.query(phase=None))
    assert parse_qs(filters.RunFilter(namespace=None).query())["namespace"] == ["*"]

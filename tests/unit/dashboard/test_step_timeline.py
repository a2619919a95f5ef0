"""The run page's timeline and attempt outcomes, from rows as Postgres holds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durakube.client import handles
from durakube.dashboard import timelines
from durakube.store import attempts

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(phase: str, *, finished: float | None = None, attempt: int = 1,
        message: str | None = None) -> handles.RunSummary:
    return handles.RunSummary(
        name="report-x", namespace="team-a", run_id="uid-1", task="report", queue=None,
        phase=phase, reason=phase, message=message, attempt=attempt, current_step=None,
        completed_steps=0, created_at=T0, finished_at=None if finished is None else at(finished),
        output=None, last_error=None)


def attempt(number: int, start: float, end: float | None, outcome: str | None,
            error: dict[str, str] | None = None) -> attempts.Attempt:
    return attempts.Attempt(run_id="uid-1", attempt=number, pod_name=f"report-x-{number}",
                            outcome=outcome, output=None, error=error, retry_at=None, policy=None,
                            started_at=at(start), finished_at=None if end is None else at(end))


def step(seq: int, name: str, attempt_number: int, end: float, ms: float,
         status: str = "succeeded") -> handles.StepSummary:
    return handles.StepSummary(seq=seq, name=name, status=status, attempt=attempt_number,
                               duration_ms=ms, result=None, error=None, finished_at=at(end))


def test_steps_sit_under_their_attempt_and_carry_the_attempts_that_replayed_them() -> None:
    tried = [attempt(1, 1, 4, "retry", {"type": "RetryableError", "message": "503"}),
             attempt(2, 6, 9, "suspended"), attempt(3, 14, 16, "succeeded")]
    steps = [step(1, "fetch", 1, 2, 500), step(2, "sum", 1, 3, 250), step(3, "render", 2, 8, 600),
             step(4, "sleep", 3, 14.5, 2), step(5, "email", 3, 15.5, 300)]
    waits = [timelines.WaitSpan(seq=4, kind="sleep", key=None, started_at=at(9), ended_at=at(13))]
    timeline = timelines.build_timeline(run("Succeeded", finished=16, attempt=3), tried, steps,
                                        waits, now=at(60))
    assert [(bar.kind, bar.row, bar.attempt, bar.replayed_in) for bar in timeline.bars] == [
        ("attempt", "attempt 1", 1, ()), ("step", "fetch", 1, (2, 3)), ("step", "sum", 1, (2, 3)),
        ("attempt", "attempt 2", 2, ()), ("step", "render", 2, (3,)), ("wait", "sleep", 2, ()),
        ("attempt", "attempt 3", 3, ()), ("step", "email", 3, ())]
    assert [bar.status for bar in timeline.bars if bar.kind == "attempt"] == [
        "retry", "suspended", "succeeded"]
    # The axis runs from the run's creation to its end; bars are placed on it in percent.
    assert (timeline.start, timeline.end) == (T0, at(16))
    fetch = timeline.bars[1]
    assert fetch.left == pytest.approx(1.5 / 16 * 100, abs=0.01)
    assert fetch.width == pytest.approx(0.5 / 16 * 100, abs=0.01)
    assert fetch.duration == "500ms"
    assert timeline.bars[5].duration == "4.0s" and timeline.bars[5].status == "waited"
    assert timeline.ticks[0] == (0.0, "0s") and timeline.ticks[-1] == (100.0, "+16.0s")


def test_an_open_wait_lasts_until_now() -> None:
    tried = [attempt(1, 1, 3, "suspended")]
    waits = [timelines.WaitSpan(seq=2, kind="event", key="approval-7", started_at=at(3),
                                ended_at=None)]
    timeline = timelines.build_timeline(run("Suspended"), tried, [step(1, "before", 1, 2, 100)],
                                        waits, now=at(103))
    wait = timeline.bars[-1]
    assert (wait.row, wait.status, wait.duration) == ("wait for event approval-7", "waiting",
                                                      "1m40s")
    assert wait.left + wait.width == pytest.approx(100.0, abs=0.01)


def test_a_one_millisecond_step_stays_visible() -> None:
    timeline = timelines.build_timeline(run("Succeeded", finished=3600), [attempt(1, 0, 3600,
                                        "succeeded")], [step(1, "tiny", 1, 10, 1)], [], now=at(3600))
    assert timeline.bars[1].width == timelines.MIN_WIDTH


@pytest.mark.parametrize(("outcome", "phase", "is_last", "label", "cause"), [
    ("succeeded", "Succeeded", True, "Succeeded", "none"),
    ("failed", "Failed", True, "Task failure", "task"),
    ("retry", "Running", False, "Task failure, retried", "task"),
    ("suspended", "Suspended", True, "Suspended", "none"),
    (None, "Running", True, "Running", "none"),
    (None, "Running", False, "Infrastructure failure", "infrastructure"),
    (None, "Failed", True, "Infrastructure failure", "infrastructure"),
    (None, "Canceled", True, "Stopped", "none"),
    (None, "TimedOut", True, "Timed out", "infrastructure"),
], ids=["succeeded", "task-failure", "retried", "suspended", "running", "pod-died",
        "infrastructure-retries-used-up", "canceled", "timed-out"])
def test_attempts_are_classified_by_what_ended_them(outcome: str | None, phase: str, is_last: bool,
                                                    label: str, cause: str) -> None:
    found = timelines.classify_attempt(attempt(1, 0, None, outcome,
                                               {"type": "ValueError", "message": "bad"}),
                                       run(phase), is_last)
    assert (found.label, found.cause) == (label, cause)
    if cause == "task":
        assert found.detail == "ValueError: bad"

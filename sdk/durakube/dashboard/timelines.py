"""A run's timeline: one bar per attempt, step and wait, placed on one time axis.

The run page draws it as a Gantt chart: each row a bar whose left edge and width
are percentages of the run's span. Steps sit under the attempt that recorded them;
a step recorded by one attempt is replayed (returned from its checkpoint, not run)
by every later attempt, so it carries the numbers of those attempts. Waits (sleep,
event, token) sit under the attempt that started them, from when they began to
when they ended (or now); the step a wait is checkpointed as when it ends is not
drawn again.

`classify_attempt` tells what ended an attempt, as the attempts table shows it: a
task failure (the task raised; the worker recorded it), an infrastructure failure
(the pod ended without recording an outcome: killed, evicted, OOM, node lost), a
suspension (the pod exited to wait), success, or still running.

Pure functions of rows the caller read (`reading`): no I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from durakube import resources
from durakube.client import handles, tables
from durakube.store import attempts

# The narrowest bar drawn, in percent of the axis: a 1 ms step stays visible.
MIN_WIDTH = 0.6
TICKS = 5

BarKind = Literal["attempt", "step", "wait"]


@dataclass(frozen=True)
class WaitSpan:
    """One wait of the run, as the waitpoints table records it."""

    seq: int
    kind: str  # sleep, event or token
    key: str | None
    started_at: datetime
    ended_at: datetime | None  # None: still waiting
    timed_out: bool = False


@dataclass(frozen=True)
class Bar:
    row: str  # the label left of the bar
    kind: BarKind
    status: str  # a CSS class: succeeded, failed, retry, suspended, running, infrastructure, ...
    left: float  # percent of the axis
    width: float  # percent of the axis
    duration: str
    title: str  # the tooltip
    attempt: int
    seq: int | None = None
    replayed_in: tuple[int, ...] = ()


@dataclass(frozen=True)
class Timeline:
    start: datetime
    end: datetime
    bars: list[Bar]
    ticks: list[tuple[float, str]] = field(default_factory=list)


@dataclass(frozen=True)
class AttemptOutcome:
    label: str
    status: str  # CSS class, as on the attempt's bar
    cause: Literal["task", "infrastructure", "none"]
    detail: str


def classify_attempt(attempt: attempts.Attempt, run: handles.RunSummary,
                     is_last: bool) -> AttemptOutcome:
    """What ended `attempt` (or that it still runs), for the attempts table."""
    error = attempt.error or {}
    described = f"{error.get('type')}: {error.get('message')}" if error else ""
    if attempt.outcome == "succeeded":
        return AttemptOutcome("Succeeded", "succeeded", "none", "")
    if attempt.outcome == "failed":
        return AttemptOutcome("Task failure", "failed", "task", described)
    if attempt.outcome == "retry":
        return AttemptOutcome("Task failure, retried", "retry", "task", described)
    if attempt.outcome == "suspended":
        return AttemptOutcome("Suspended", "suspended", "none", "the pod exited to wait")
    # No outcome recorded: the worker is still at it, was stopped, or died.
    final = run.phase in resources.FINAL_PHASES
    if is_last and not final:
        return AttemptOutcome("Running", "running", "none", "")
    if is_last and run.phase == resources.Phase.CANCELED:
        return AttemptOutcome("Stopped", "stopped", "none", "the run was canceled")
    if is_last and run.phase == resources.Phase.TIMED_OUT:
        return AttemptOutcome("Timed out", "infrastructure", "infrastructure",
                              run.message or "the attempt ran past its timeout")
    return AttemptOutcome("Infrastructure failure", "infrastructure", "infrastructure",
                          "the pod ended without recording an outcome (killed, evicted, "
                          "out of memory or node lost); the next attempt resumed from the "
                          "last checkpoint")


def build_timeline(run: handles.RunSummary, tried: Sequence[attempts.Attempt],
                   steps: Sequence[handles.StepSummary], waits: Sequence[WaitSpan],
                   now: datetime) -> Timeline:
    """The bars of the run's attempts, steps and waits on one axis, attempt by attempt."""
    start = min([run.created_at or now, *(a.started_at for a in tried)])
    end = run.finished_at or now
    ends = [a.finished_at for a in tried if a.finished_at] + [
        _step_start(s) + timedelta(milliseconds=s.duration_ms) for s in steps if s.finished_at]
    end = max([end, *ends]) if ends else end
    span = max((end - start).total_seconds(), 0.001)

    def place(begin: datetime, finish: datetime) -> tuple[float, float]:
        left = min(max((begin - start).total_seconds() / span * 100, 0.0), 100.0)
        width = max((finish - begin).total_seconds() / span * 100, MIN_WIDTH)
        return round(left, 3), round(min(width, 100.0 - left + MIN_WIDTH), 3)

    numbers = [a.attempt for a in tried]
    # A wait is checkpointed as a step of its own seq when it ends: its wait row shows it.
    waited = {wait.seq for wait in waits}
    bars: list[Bar] = []
    for index, attempt in enumerate(tried):
        is_last = index == len(tried) - 1
        outcome = classify_attempt(attempt, run, is_last)
        following = tried[index + 1].started_at if not is_last else None
        finish = attempt.finished_at or following or end
        left, width = place(attempt.started_at, finish)
        bars.append(Bar(
            row=f"attempt {attempt.attempt}", kind="attempt", status=outcome.status, left=left,
            width=width, duration=format_span(attempt.started_at, finish),
            title=f"attempt {attempt.attempt}: {outcome.label}"
                  + (f" ({outcome.detail})" if outcome.detail else ""),
            attempt=attempt.attempt))
        window_end = following or datetime.max.replace(tzinfo=attempt.started_at.tzinfo)
        rows: list[tuple[int, Bar]] = []
        for step in steps:
            if step.attempt != attempt.attempt or step.finished_at is None or step.seq in waited:
                continue
            begin = _step_start(step)
            left, width = place(begin, begin + timedelta(milliseconds=step.duration_ms))
            replayed = tuple(n for n in numbers if n > step.attempt)
            rows.append((step.seq, Bar(
                row=step.name, kind="step", status=step.status, left=left, width=width,
                duration=tables.format_milliseconds(step.duration_ms),
                title=f"step {step.seq} {step.name}: {step.status} in attempt {step.attempt}, "
                      f"{tables.format_milliseconds(step.duration_ms)}"
                      + (f"; replayed in attempt {', '.join(map(str, replayed))}"
                         if replayed else ""),
                attempt=step.attempt, seq=step.seq, replayed_in=replayed)))
        for wait in waits:
            if not attempt.started_at <= wait.started_at < window_end:
                continue
            finish = wait.ended_at or end
            left, width = place(wait.started_at, finish)
            what = _describe_wait(wait)
            status = "waiting" if wait.ended_at is None else (
                "timed-out" if wait.timed_out else "waited")
            rows.append((wait.seq, Bar(
                row=what, kind="wait", status=status, left=left, width=width,
                duration=format_span(wait.started_at, finish),
                title=f"{what}: {'waiting since' if wait.ended_at is None else 'from'} "
                      f"{wait.started_at.isoformat(timespec='seconds')}"
                      + (" (timed out)" if wait.timed_out else ""),
                attempt=attempt.attempt, seq=wait.seq)))
        bars.extend(bar for _, bar in sorted(rows, key=lambda item: item[0]))
    ticks = [(round(i * 100 / (TICKS - 1), 3),
              "+" + tables.format_milliseconds(span * 1000 * i / (TICKS - 1)) if i else "0s")
             for i in range(TICKS)]
    return Timeline(start=start, end=end, bars=bars, ticks=ticks)


def _step_start(step: handles.StepSummary) -> datetime:
    assert step.finished_at is not None
    return step.finished_at - timedelta(milliseconds=step.duration_ms)


def format_span(begin: datetime, finish: datetime) -> str:
    """How long from `begin` to `finish`, as the CLI's tables write durations."""
    return tables.format_milliseconds(max((finish - begin).total_seconds(), 0.0) * 1000)


def _describe_wait(wait: WaitSpan) -> str:
    if wait.kind == "event":
        return f"wait for event {wait.key}"
    if wait.kind == "token":
        return "wait for a token"
    return "sleep"

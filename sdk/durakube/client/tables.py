"""Human-readable tables of runs and steps, as the `durakube` CLI prints them.

kubectl's look: upper-case headers, columns left-aligned and separated by three
spaces, empty cells as "-"/"<none>" never as blanks that break `awk`. Pure
functions: callers pass `now`, so output is testable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from durakube.client import handles

EMPTY = "-"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    table = [list(headers), *[[cell or EMPTY for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def format_age(created: datetime | None, now: datetime) -> str:
    """kubectl's age: "42s", "5m", "3h", "12d" (a unit once two of it have passed)."""
    if created is None:
        return EMPTY
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_milliseconds(ms: float) -> str:
    """"850ms", "1.2s", "2m03s"."""
    if ms < 1000:
        return f"{ms:.0f}ms" if ms >= 1 else f"{ms:.2f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def format_runs(runs: Sequence[handles.RunSummary], now: datetime) -> str:
    rows = [[run.name, run.task, run.phase or "", run.reason or "", str(run.attempt),
             run.current_step or "", format_age(run.created_at, now)]
            + (["history"] if run.source == "history" else [""]) for run in runs]
    return format_table(["NAME", "TASK", "PHASE", "REASON", "ATTEMPT", "STEP", "AGE", "SOURCE"],
                        rows)


def format_schedules(schedules: Sequence[handles.ScheduleSummary], now: datetime) -> str:
    """`durakube schedules`: when each schedule ran last and runs next ("in 42s")."""
    rows = [[schedule.name, schedule.schedule + (f" ({schedule.time_zone})" if schedule.time_zone else ""),
             schedule.task, "yes" if schedule.paused else "no",
             format_age(schedule.last_schedule_time, now) + " ago" if schedule.last_schedule_time
             else EMPTY,
             "in " + format_age(now, schedule.next_schedule_time) if schedule.next_schedule_time
             else EMPTY,
             schedule.last_run_name or "", schedule.ready or ""] for schedule in schedules]
    return format_table(["NAME", "SCHEDULE", "TASK", "PAUSED", "LAST", "NEXT", "LAST RUN", "READY"],
                        rows)


def format_run(run: handles.RunSummary, now: datetime) -> str:
    """One run as `key: value` lines (what `durakube get RUN` prints)."""
    error = run.last_error or {}
    fields = [
        ("Name", f"{run.namespace}/{run.name}"), ("Run ID", run.run_id), ("Task", run.task),
        ("Queue", run.queue or ""), ("Phase", run.phase or ""), ("Reason", run.reason or ""),
        ("Message", run.message or ""), ("Attempt", str(run.attempt)),
        ("Step", f"{run.current_step or EMPTY} ({run.completed_steps or 0} completed)"),
        ("Age", format_age(run.created_at, now)),
        ("Finished", run.finished_at.isoformat() if run.finished_at else ""),
        ("Tags", ", ".join(run.tags)),
        ("Metadata", json.dumps(run.metadata, sort_keys=True)[:200] if run.metadata else ""),
        ("Last error", f"{error.get('type')}: {error.get('message')}" if error else ""),
        ("Output", handles.preview(run.output, 200)), ("Source", run.source),
    ]
    if run.pinned_image:
        fields.append(("Pinned image", run.pinned_image))
    if run.replay_of:
        origin = run.replay_of
        fork = f" from step {origin['fromStep']}" if origin.get("fromStep") else ""
        latest = " (on the current Task)" if origin.get("latest") else ""
        fields.append(("Fork of" if fork else "Replay of", f"{origin.get('run')}{fork}{latest}"))
    width = max(len(key) for key, _ in fields) + 1
    return "\n".join(f"{(key + ':').ljust(width)}  {value or EMPTY}" for key, value in fields)


def format_steps(steps: Sequence[handles.StepSummary]) -> str:
    rows = [[str(step.seq), step.name, step.status, str(step.attempt),
             format_milliseconds(step.duration_ms), step.result_preview,
             f"{(step.error or {}).get('type')}: {(step.error or {}).get('message')}"
             if step.error else ""] for step in steps]
    return format_table(["SEQ", "NAME", "STATUS", "ATTEMPT", "DURATION", "RESULT", "ERROR"], rows)

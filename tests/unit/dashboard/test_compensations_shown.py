"""The run page shows a run's compensations: the summary of status.compensation and one
row per recorded undo, newest first, with its status, tries and last error."""

from __future__ import annotations

from datetime import UTC, datetime

from durakube.client import handles
from durakube.dashboard import reading, rendering
from durakube.store import compensations

WHEN = datetime(2026, 11, 1, tzinfo=UTC)


def undo(step_seq: int, name: str, status: compensations.CompensationStatus, tries: int,
         error: dict[str, str] | None = None) -> compensations.Compensation:
    return compensations.Compensation(
        run_id="uid-1", step_seq=step_seq, position=0, name=f"trips:{name}", args={},
        recorded_attempt=1, status=status, tries=tries, error=error,
        completed_attempt=2 if status == "completed" else None, recorded_at=WHEN,
        finished_at=WHEN if status == "completed" else None)


def test_the_run_page_lists_compensations_newest_first_with_the_summary() -> None:
    run = handles.RunSummary(
        name="trip-x", namespace="team-a", run_id="uid-1", task="book-trip", queue=None,
        phase="Compensating", reason="CompensationBackingOff", message="refund down",
        attempt=2, current_step="reserve-car", completed_steps=3, created_at=WHEN,
        finished_at=None, output=None, last_error=None)
    page = reading.RunPage(
        run=run, body={}, compensations=[
            undo(2, "cancel_flight", "completed", 1),
            undo(1, "cancel_hotel", "pending", 1, {"type": "OSError", "message": "refund down"})],
        compensation={"state": "Waiting", "completed": 1, "total": 2, "failed": 1,
                      "attempts": 1, "lastError": {"type": "OSError", "message": "refund down"}})
    html = rendering.render(rendering.build_environment(), "run_live.html", page=page,
                            csrf="s", read_only=False, refresh_seconds=3, has_database=True)
    section = html[html.index('id="compensations"'):]
    assert "Waiting: 1 of 2 ran, 1 failing; 1 attempt(s) in compensation mode" in section
    assert section.index("trips:cancel_flight") < section.index("trips:cancel_hotel")
    assert 'class="pill status-completed">completed' in section
    assert 'class="pill status-pending">pending' in section
    assert "OSError: refund down" in section
    assert 'class="pill big amber" id="phase">Compensating' in html


def test_a_run_without_compensations_shows_no_section() -> None:
    run = handles.RunSummary(
        name="trip-y", namespace="team-a", run_id="uid-2", task="book-trip", queue=None,
        phase="Failed", reason="Failed", message="", attempt=1, current_step=None,
        completed_steps=0, created_at=WHEN, finished_at=None, output=None, last_error=None)
    html = rendering.render(rendering.build_environment(), "run_live.html",
                            page=reading.RunPage(run=run, body={}), csrf="s", read_only=False,
                            refresh_seconds=3, has_database=True)
    assert 'id="compensations"' not in html

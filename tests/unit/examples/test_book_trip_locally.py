"""The saga example under the local runner: a trip that cannot be completed is undone,
newest first; one that can keeps its bookings.

The bookings live in the examples' own database (here the test's database).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from durakube.testing import AsyncLocalRunner

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
book_trip = importlib.import_module("book_trip")


@pytest.fixture
async def runner(database_dsn: str, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[AsyncLocalRunner]:
    monkeypatch.setenv("EXAMPLES_DATABASE_URL", database_dsn)
    async with AsyncLocalRunner(database_dsn) as opened:
        yield opened


async def bookings(database_dsn: str, trip_id: str) -> list[tuple[str, bool]]:
    """(kind, cancelled) of the trip's bookings, in the order they were cancelled (the
    ones kept last)."""
    connection = await asyncpg.connect(database_dsn)
    try:
        rows = await connection.fetch("""
            SELECT kind, cancelled_at IS NOT NULL AS cancelled FROM examples.trip_bookings
            WHERE trip_id = $1 ORDER BY cancelled_at NULLS LAST, booked_at""", trip_id)
    finally:
        await connection.close()
    return [(row["kind"], row["cancelled"]) for row in rows]


async def test_a_trip_that_cannot_be_completed_is_undone_newest_first(
        runner: AsyncLocalRunner, database_dsn: str) -> None:
    result = await runner.run(book_trip.book_trip,
                              {"tripId": "trip-1", "city": "atlantis", "fare": 420})

    assert result.phase == "Failed"
    assert result.error is not None and "no car left in atlantis" in result.error["message"]
    assert [(c.name, c.status) for c in result.compensations] == [
        ("book_trip:refund_flight", "completed"), ("book_trip:cancel_hotel", "completed")]
    assert await bookings(database_dsn, "trip-1") == [("flight", True), ("hotel", True)]


async def test_a_completed_trip_keeps_its_bookings(runner: AsyncLocalRunner,
                                                   database_dsn: str) -> None:
    result = await runner.run(book_trip.book_trip, {"tripId": "trip-2", "city": "oslo", "fare": 99})

    assert result.phase == "Succeeded", result.error
    assert result.output == {"hotel": "trip-2:hotel", "flight": "trip-2:flight",
                             "car": "trip-2:car"}
    assert [c.status for c in result.compensations] == ["pending", "pending"]
    assert await bookings(database_dsn, "trip-2") == [("hotel", False), ("flight", False),
                                                      ("car", False)]

"""Compensations: the undo a completed step registered, one row per (run, step seq, position).

A worker records them as its steps complete (`working.record_compensation`) and, in
an attempt in compensation mode, loads and checkpoints them (`working.
load_compensations`, `working.finish_compensation`), each call fenced like every
worker call (`schema`, migration 19). What is here reads them, for the operator
(how many ran, how many are left) and the dashboard. Functions take a pool or a
connection; none commits on behalf of a caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from durakube.store import pools

CompensationStatus = Literal["pending", "completed"]


@dataclass(frozen=True)
class Compensation:
    run_id: str
    step_seq: int
    position: int
    # The undo function's import name, "module:qualified.name".
    name: str
    # {"args": [...], "kwargs": {...}}, as JSON.
    args: dict[str, Any]
    recorded_attempt: int
    status: CompensationStatus
    # Failed tries so far, plus one for the try that completed it.
    tries: int
    # The error of its last failed try (kept once it completed, for history).
    error: dict[str, Any] | None
    completed_attempt: int | None
    recorded_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_record(cls, record: Any) -> Compensation:
        return cls(**dict(record))


@dataclass(frozen=True)
class Summary:
    """A run's compensations at a glance."""

    total: int
    completed: int
    # Pending ones whose last try failed.
    failing: int

    @property
    def pending(self) -> int:
        return self.total - self.completed


NONE = Summary(total=0, completed=0, failing=0)


async def load_compensations(db: pools.Database, run_id: str) -> list[Compensation]:
    """The run's compensations, newest first (the order they run in)."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT * FROM durakube.compensations WHERE run_id = $1
            ORDER BY step_seq DESC, position DESC""", run_id)
    return [Compensation.from_record(record) for record in records]


async def summarize_compensations(db: pools.Database, run_id: str) -> Summary:
    """How many compensations the run recorded, how many completed and how many failed
    their last try; one round trip (read when an attempt of the run failed)."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow("""
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status = 'pending' AND error IS NOT NULL) AS failing
            FROM durakube.compensations WHERE run_id = $1""", run_id)
    return Summary(total=int(record["total"]), completed=int(record["completed"]),
                   failing=int(record["failing"]))

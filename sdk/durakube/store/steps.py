"""Steps: one row per finished step of a run, keyed by (run_id, seq).

A worker records each step as it finishes and loads its run's recorded steps
before replaying them, through its own functions (`working.record_step`,
`working.load_steps`): one round trip per step, the step's row and nothing else.
The step's row carries `ctx.state` as it was when the step finished, so the run's
latest state is its latest step's (the run's row gets it at the attempt's end).
The first record of a (run_id, seq) wins: a second one changes nothing and
reports False, so a late writer can adopt the recorded result instead.

What is here reads steps, for the operator and the client. Functions take a pool
or a connection; none commits on behalf of a caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from durakube.store import pools

StepStatus = Literal["succeeded", "failed"]


@dataclass(frozen=True)
class Step:
    run_id: str
    seq: int
    name: str
    status: StepStatus
    result: Any
    error: dict[str, Any] | None
    state: dict[str, Any]
    attempt: int
    started_at: datetime
    finished_at: datetime
    duration_ms: float

    @classmethod
    def from_record(cls, record: Any) -> Step:
        return cls(**dict(record))


async def load_steps(db: pools.Database, run_id: str) -> list[Step]:
    """The run's recorded steps, in sequence order."""
    async with pools.connection(db) as conn:
        records = await conn.fetch(
            "SELECT * FROM durakube.steps WHERE run_id = $1 ORDER BY seq", run_id)
    return [Step.from_record(record) for record in records]


@dataclass(frozen=True)
class Progress:
    completed: int
    last_name: str | None
    # The run's metadata (`ctx.update_metadata`); None when its task never set any.
    metadata: dict[str, Any] | None = None


async def summarize_steps(db: pools.Database, run_id: str) -> Progress:
    """How many steps the run has recorded, the name of the latest and the run's metadata
    (for its status)."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow("""
            SELECT count(*) AS completed,
                   (SELECT name FROM durakube.steps WHERE run_id = $1
                    ORDER BY seq DESC LIMIT 1) AS last_name,
                   (SELECT metadata FROM durakube.run_metadata WHERE run_id = $1) AS metadata
            FROM durakube.steps WHERE run_id = $1""", run_id)
    return Progress(completed=int(record["completed"]), last_name=record["last_name"],
                    metadata=record["metadata"])


async def attempt_step_durations(db: pools.Database, run_id: str, attempt: int) -> list[float]:
    """How long each step that `attempt` recorded ran, in seconds (for the operator's metrics)."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT duration_ms FROM durakube.steps WHERE run_id = $1 AND attempt = $2
            ORDER BY seq""", run_id, attempt)
    return [float(record["duration_ms"]) / 1000.0 for record in records]

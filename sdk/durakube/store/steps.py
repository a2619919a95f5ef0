"""Steps: one row per finished step of a run, keyed by (run_id, seq).

The worker's task context records each step as it finishes (`record_step`) and
loads a run's recorded steps before replaying them (`load_steps`). Recording is
one statement, so one round trip: the step row and the run's `state` are written
together by a data-modifying CTE (the state only when it changed). The first record of a (run_id, seq) wins: a
second one changes nothing and reports False, so a late writer can adopt the
recorded result instead.

Functions take a pool or a connection; none commits on behalf of a caller's
transaction.
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


# The run's state is rewritten only when it changed: an unchanged state (most
# steps) costs no new version of the runs row.
_RECORD_STEP = """
    WITH step AS (
        INSERT INTO durakube.steps (run_id, seq, name, status, result, error, state,
                                    attempt, started_at, finished_at, duration_ms)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (run_id, seq) DO NOTHING
        RETURNING run_id, state
    ), run AS (
        UPDATE durakube.runs SET state = step.state, updated_at = now()
        FROM step
        WHERE runs.run_id = step.run_id AND runs.state IS DISTINCT FROM step.state
    )
    SELECT count(*) FROM step
"""


async def record_step(db: pools.Database, step: Step) -> bool:
    """Records a finished step and the run's state with it; False if already recorded."""
    # The hot path of every task: a plain branch rather than context-manager layers.
    if pools.is_pool(db):
        async with db.acquire() as conn:
            return await _record_step_txn(conn, step)
    return await _record_step_txn(db, step)


async def _record_step_txn(conn: pools.Database, step: Step) -> bool:
    inserted = await conn.fetchval(
        _RECORD_STEP, step.run_id, step.seq, step.name, step.status, step.result, step.error,
        step.state, step.attempt, step.started_at, step.finished_at, step.duration_ms)
    # 0 when (run_id, seq) was recorded before: the first record stands.
    return bool(inserted == 1)


async def load_steps(db: pools.Database, run_id: str) -> list[Step]:
    """The run's recorded steps, in sequence order."""
    async with pools.connection(db) as conn:
        records = await conn.fetch(
            "SELECT * FROM durakube.steps WHERE run_id = $1 ORDER BY seq", run_id)
    return [Step.from_record(record) for record in records]


async def load_step(db: pools.Database, run_id: str, seq: int) -> Step | None:
    """One recorded step, or None."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.steps WHERE run_id = $1 AND seq = $2", run_id, seq)
    return None if record is None else Step.from_record(record)


@dataclass(frozen=True)
class Progress:
    completed: int
    last_name: str | None


async def summarize_steps(db: pools.Database, run_id: str) -> Progress:
    """How many steps the run has recorded and the name of the latest (for its status)."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow("""
            SELECT count(*) AS completed,
                   (SELECT name FROM durakube.steps WHERE run_id = $1
                    ORDER BY seq DESC LIMIT 1) AS last_name
            FROM durakube.steps WHERE run_id = $1""", run_id)
    return Progress(completed=int(record["completed"]), last_name=record["last_name"])


async def attempt_step_durations(db: pools.Database, run_id: str, attempt: int) -> list[float]:
    """How long each step that `attempt` recorded ran, in seconds (for the operator's metrics)."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT duration_ms FROM durakube.steps WHERE run_id = $1 AND attempt = $2
            ORDER BY seq""", run_id, attempt)
    return [float(record["duration_ms"]) / 1000.0 for record in records]

"""Steps: one row per finished step of a run, keyed by (run_id, seq).

A worker records each step as it finishes and loads its run's recorded steps
before replaying them, through its own functions (`working.record_step`,
`working.load_steps`): one round trip per step, the step's row and nothing else.
The step's row carries `ctx.state` as it was when the step finished, so the run's
latest state is its latest step's (the run's row gets it at the attempt's end).
The first record of a (run_id, seq) wins: a second one changes nothing and
reports False, so a late writer can adopt the recorded result instead.

What is here reads steps, for the operator and the client, and copies the steps of a
fork (`copy_steps_txn`, the operator's, when it registers the new run). Functions take a pool
or a connection; none commits on behalf of a caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
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


async def recorded_seqs(db: pools.Database, run_id: str) -> list[int]:
    """The sequence numbers of the run's recorded steps, in order."""
    async with pools.connection(db) as conn:
        records = await conn.fetch(
            "SELECT seq FROM durakube.steps WHERE run_id = $1 ORDER BY seq", run_id)
    return [int(record["seq"]) for record in records]


def fork_refusal(recorded: Sequence[Step], from_step: int) -> str | None:
    """Why a run whose recorded steps are `recorded` cannot be forked from `from_step`
    (None: it can). The step must be one it recorded; and a child run triggered before
    it must not be waited for from it on: the fork reuses the trigger (the child is not
    triggered again) and the child's end was already delivered to the forked run."""
    seqs = [step.seq for step in recorded]
    if from_step not in seqs:
        shown = f"steps {seqs[0]} to {seqs[-1]}" if seqs else "no steps"
        return (f"it recorded {shown}, not step {from_step} (`durakube steps RUN` lists "
                "them)")
    triggered = {step.result: step.seq for step in recorded
                 if step.seq < from_step and step.name.startswith(TRIGGER_PREFIX)
                 and isinstance(step.result, str)}
    for step in recorded:
        child = step.name.removeprefix(WAIT_FOR_RUN_PREFIX)
        if step.seq >= from_step and step.name.startswith(WAIT_FOR_RUN_PREFIX) \
                and child in triggered:
            return (f"step {step.seq} waits for child run {child}, which step "
                    f"{triggered[child]} triggered before step {from_step}: fork from step "
                    f"{triggered[child]} (a new child is triggered) or after step {step.seq}")
    return None


# The names `ctx.trigger` and `ctx.wait_for_run` give their steps (`triggering`).
TRIGGER_PREFIX = "trigger:"
WAIT_FOR_RUN_PREFIX = "wait-for-run:"


async def copy_steps_txn(conn: pools.Database, source_run_id: str, run_id: str, namespace: str,
                         before_seq: int) -> int:
    """Copies the steps `source_run_id` recorded before `before_seq` into `run_id` (a fork),
    with their results, errors and `ctx.state`, as attempt 0 (recorded before the run's
    first attempt), and gives the run's row the state of the last one; returns how many.

    Only from a run of the same `namespace`: a fork never reads another tenant's steps.
    Idempotent (a step already there is kept). Does not commit: the caller registers the
    run in the same transaction, so no attempt can start before its steps are there."""
    copied = await conn.fetchval("""
        WITH copied AS (
            INSERT INTO durakube.steps (run_id, seq, name, status, result, error, state, attempt,
                                        started_at, finished_at, duration_ms)
            SELECT $2, s.seq, s.name, s.status, s.result, s.error, s.state, 0,
                   s.started_at, s.finished_at, s.duration_ms
            FROM durakube.steps s JOIN durakube.runs r ON r.run_id = s.run_id
            WHERE s.run_id = $1 AND r.namespace = $3 AND s.seq < $4
            ON CONFLICT (run_id, seq) DO NOTHING
            RETURNING seq, state)
        SELECT count(*) FROM copied""", source_run_id, run_id, namespace, before_seq)
    await conn.execute("""
        UPDATE durakube.runs SET state = coalesce((
            SELECT s.state FROM durakube.steps s WHERE s.run_id = $1 ORDER BY s.seq DESC LIMIT 1),
            state)
        WHERE run_id = $1""", run_id)
    return int(copied)

"""Attempts: one row per pod that ran (or runs) a run, and the outcome it recorded.

The operator (or the worker, idempotently) starts an attempt (`start_attempt`);
the worker writes its outcome (`record_outcome`), in the same transaction as its
last checkpoint when that checkpoint is still pending (a failed step whose error
ended the attempt), together with the run's state, output and error. The operator
reads it (`read_outcome`): None means the worker died before recording anything,
an infrastructure failure; the run resumes from its last checkpoint.

An outcome carries the retry policy it was classified under only when the
operator cannot know that policy itself: the task's decorator set it, and neither
the TaskRun nor the Task spec has one.

The worker never moves `runs.status`: the operator owns the run's phase and the
attempt budget. Functions take a pool or a connection; none commits on behalf of
a caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from durakube import retry
from durakube.store import pools, steps

OutcomeKind = Literal["succeeded", "failed", "retry", "suspended"]


@dataclass(frozen=True)
class Outcome:
    """What an attempt ended with: output when succeeded, error otherwise.

    `retry_at` is set only when the task asked for a time (`RetryableError(retry_at=...)`);
    otherwise the operator computes the back-off. `policy` is the decorator's retry
    policy when that one classified the error; None when a spec's policy did.
    """

    kind: OutcomeKind
    output: Any = None
    error: dict[str, Any] | None = None
    retry_at: datetime | None = None
    policy: retry.Retry | None = None

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.kind, "output": self.output, "error": self.error,
                "retry_at": self.retry_at.isoformat() if self.retry_at else None,
                "policy": _policy_json(self.policy)}


@dataclass(frozen=True)
class Attempt:
    run_id: str
    attempt: int
    pod_name: str | None
    outcome: OutcomeKind | None
    output: Any
    error: dict[str, Any] | None
    retry_at: datetime | None
    policy: retry.Retry | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_record(cls, record: Any) -> Attempt:
        fields = dict(record)
        return cls(**{**fields, "policy": _policy_from_json(fields["policy"])})


def _policy_json(policy: retry.Retry | None) -> dict[str, Any] | None:
    return policy.model_dump(mode="json") if policy is not None else None


def _policy_from_json(data: dict[str, Any] | None) -> retry.Retry | None:
    return retry.Retry.model_validate(data) if data is not None else None


async def start_attempt(db: pools.Database, run_id: str, attempt: int,
                        pod_name: str | None = None) -> Attempt:
    """Creates the attempt's row and makes it the run's current one (idempotent)."""
    async with pools.transaction(db) as conn:
        return await _start_attempt_txn(conn, run_id, attempt, pod_name)


async def _start_attempt_txn(conn: pools.Database, run_id: str, attempt: int,
                             pod_name: str | None) -> Attempt:
    record = await conn.fetchrow("""
        INSERT INTO durakube.attempts (run_id, attempt, pod_name) VALUES ($1, $2, $3)
        ON CONFLICT (run_id, attempt) DO UPDATE
            SET pod_name = coalesce(attempts.pod_name, EXCLUDED.pod_name)
        RETURNING *""", run_id, attempt, pod_name)
    await conn.execute("""
        UPDATE durakube.runs SET attempt = $2, updated_at = now()
        WHERE run_id = $1 AND attempt < $2""", run_id, attempt)
    return Attempt.from_record(record)


async def record_outcome(db: pools.Database, run_id: str, attempt: int, outcome: Outcome, *,
                         state: dict[str, Any] | None = None,
                         last_step: steps.Step | None = None) -> bool:
    """Writes the attempt's outcome, with `last_step` and the run's state, atomically.

    Returns False (and writes nothing) when the attempt already has an outcome: the
    first one recorded stands.
    """
    async with pools.transaction(db) as conn:
        return await _record_outcome_txn(conn, run_id, attempt, outcome, state, last_step)


async def _record_outcome_txn(conn: pools.Database, run_id: str, attempt: int,
                              outcome: Outcome, state: dict[str, Any] | None,
                              last_step: steps.Step | None) -> bool:
    # Lock the attempt's row first, so two writers of one outcome serialise here.
    recorded = await conn.fetchrow("""
        INSERT INTO durakube.attempts (run_id, attempt) VALUES ($1, $2)
        ON CONFLICT (run_id, attempt) DO UPDATE SET run_id = EXCLUDED.run_id
        RETURNING outcome""", run_id, attempt)
    if recorded["outcome"] is not None:
        return False
    if last_step is not None:
        await steps.record_step(conn, last_step)
    await conn.execute("""
        UPDATE durakube.attempts
        SET outcome = $3, output = $4, error = $5, retry_at = $6, policy = $7,
            finished_at = now()
        WHERE run_id = $1 AND attempt = $2""",
        run_id, attempt, outcome.kind, outcome.output, outcome.error, outcome.retry_at,
        _policy_json(outcome.policy))
    await conn.execute("""
        UPDATE durakube.runs
        SET state = coalesce($2, state),
            output = CASE WHEN $3 = 'succeeded' THEN $4 ELSE output END,
            error = CASE WHEN $3 = 'succeeded' THEN NULL ELSE coalesce($5, error) END,
            updated_at = now()
        WHERE run_id = $1""", run_id, state, outcome.kind, outcome.output, outcome.error)
    return True


async def read_outcome(db: pools.Database, run_id: str, attempt: int) -> Outcome | None:
    """The attempt's recorded outcome; None when the worker recorded none (it died)."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow("""
            SELECT outcome, output, error, retry_at, policy FROM durakube.attempts
            WHERE run_id = $1 AND attempt = $2 AND outcome IS NOT NULL""", run_id, attempt)
    if record is None:
        return None
    return Outcome(kind=record["outcome"], output=record["output"], error=record["error"],
                   retry_at=record["retry_at"], policy=_policy_from_json(record["policy"]))


async def load_attempts(db: pools.Database, run_id: str) -> list[Attempt]:
    """The run's attempts, oldest first."""
    async with pools.connection(db) as conn:
        records = await conn.fetch(
            "SELECT * FROM durakube.attempts WHERE run_id = $1 ORDER BY attempt", run_id)
    return [Attempt.from_record(record) for record in records]

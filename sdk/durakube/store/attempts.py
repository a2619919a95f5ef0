"""Attempts: one row per pod that ran (or runs) a run, and the outcome it recorded.

The operator starts an attempt (`start_attempt`), storing the hash of the secret
it hands to that attempt's pod (`new_secret`, `hash_secret`); the worker, through
its functions (`store.working`), writes the outcome in the same transaction as its
last checkpoint when that checkpoint is still pending (a failed step whose error
ended the attempt), together with the run's state, output and error. The operator
reads it (`read_outcome`): None means the worker died before recording anything,
an infrastructure failure; the run resumes from its last checkpoint. Whatever ends
an attempt revokes its secret: its outcome, a newer attempt, the operator seeing
its pod end (`revoke_secrets`), the run finishing (`runs.set_run_status`).

An outcome carries the retry policy it was classified under only when the
operator cannot know that policy itself: the task's decorator set it, and neither
the TaskRun nor the Task spec has one.

The worker never moves `runs.status`: the operator owns the run's phase and the
attempt budget. Functions take a pool or a connection; none commits on behalf of
a caller's transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from durakube import retry
from durakube.store import keyrings, pools

OutcomeKind = Literal["succeeded", "failed", "retry", "suspended"]

# Bytes of randomness in an attempt's secret: 256 bits.
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh attempt secret (256 random bits, URL-safe text), for one attempt's pod only."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> bytes:
    """What Postgres keeps of a secret: its SHA-256, as `check_attempt` computes it."""
    return hashlib.sha256(secret.encode()).digest()


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
        # The credential's hash stays in Postgres: no caller has any use for it.
        fields.pop("secret_hash", None)
        return cls(**{**fields, "policy": _policy_from_json(fields["policy"])})


def _policy_json(policy: retry.Retry | None) -> dict[str, Any] | None:
    return policy.model_dump(mode="json") if policy is not None else None


def _policy_from_json(data: dict[str, Any] | None) -> retry.Retry | None:
    return retry.Retry.model_validate(data) if data is not None else None


async def start_attempt(db: pools.Database, run_id: str, attempt: int,
                        pod_name: str | None = None, *, secret: str | None = None) -> Attempt:
    """Creates the attempt's row and makes it the run's current one (idempotent).

    With `secret`, its hash becomes the attempt's credential (replacing an earlier one,
    unless the attempt has ended); without, the credential is left as it was. Earlier
    attempts' credentials are revoked: only the current attempt may write.
    """
    async with pools.transaction(db) as conn:
        return await _start_attempt_txn(conn, run_id, attempt, pod_name,
                                        None if secret is None else hash_secret(secret))


async def start_attempt_with_key(db: pools.Database, run_id: str, attempt: int, pod_name: str, *,
                                 namespace: str, dsn: bytes,
                                 phase: str | None = None) -> keyrings.AttemptKey | None:
    """Starts the attempt (as `start_attempt`) with a key of the namespace's rings as its
    credential: the key it claimed before, else the first free one of the rings for the
    workers' login `dsn` (its hash); the same key on every call for the same attempt.
    None when no ring has a free key: the attempt's row is there, without a credential;
    add a ring and call again. With `phase` (not a final one), the run's row gets it.
    One statement (`durakube.operator_start_attempt`, a single transaction)."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.operator_start_attempt($1, $2, $3, $4, $5, $6)",
            run_id, attempt, pod_name, namespace, dsn, phase)
    if record is None:
        return None
    return keyrings.AttemptKey(record["key_ring"], record["key_slot"], record["claimed_now"])


async def fence_txn(conn: pools.Database, run_id: str) -> None:
    """Waits out the run's workers' writes in flight and holds them off until the
    caller's transaction ends: take it before revoking a secret, and before any other
    write of the transaction (a worker holding the fence may wait on those rows)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('durakube-attempt:' || $1, 0))",
                       run_id)


async def _start_attempt_txn(conn: pools.Database, run_id: str, attempt: int,
                             pod_name: str | None, secret_hash: bytes | None,
                             phase: str | None = None) -> Attempt:
    await fence_txn(conn, run_id)
    record = await conn.fetchrow("""
        INSERT INTO durakube.attempts (run_id, attempt, pod_name, secret_hash)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (run_id, attempt) DO UPDATE
            SET pod_name = coalesce(attempts.pod_name, EXCLUDED.pod_name),
                secret_hash = CASE WHEN attempts.outcome IS NULL
                                   THEN coalesce(EXCLUDED.secret_hash, attempts.secret_hash)
                              END
        RETURNING *""", run_id, attempt, pod_name, secret_hash)
    await conn.execute("""
        UPDATE durakube.runs SET attempt = greatest(attempt, $2), status = coalesce($3, status),
                                 updated_at = now()
        WHERE run_id = $1 AND (attempt < $2 OR $3::text IS NOT NULL)""", run_id, attempt, phase)
    await conn.execute("""
        UPDATE durakube.attempts SET secret_hash = NULL
        WHERE run_id = $1 AND attempt < $2 AND secret_hash IS NOT NULL""", run_id, attempt)
    return Attempt.from_record(record)


async def revoke_secrets(db: pools.Database, run_id: str) -> int:
    """Revokes the credentials of every attempt of the run (its pod ended, or the run is
    over); returns how many were live."""
    async with pools.transaction(db) as conn:
        await fence_txn(conn, run_id)
        status = await conn.execute("""
            UPDATE durakube.attempts SET secret_hash = NULL
            WHERE run_id = $1 AND secret_hash IS NOT NULL""", run_id)
    return int(status.split()[-1])


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

"""The worker's calls to Postgres: one function per `worker_*` SQL function of the schema.

A worker pod's database login may do nothing but execute those functions (see
`schema`, "Who may do what"), each authenticated by the attempt's `Credential`:
the run, the attempt and the secret the operator handed to that attempt's pod. So
every call here is `SELECT durakube.worker_...($1, $2, $3, ...)`, one round trip,
and returns the same data classes as the table modules (`runs.Run`, `steps.Step`,
`waitpoints.Waitpoint`), so the worker's code keeps its shape.

Why a module of its own rather than a worker branch in each table module: the
table modules are the operator's (direct SQL on tables its role may touch); this
module is the whole surface a worker has, side by side with the SQL it calls,
and a worker has no code path that could try a table. A credential that Postgres
refuses (a newer attempt started, the outcome is recorded, the run is over, or
the secret is wrong) raises `errors.AttemptRevoked`: the worker must stop writing.

Called by `worker`, `context`, `compensating`, `waiting` and `triggering`. Functions take a pool
or a connection and commit nothing on behalf of a caller's transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from durakube import errors
from durakube.store import attempts, compensations, pools, runs, steps, waitpoints


@dataclass(frozen=True)
class Credential:
    """Who a worker is: attempt `attempt` of run `run_id`, proven by `secret`."""

    run_id: str
    attempt: int
    secret: str = field(repr=False)

    @property
    def args(self) -> tuple[str, int, str]:
        return self.run_id, self.attempt, self.secret


@asynccontextmanager
async def _refusals(credential: Credential) -> AsyncIterator[None]:
    """Turns Postgres's refusal of the credential into `AttemptRevoked`."""
    try:
        yield
    except asyncpg.InsufficientPrivilegeError:
        raise errors.AttemptRevoked(credential.run_id, credential.attempt) from None


async def start_attempt(db: pools.Database, credential: Credential,
                        pod_name: str | None = None) -> runs.Run:
    """The run, once the credential is checked; records the pod's name on the attempt."""
    async with _refusals(credential), pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.worker_start_attempt($1, $2, $3, $4)",
            *credential.args, pod_name)
    if record is None:
        raise errors.RunNotFound(credential.run_id)
    return runs.Run.from_record(record)


async def load_steps(db: pools.Database, credential: Credential) -> list[steps.Step]:
    """The run's recorded steps, in sequence order."""
    async with _refusals(credential), pools.connection(db) as conn:
        records = await conn.fetch("SELECT * FROM durakube.worker_load_steps($1, $2, $3)",
                                   *credential.args)
    return [steps.Step.from_record(record) for record in records]


async def load_step(db: pools.Database, credential: Credential, seq: int) -> steps.Step | None:
    async with _refusals(credential), pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.worker_load_step($1, $2, $3, $4)", *credential.args, seq)
    return None if record is None else steps.Step.from_record(record)


_RECORD_STEP = ("SELECT durakube.worker_record_step("
                "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")


async def record_step(db: pools.Database, credential: Credential, step: steps.Step) -> bool:
    """Records a finished step of the attempt (with ctx.state as it finished) in one round
    trip; False if the seq was recorded before (the first record stands)."""
    # The hot path of every task: a plain branch rather than context-manager layers.
    try:
        if pools.is_pool(db):
            async with db.acquire() as conn:
                return await _record_step(conn, credential, step)
        return await _record_step(db, credential, step)
    except asyncpg.InsufficientPrivilegeError:
        raise errors.AttemptRevoked(credential.run_id, credential.attempt) from None


async def _record_step(conn: Any, credential: Credential, step: steps.Step) -> bool:
    return bool(await conn.fetchval(
        _RECORD_STEP, *credential.args, step.seq, step.name, step.status, step.result,
        step.error, step.state, step.started_at, step.finished_at, step.duration_ms))


async def record_outcome(db: pools.Database, credential: Credential,
                         outcome: attempts.Outcome, *, state: dict[str, Any] | None = None,
                         last_step: steps.Step | None = None) -> None:
    """Writes the attempt's outcome, with `last_step` and the run's state, atomically, and
    revokes the credential: nothing more can be written with it."""
    step_args: tuple[Any, ...] = (None,) * 9
    if last_step is not None:
        step_args = (last_step.seq, last_step.name, last_step.status, last_step.result,
                     last_step.error, last_step.state, last_step.started_at,
                     last_step.finished_at, last_step.duration_ms)
    async with _refusals(credential), pools.connection(db) as conn:
        await conn.fetchval(
            "SELECT durakube.worker_record_outcome($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " $11, $12, $13, $14, $15, $16, $17, $18)",
            *credential.args, outcome.kind, outcome.output, outcome.error, outcome.retry_at,
            outcome.to_json()["policy"], state, *step_args)


async def load_waitpoint(db: pools.Database, credential: Credential,
                         seq: int) -> waitpoints.Waitpoint | None:
    async with _refusals(credential), pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.worker_load_waitpoint($1, $2, $3, $4)",
            *credential.args, seq)
    return None if record is None else waitpoints.Waitpoint.from_record(record)


async def load_waitpoint_by_token(db: pools.Database, credential: Credential,
                                  token: str) -> waitpoints.Waitpoint | None:
    """The run's own waitpoint of `token`; None for a token of another run."""
    async with _refusals(credential), pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.worker_load_waitpoint_by_token($1, $2, $3, $4)",
            *credential.args, token)
    return None if record is None else waitpoints.Waitpoint.from_record(record)


async def create_waitpoint(db: pools.Database, credential: Credential, *, seq: int,
                           kind: waitpoints.Kind, wake_at: datetime | None,
                           token: str | None = None) -> waitpoints.Waitpoint:
    """Records a sleep or a token wait (idempotent per seq: a replay gets the first one)."""
    async with _refusals(credential), pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.worker_create_waitpoint($1, $2, $3, $4, $5, $6, $7)",
            *credential.args, seq, kind, wake_at, token)
    return waitpoints.Waitpoint.from_record(record)


async def wait_for_event(db: pools.Database, credential: Credential, *, seq: int, key: str,
                         wake_at: datetime | None) -> waitpoints.Waitpoint:
    """Starts waiting for an event on `key`, taking a buffered one if there is one (then
    the returned waitpoint is already completed)."""
    async with _refusals(credential), pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.worker_wait_for_event($1, $2, $3, $4, $5, $6)",
            *credential.args, seq, key, wake_at)
    return waitpoints.Waitpoint.from_record(record)


async def request_child_run(db: pools.Database, credential: Credential, *, seq: int, task: str,
                            payload: Any, options: dict[str, Any]) -> tuple[str, str]:
    """Asks for a child run (once per parent step); returns the child's (namespace, name)."""
    async with _refusals(credential), pools.connection(db) as conn:
        record = await conn.fetchrow(
            "SELECT * FROM durakube.worker_request_child_run($1, $2, $3, $4, $5, $6, $7)",
            *credential.args, seq, task, payload, options)
    return str(record["child_namespace"]), str(record["child_name"])


async def append_log(db: pools.Database, credential: Credential, data: bytes) -> int:
    """Appends `data` to the attempt's stored log (bounded in SQL: `schema`, "Attempt
    logs"); returns the bytes ever appended to it."""
    async with _refusals(credential), pools.connection(db) as conn:
        return int(await conn.fetchval("SELECT durakube.worker_append_log($1, $2, $3, $4)",
                                       *credential.args, data))


async def load_metadata(db: pools.Database, credential: Credential) -> dict[str, Any]:
    """The run's metadata (`ctx.metadata`), as its previous attempts left it."""
    async with _refusals(credential), pools.connection(db) as conn:
        return dict(await conn.fetchval("SELECT durakube.worker_load_metadata($1, $2, $3)",
                                        *credential.args))


async def update_metadata(db: pools.Database, credential: Credential,
                          patch: dict[str, Any]) -> dict[str, Any]:
    """Merges `patch` into the run's metadata (None removes a key); the result."""
    async with _refusals(credential), pools.connection(db) as conn:
        try:
            return dict(await conn.fetchval(
                "SELECT durakube.worker_update_metadata($1, $2, $3, $4)", *credential.args, patch))
        except asyncpg.ProgramLimitExceededError as error:
            raise errors.ValueRefused("ctx.update_metadata", str(error)) from None


async def record_compensation(db: pools.Database, credential: Credential, *, step_seq: int,
                              position: int, name: str, args: dict[str, Any]) -> bool:
    """Records the undo of completed step `step_seq` (its `position`-th); False when it was
    recorded before (a replay: the first record stands)."""
    async with _refusals(credential), pools.connection(db) as conn:
        return bool(await conn.fetchval(
            "SELECT durakube.worker_record_compensation($1, $2, $3, $4, $5, $6, $7)",
            *credential.args, step_seq, position, name, args))


async def load_compensations(db: pools.Database,
                             credential: Credential) -> list[compensations.Compensation]:
    """The run's compensations, newest first."""
    async with _refusals(credential), pools.connection(db) as conn:
        records = await conn.fetch(
            "SELECT * FROM durakube.worker_load_compensations($1, $2, $3)", *credential.args)
    return [compensations.Compensation.from_record(record) for record in records]


async def finish_compensation(db: pools.Database, credential: Credential, *, step_seq: int,
                              position: int, error: dict[str, Any] | None = None) -> bool:
    """Checkpoints a compensation: completed (no `error`) or one more failed try; False
    when it had completed before."""
    async with _refusals(credential), pools.connection(db) as conn:
        return bool(await conn.fetchval(
            "SELECT durakube.worker_finish_compensation($1, $2, $3, $4, $5, $6)",
            *credential.args, step_seq, position, error))


async def end_compensating(db: pools.Database, credential: Credential,
                           outcome: attempts.Outcome) -> None:
    """Records the outcome of an attempt in compensation mode ("succeeded" or "retry") and
    revokes the credential; the run's own output and error stay as they were."""
    async with _refusals(credential), pools.connection(db) as conn:
        await conn.fetchval("SELECT durakube.worker_end_compensating($1, $2, $3, $4, $5, $6)",
                            *credential.args, outcome.kind, outcome.output, outcome.error)

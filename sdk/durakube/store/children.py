"""Child runs: TaskRuns a running task asks for, created by the operator on its behalf.

A worker pod holds no Kubernetes credentials, so `ctx.trigger` records the request
(`working.request_child_run`, idempotent per parent step, stamped with the parent's
attempt) and the operator creates the TaskRun (`unsubmitted_child_runs`,
`mark_submitted`), or refuses it (`mark_rejected`). A child's end is sent as an
event on `result_key(namespace, name)`, so the parent's wait takes it whether it
started waiting before or after the child finished.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from durakube.store import pools

_NAME_LIMIT = 253


@dataclass(frozen=True)
class ChildRun:
    """A request as a worker wrote it. Nothing in it is trusted for a Kubernetes write:
    the operator reads the parent's TaskRun (found through `parent_namespace` and
    `parent_name`, the operator's own registration) and checks its uid."""

    parent_run_id: str
    seq: int
    task: str
    payload: Any
    options: dict[str, Any]
    parent_namespace: str
    parent_name: str
    # Whether the request was written by the attempt it names, while that attempt was live.
    written_live: bool


def result_key(namespace: str, name: str) -> str:
    """The event key a child run's result is sent on."""
    return f"durakube.io/run/{namespace}/{name}"


def child_name(parent_name: str, seq: int) -> str:
    """`<parent>-c<seq>`: deterministic, so a replayed trigger names the same child."""
    name = f"{parent_name}-c{seq}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(parent_name.encode()).hexdigest()[:8]
    return f"{parent_name[:_NAME_LIMIT - 20]}-{digest}-c{seq}"


async def unsubmitted_child_runs(db: pools.Database, limit: int = 200) -> list[ChildRun]:
    """Child requests not yet acted on, oldest first, with where the operator registered
    their parent (a hint for reading the parent's TaskRun, which has the last word)."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT c.parent_run_id, c.seq, c.task, c.payload, c.options,
                   r.namespace AS parent_namespace, r.name AS parent_name,
                   c.parent_attempt IS NOT NULL AND a.run_id IS NOT NULL
                       AND c.created_at >= a.started_at
                       AND (a.finished_at IS NULL OR c.created_at <= a.finished_at)
                       AS written_live
            FROM durakube.child_runs c
            JOIN durakube.runs r ON r.run_id = c.parent_run_id
            LEFT JOIN durakube.attempts a
                ON a.run_id = c.parent_run_id AND a.attempt = c.parent_attempt
            WHERE c.submitted_at IS NULL ORDER BY c.created_at LIMIT $1""", limit)
    return [ChildRun(**dict(record)) for record in records]


async def mark_submitted(db: pools.Database, parent_run_id: str, seq: int) -> None:
    async with pools.connection(db) as conn:
        await conn.execute("""
            UPDATE durakube.child_runs SET submitted_at = now()
            WHERE parent_run_id = $1 AND seq = $2""", parent_run_id, seq)


async def mark_rejected(db: pools.Database, parent_run_id: str, seq: int, reason: str) -> None:
    """Closes a request the operator refused, keeping why."""
    async with pools.connection(db) as conn:
        await conn.execute("""
            UPDATE durakube.child_runs SET submitted_at = now(), rejected = $3
            WHERE parent_run_id = $1 AND seq = $2""", parent_run_id, seq, reason)

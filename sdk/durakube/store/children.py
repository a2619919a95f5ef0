"""Child runs: TaskRuns a running task asks for, created by the operator on its behalf.

A worker pod holds no Kubernetes credentials, so `ctx.trigger` records the request
here (`request_child_run`, idempotent per parent step) and the operator creates the
TaskRun (`unsubmitted_child_runs`, `mark_submitted`). A child's end is sent as an
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
    parent_run_id: str
    seq: int
    namespace: str
    name: str
    task: str
    payload: Any
    options: dict[str, Any]
    parent_name: str


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


async def request_child_run(db: pools.Database, *, parent_run_id: str, seq: int, task: str,
                            payload: Any, options: dict[str, Any]) -> tuple[str, str]:
    """Records the request (once per parent step); returns the child's (namespace, name)."""
    async with pools.transaction(db) as conn:
        parent = await conn.fetchrow(
            "SELECT namespace, name FROM durakube.runs WHERE run_id = $1", parent_run_id)
        if parent is None:
            raise LookupError(f"run {parent_run_id} is not registered")
        name = child_name(parent["name"], seq)
        await conn.execute("""
            INSERT INTO durakube.child_runs (parent_run_id, seq, namespace, name, task, payload, options)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (parent_run_id, seq) DO NOTHING""",
            parent_run_id, seq, parent["namespace"], name, task, payload, options)
        record = await conn.fetchrow(
            "SELECT namespace, name FROM durakube.child_runs WHERE parent_run_id = $1 AND seq = $2",
            parent_run_id, seq)
    return str(record["namespace"]), str(record["name"])


async def unsubmitted_child_runs(db: pools.Database, limit: int = 200) -> list[ChildRun]:
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT c.parent_run_id, c.seq, c.namespace, c.name, c.task, c.payload, c.options,
                   r.name AS parent_name
            FROM durakube.child_runs c JOIN durakube.runs r ON r.run_id = c.parent_run_id
            WHERE c.submitted_at IS NULL ORDER BY c.created_at LIMIT $1""", limit)
    return [ChildRun(**dict(record)) for record in records]


async def mark_submitted(db: pools.Database, parent_run_id: str, seq: int) -> None:
    async with pools.connection(db) as conn:
        await conn.execute("""
            UPDATE durakube.child_runs SET submitted_at = now()
            WHERE parent_run_id = $1 AND seq = $2""", parent_run_id, seq)


async def namespace_of(db: pools.Database, run_id: str) -> str:
    async with pools.connection(db) as conn:
        namespace = await conn.fetchval("SELECT namespace FROM durakube.runs WHERE run_id = $1", run_id)
    if namespace is None:
        raise LookupError(f"run {run_id} is not registered")
    return str(namespace)

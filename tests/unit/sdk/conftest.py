"""Fixtures of the SDK tests: a migrated Postgres database per test, and run helpers.

Store and runtime tests run against the real Postgres of `tests/conftest.py`
(`database_dsn` is a fresh empty database); nothing here fakes the database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from durakube import store
from durakube.store import runs


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[Any]:
    """An asyncpg pool on a fresh database with the schema applied."""
    pool = await store.connect(database_dsn, max_size=5)
    await store.migrate(pool)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def worker_dsn(pool: Any, login_dsn: Callable[[str, str], str], database_dsn: str) -> str:
    """The DSN of a worker login on the test's database (after the schema made its roles)."""
    return login_dsn(database_dsn, "durakube_worker")


@pytest.fixture
async def worker_pool(worker_dsn: str) -> AsyncIterator[Any]:
    """A pool of the worker login: the worker functions and nothing else."""
    pool = await store.connect(worker_dsn, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


NewRun = Callable[..., Awaitable[str]]


@pytest.fixture
def new_run(pool: Any) -> NewRun:
    """`await new_run(task_id, payload)` registers a run and returns its (random) id."""

    async def register(task_id: str, payload: dict[str, Any] | None = None) -> str:
        run_id = f"run-{uuid.uuid4().hex[:10]}"
        await runs.register_run(pool, run_id=run_id, namespace="default", name=run_id,
                                task_id=task_id, payload=payload or {})
        return run_id

    return register

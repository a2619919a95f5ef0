"""The store tests' pools, one per login: the schema's owner (migrated), the workers'
(nothing but the worker functions) and the operator's (the tables' rows, no DDL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from durakube.store import pools, schema


@pytest.fixture
async def owner(database_dsn: str) -> AsyncIterator[Any]:
    pool = await pools.connect(database_dsn, max_size=4)
    await schema.migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture
async def worker(owner: Any, database_dsn: str,
                 login_dsn: Callable[[str, str], str]) -> AsyncIterator[Any]:
    """A pool of the workers' login: no rights but the worker functions."""
    pool = await pools.connect(login_dsn(database_dsn, "durakube_worker"), max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def operator(owner: Any, database_dsn: str,
                   login_dsn: Callable[[str, str], str]) -> AsyncIterator[Any]:
    pool = await pools.connect(login_dsn(database_dsn, "durakube_operator"), max_size=2)
    yield pool
    await pool.close()

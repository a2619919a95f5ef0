"""The schema: migrations apply in order, once, even with several migrators at once."""

from __future__ import annotations

import asyncio
from typing import Any

from durakube import store
from durakube.store import schema

# The tables of this issue; later migrations add more.
TABLES = {"runs", "steps", "attempts", "waitpoints", "queue_slots", "schema_migrations"}


async def list_tables(conn: Any) -> set[str]:
    rows = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema.SCHEMA)
    return {row["tablename"] for row in rows}


async def test_migrations_apply_once_and_are_idempotent(database_dsn: str) -> None:
    pool = await store.connect(database_dsn)
    try:
        assert await schema.applied_versions(pool) == []
        all_versions = [migration.version for migration in schema.MIGRATIONS]
        assert all_versions == sorted(all_versions)
        assert await store.migrate(pool) == all_versions
        assert await store.migrate(pool) == []
        assert await schema.applied_versions(pool) == all_versions
        async with pool.acquire() as conn:
            assert await list_tables(conn) >= TABLES
            index = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'waitpoints_wake_at_idx'")
            assert "wake_at" in index
    finally:
        await pool.close()


async def test_concurrent_migrators_apply_each_version_once(database_dsn: str) -> None:
    pools = [await store.connect(database_dsn, min_size=1, max_size=1) for _ in range(5)]
    try:
        results = await asyncio.gather(*(store.migrate(pool) for pool in pools))
        all_versions = [migration.version for migration in schema.MIGRATIONS]
        assert sorted(results) == [[]] * 4 + [all_versions]
        async with pools[0].acquire() as conn:
            assert await list_tables(conn) >= TABLES
            assert await conn.fetchval("SELECT count(*) FROM durakube.schema_migrations") == len(
                all_versions)
    finally:
        for pool in pools:
            await pool.close()


async def test_a_later_migration_applies_on_top(database_dsn: str) -> None:
    pool = await store.connect(database_dsn)
    try:
        await store.migrate(pool)
        extra = schema.Migration(99, "a test column",
                                 "ALTER TABLE durakube.runs ADD COLUMN note text")
        assert await schema.migrate(pool, (*schema.MIGRATIONS, extra)) == [99]
        assert await schema.migrate(pool, (*schema.MIGRATIONS, extra)) == []
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM durakube.runs WHERE note IS NULL") == 0
    finally:
        await pool.close()


async def test_events_buffered_before_namespaces_keep_only_what_can_be_attributed(
        database_dsn: str) -> None:
    pool = await store.connect(database_dsn)
    try:
        await schema.migrate(pool, tuple(m for m in schema.MIGRATIONS if m.version < 8))
        async with pool.acquire() as conn:
            await conn.execute("""
                INSERT INTO durakube.events (event_id, key, expires_at) VALUES
                    ('a', 'durakube.io/run/team-a/parent-c1', now() + interval '1 day'),
                    ('b', 'order-1', now() + interval '1 day')""")
        assert 8 in await schema.migrate(pool)
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT event_id, namespace FROM durakube.events ORDER BY 1")
        # A child's result names its namespace; an event of no known namespace reaches none.
        assert [tuple(row) for row in rows] == [("a", "team-a"), ("b", "")]
    finally:
        await pool.close()

"""Side effects the tests can count: one row per (run, step) in Postgres.

Steps call `count(ctx, name)`; a completed step that ran twice would show a count of 2.
"""

from __future__ import annotations

import os

import asyncpg

import durakube


async def count(ctx: durakube.TaskContext, name: str) -> int:
    connection = await asyncpg.connect(os.environ["DURAKUBE_DATABASE_URL"])
    try:
        # CREATE TABLE IF NOT EXISTS races with itself in Postgres: serialise the first ones.
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('test_effects'))")
            await connection.execute("""
                CREATE TABLE IF NOT EXISTS public.test_effects (
                    run_id text NOT NULL, step text NOT NULL, count integer NOT NULL,
                    PRIMARY KEY (run_id, step))""")
        return int(await connection.fetchval("""
            INSERT INTO public.test_effects (run_id, step, count) VALUES ($1, $2, 1)
            ON CONFLICT (run_id, step) DO UPDATE SET count = test_effects.count + 1
            RETURNING count""", ctx.run_id, name))
    finally:
        await connection.close()

"""Side effects the tests can count: one row per (run, step) in Postgres.

Steps call `count(ctx, name)`; a completed step that ran twice would show a count of 2.
The table is the test bed's (tests/e2e/conftest.py makes it and lets the workers' login
write it, as a deployment may give tasks a table of their own): the workers' login
creates nothing.
"""

from __future__ import annotations

import os

import asyncpg

import durakube


async def count(ctx: durakube.TaskContext, name: str) -> int:
    connection = await asyncpg.connect(os.environ["DURAKUBE_DATABASE_URL"])
    try:
        return int(await connection.fetchval("""
            INSERT INTO public.test_effects (run_id, step, count) VALUES ($1, $2, 1)
            ON CONFLICT (run_id, step) DO UPDATE SET count = test_effects.count + 1
            RETURNING count""", ctx.run_id, name))
    finally:
        await connection.close()

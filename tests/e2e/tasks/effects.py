"""Side effects the tests can count: one row per (run, step) in Postgres.

Steps call `count(ctx, name)` (plain `def` steps `count_blocking(run_id, name)`); a
completed step that ran twice would show a count of 2.
The table is the test bed's (tests/e2e/conftest.py makes it and lets the workers' login
write it, as a deployment may give tasks a table of their own): the workers' login
creates nothing.
"""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg

import durakube

# The connections of the tasks' own effects, which the chaos tests never terminate: a
# lost connection there would be the task's own error, not the platform's.
APPLICATION_NAME = "test-effects"


async def count(ctx: durakube.TaskContext, name: str) -> int:
    return await _count(ctx.run_id, name)


def count_blocking(run_id: str, name: str) -> int:
    """`count` for plain `def` code (a step's own thread, which runs no event loop)."""
    return asyncio.run(_count(run_id, name))


def counted(run_id: str, name: str) -> int:
    """How often `name` was counted for the run (0: never); the tests count "release"
    rows to let a waiting step go on."""
    async def read() -> int:
        connection = await asyncpg.connect(os.environ["DURAKUBE_DATABASE_URL"])
        try:
            return int(await connection.fetchval(
                "SELECT coalesce(max(count), 0) FROM public.test_effects"
                " WHERE run_id = $1 AND step = $2", run_id, name))
        finally:
            await connection.close()

    return asyncio.run(read())


async def _count(run_id: str, name: str) -> int:
    connection = await asyncpg.connect(os.environ["DURAKUBE_DATABASE_URL"])
    try:
        return int(await connection.fetchval("""
            INSERT INTO public.test_effects (run_id, step, count) VALUES ($1, $2, 1)
            ON CONFLICT (run_id, step) DO UPDATE SET count = test_effects.count + 1
            RETURNING count""", run_id, name))
    finally:
        await connection.close()


async def ran(ctx: durakube.TaskContext, name: str) -> None:
    """Records one execution of step `name` by this attempt (public.test_step_runs): a
    recorded step must have no execution by a later attempt. Postgres restarting is
    waited out (up to a minute), as a task's own effects should be; a repeat of the
    insert adds a row of the same attempt, which changes nothing."""
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = await asyncpg.connect(
                os.environ["DURAKUBE_DATABASE_URL"], timeout=10,
                server_settings={"application_name": APPLICATION_NAME})
            try:
                await connection.execute(
                    "INSERT INTO public.test_step_runs (run_id, step, attempt) VALUES ($1, $2, $3)",
                    ctx.run_id, name, ctx.attempt)
            finally:
                await connection.close()
            return
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                asyncpg.AdminShutdownError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)

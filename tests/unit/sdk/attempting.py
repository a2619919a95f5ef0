"""Running an attempt in the SDK tests as the operator and a worker pod would.

The operator starts each attempt with a fresh secret (Postgres keeps its hash) and
hands the secret to that attempt's pod only; the worker presents it on every call.
`run_attempt` does both, so a test reads as "run attempt N of this run".
"""

from __future__ import annotations

from typing import Any

from durakube import tasks, worker
from durakube.store import attempts, pools


async def start_attempt(pool: pools.Database, run_id: str, attempt: int) -> str:
    """Starts the attempt as the operator does; returns the secret its pod would get."""
    secret = attempts.new_secret()
    await attempts.start_attempt(pool, run_id, attempt, secret=secret)
    return secret


async def run_attempt(pool: pools.Database, run_id: str, attempt: int, registry: tasks.Registry,
                      **options: Any) -> attempts.Outcome:
    """Starts the attempt as the operator does, then runs it as its worker would."""
    secret = await start_attempt(pool, run_id, attempt)
    return await worker.run_attempt(pool, run_id, attempt, registry, secret=secret, **options)

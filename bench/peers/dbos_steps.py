"""The peer of bench/step_checkpoint.py: DBOS Transact's durable step, timed the same way.

Runs in a virtual environment of its own (DBOS pins its own database drivers), made
by bench/step_checkpoint.py. Given a Postgres URL, it times `rounds` workflows of
`n` steps, each step returning the same JSON value as the Durakube benchmark's steps,
once with async functions and once with plain ones (DBOS runs those on a thread of
its own), and prints the seconds per step of each workflow as JSON on stdout:
`{"async": [...], "sync": [...]}`.

    python dbos_steps.py postgresql://user@host:port/db -n 200 --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from dbos import DBOS

RESULT = {"doc": "page-1", "tokens": 512, "vector": [0.1, 0.2, 0.3, 0.4]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    DBOS(config={"name": "durakube-bench", "system_database_url": args.database_url,
                 "log_level": "WARNING", "console_log_level": "WARNING"})

    @DBOS.step()
    async def embed() -> dict[str, Any]:
        return RESULT

    @DBOS.workflow()
    async def async_steps(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            await embed()
        return (time.perf_counter() - began) / n

    @DBOS.step()
    def embed_sync() -> dict[str, Any]:
        return RESULT

    @DBOS.workflow()
    def sync_steps(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            embed_sync()
        return (time.perf_counter() - began) / n

    async def measure_async() -> list[float]:
        await async_steps(args.n)  # warm-up
        return [await async_steps(args.n) for _ in range(args.rounds)]

    def measure_sync() -> list[float]:
        sync_steps(args.n)  # warm-up
        return [sync_steps(args.n) for _ in range(args.rounds)]

    DBOS.launch()
    try:
        print(json.dumps({"async": asyncio.run(measure_async()), "sync": measure_sync()}))
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()

"""Benchmark: the cost of one step checkpoint against a bare asyncpg INSERT+COMMIT.

Starts its own embedded Postgres (the test bed's, `devcluster.postgres`), then, in
the same process and on the same server, times each of:

- bare:               `conn.execute(INSERT ...)` of a step-like row (same columns,
                      same JSONB values) on one connection, autocommit: an INSERT
                      and its COMMIT in one round trip;
- record_step:        `store.working.record_step(conn, credential, step)` on one held
                      connection of a worker login, as the task context does: the
                      worker function that checks the attempt's secret and inserts
                      the step in one call; ctx.state unchanged since the last step
                      (the common case: only the step row is written);
- record_step +state: the same with a new ctx.state at every step, so the run's
                      row is rewritten too (the worst case; still one statement);
- record_step (pool): as record_step, through the pool (acquire and release per call);
- ctx.step:           `await ctx.step(name, fn)` of a trivial function: the whole
                      path a task pays per step (encode, record, bookkeeping).

The machine is shared and noisy, so these interleave in small batches over many
rounds and the median batch is reported. Then the peer, on a database of its own on
the same server: DBOS Transact's durable step (`peers/dbos_steps.py`, a workflow of
`n` steps returning the same value, async and plain functions), in a virtual
environment of its own made once under $DURAKUBE_CACHE from
`peers/dbos-requirements.txt`. Targets (DESIGN.md): record_step at most 1.5x bare,
with or without a new state; ctx.step at least 10x faster than DBOS's step.

    .venv/bin/python bench/step_checkpoint.py [-n 200] [--rounds 30] [--no-statement-cache]
                                              [--no-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devcluster import build, postgres
from durakube import context, store
from durakube.store import attempts, runs, steps, working

TARGET_RATIO = 1.5
PEER_TARGET = 10.0
PEERS = Path(__file__).resolve().parent / "peers"
WORKER_LOGIN = "durakube_bench_worker"
STATE = {"cursor": 42, "seen": ["a", "b", "c"]}
RESULT = {"doc": "page-1", "tokens": 512, "vector": [0.1, 0.2, 0.3, 0.4]}

BARE_TABLE = """
    CREATE TABLE bench_steps (
        run_id text NOT NULL, seq integer NOT NULL, name text NOT NULL, status text NOT NULL,
        result jsonb, error jsonb, state jsonb NOT NULL, attempt integer NOT NULL,
        started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL,
        duration_ms double precision NOT NULL, PRIMARY KEY (run_id, seq))
"""
BARE_INSERT = """
    INSERT INTO bench_steps (run_id, seq, name, status, result, error, state, attempt,
                             started_at, finished_at, duration_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""


async def time_ops(n: int, op: Callable[[int], Awaitable[Any]], start: int) -> float:
    """Seconds per op over n sequential calls of op(seq)."""
    began = time.perf_counter()
    for seq in range(start, start + n):
        await op(seq)
    return (time.perf_counter() - began) / n


async def run(n: int, rounds: int, statement_cache_size: int | None, peer: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="durakube-bench-") as tmp:
        server = postgres.start(Path(tmp) / "postgres")
        try:
            dsn = server.create_database("bench")
            owner = await store.connect(dsn, min_size=1, max_size=1)
            try:
                await store.migrate(owner)
                await owner.execute(f"CREATE ROLE {WORKER_LOGIN} LOGIN IN ROLE durakube_worker")
                credentials = await start_runs(owner)
            finally:
                await owner.close()
            # The worker's login, as an attempt pod has it: the worker functions and nothing else.
            parts = urlsplit(dsn)
            worker_dsn = urlunsplit(parts._replace(netloc=f"{WORKER_LOGIN}@{parts.hostname}:{parts.port}"))
            pool = await store.connect(worker_dsn, min_size=4, max_size=4,
                                       statement_cache_size=statement_cache_size)
            try:
                timings = await measure(pool, credentials, n, rounds)
            finally:
                await pool.close()
            peer_timings = (await asyncio.to_thread(measure_dbos, server.create_database("dbos"),
                                                    n, max(3, rounds // 3))
                            if peer else {})
        finally:
            server.stop()
    report(timings, peer_timings, n, rounds, statement_cache_size)


def dbos_python() -> Path:
    """The Python of DBOS's virtual environment, made once per pinned version."""
    requirements = PEERS / "dbos-requirements.txt"
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    venv = build.cache_root() / f"dbos-{key}"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing DBOS Transact ({requirements.read_text().strip()}) into {venv}",
              file=sys.stderr)
        partial = venv.with_name(venv.name + ".partial")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(partial)], check=True)
        subprocess.run([str(partial / "bin" / "pip"), "install", "--quiet", "-r",
                        str(requirements)], check=True)
        partial.rename(venv)
    return python


def measure_dbos(dsn: str, n: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per DBOS step, per workflow of n steps: {"async": [...], "sync": [...]}."""
    done = subprocess.run([str(dbos_python()), str(PEERS / "dbos_steps.py"), dsn, "-n", str(n),
                           "--rounds", str(rounds)], check=True, capture_output=True, text=True)
    timings: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return timings


async def start_runs(owner: Any) -> dict[str, working.Credential]:
    """The bench's runs, each with attempt 1 started as the operator does; their credentials.
    Also the bare table, which the worker's login may write (as a task's own table would)."""
    credentials = {}
    for run_id in ("bench-conn", "bench-state", "bench-pool", "bench-ctx"):
        await runs.register_run(owner, run_id=run_id, namespace="bench", name=run_id,
                                task_id="bench", payload={})
        secret = attempts.new_secret()
        await attempts.start_attempt(owner, run_id, 1, run_id, secret=secret)
        credentials[run_id] = working.Credential(run_id, 1, secret)
    await owner.execute(BARE_TABLE)
    await owner.execute(f"GRANT INSERT ON bench_steps TO {WORKER_LOGIN}")
    return credentials


async def measure(pool: Any, credentials: dict[str, working.Credential], n: int,
                  rounds: int) -> dict[str, list[float]]:
    bare_conn = await pool.acquire()
    step_conn = await pool.acquire()
    ctx = context.TaskContext(pool=pool, run_id="bench-ctx", attempt=1,
                              secret=credentials["bench-ctx"].secret, namespace="bench", payload={})
    ctx.state = dict(STATE)
    now = datetime.now(UTC)

    def make_step(run_id: str, seq: int, state: dict[str, Any] = STATE) -> steps.Step:
        return steps.Step(run_id=run_id, seq=seq, name="embed", status="succeeded",
                          result=RESULT, error=None, state=state, attempt=1, started_at=now,
                          finished_at=now, duration_ms=0.5)

    async def bare(seq: int) -> None:
        await bare_conn.execute(BARE_INSERT, "bench-bare", seq, "embed", "succeeded",
                                RESULT, None, STATE, 1, now, now, 0.5)

    async def record_on_connection(seq: int) -> None:
        await working.record_step(step_conn, credentials["bench-conn"], make_step("bench-conn", seq))

    async def record_with_new_state(seq: int) -> None:
        await working.record_step(step_conn, credentials["bench-state"],
                                  make_step("bench-state", seq, {**STATE, "cursor": seq}))

    async def record_through_pool(seq: int) -> None:
        await working.record_step(pool, credentials["bench-pool"], make_step("bench-pool", seq))

    async def produce() -> dict[str, Any]:
        return RESULT

    async def ctx_step(seq: int) -> None:
        await ctx.step("embed", produce)

    ops = {"bare INSERT+COMMIT": bare, "record_step": record_on_connection,
           "record_step +state": record_with_new_state,
           "record_step (pool)": record_through_pool, "ctx.step": ctx_step}
    # Warm-up: prepared statements, catalog caches, the context's held connection.
    for op in ops.values():
        await time_ops(n, op, start=1)
    timings: dict[str, list[float]] = {name: [] for name in ops}
    for index in range(1, rounds + 1):
        for name, op in ops.items():
            timings[name].append(await time_ops(n, op, start=1 + index * n))
    await ctx.close()
    await pool.release(bare_conn)
    await pool.release(step_conn)
    return timings


def report(timings: dict[str, list[float]], peer_timings: dict[str, list[float]], n: int,
           rounds: int, statement_cache_size: int | None) -> None:
    medians = {name: statistics.median(values) for name, values in timings.items()}
    base = medians["bare INSERT+COMMIT"]
    cache = "off (PgBouncer mode)" if statement_cache_size == 0 else "on"
    print(f"step checkpoint: {rounds} rounds of {n} ops each, interleaved; median batch; "
          f"statement cache {cache}")
    for name, seconds in medians.items():
        print(f"  {name:<20} {seconds * 1e6:8.1f} us/op  {1 / seconds:8.0f} ops/s  "
              f"{seconds / base:5.2f}x bare")
    for kind, values in peer_timings.items():
        seconds = statistics.median(values)
        print(f"  {'DBOS step (' + kind + ')':<20} {seconds * 1e6:8.1f} us/op  "
              f"{1 / seconds:8.0f} ops/s  {seconds / base:5.2f}x bare  "
              f"(median of {len(values)} workflows of {n} steps)")
    for name in ("record_step", "record_step +state"):
        ratio = medians[name] / base
        verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
        print(f"{name} / bare = {ratio:.2f} ({verdict} the {TARGET_RATIO}x target)")
    if peer_timings:
        # Against the peer's faster flavour.
        fastest = min(statistics.median(values) for values in peer_timings.values())
        speedup = fastest / medians["ctx.step"]
        verdict = "meets" if speedup >= PEER_TARGET else "MISSES"
        print(f"DBOS step / ctx.step = {speedup:.1f} ({verdict} the {PEER_TARGET:.0f}x target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="checkpoints per batch")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--no-statement-cache", action="store_true",
                        help="statement_cache_size=0, as behind PgBouncer in transaction mode")
    parser.add_argument("--no-peer", action="store_true", help="skip DBOS Transact's step")
    args = parser.parse_args()
    asyncio.run(run(args.n, args.rounds, 0 if args.no_statement_cache else None,
                    not args.no_peer))


if __name__ == "__main__":
    main()

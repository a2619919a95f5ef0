"""What an attempt writes is stored for it in Postgres: the real `durakube-worker`
process, its streams captured, against real Postgres; and the shipping of a buffer."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from attempting import start_attempt
from test_worker_entrypoint import run_worker, worker_env

from durakube import capturing, tasks, worker
from durakube.store import logs, working

TASK_MODULE = textwrap.dedent('''
    import logging
    import os
    import sys
    import durakube

    @durakube.task(id="chatty")
    async def chatty(ctx: durakube.TaskContext, payload: dict) -> dict:
        ctx.logger.info("before any step")

        async def work() -> int:
            ctx.logger.warning("inside the step")
            logging.getLogger("library").info("a library's record")
            return 1

        await ctx.step("work", work)
        print("printed to stdout")
        print("printed to stderr", file=sys.stderr)
        os.system("echo from a subprocess")
        os.write(1, b"written to fd 1 directly\\n")
        return {"done": True}
''')


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    (tmp_path / "chatty_tasks.py").write_text(TASK_MODULE)
    return tmp_path


async def run_chatty(pool: Any, new_run: Any, worker_dsn: str, task_dir: Path,
                     *args: str, **env: str) -> tuple[str, str, str]:
    """Runs the chatty task in a worker process; (run id, its stored log, its output)."""
    run_id = await new_run("chatty", {})
    secret = await start_attempt(pool, run_id, 1)
    code, output = await run_worker(
        worker_env(worker_dsn, run_id, secret, task_dir / "termination-log",
                   DURAKUBE_TASK_MODULES="chatty_tasks", **env), *args, cwd=task_dir)
    assert code == 0, output
    (stored,) = await logs.read_logs(pool, run_id)
    assert stored.attempt == 1 and stored.dropped == 0
    return run_id, stored.text, output


async def test_everything_the_process_writes_is_stored_with_the_attempt(
        pool: Any, new_run: Any, worker_dsn: str, task_dir: Path) -> None:
    run_id, text, output = await run_chatty(pool, new_run, worker_dsn, task_dir)
    for line in ("before any step", "inside the step", "a library's record",
                 "printed to stdout", "printed to stderr", f"run {run_id} attempt 1: succeeded"):
        assert line in text, output
        # The pod's own log (here the process's output) still has it all too.
        assert line in output
    # Below Python, output goes to the pod's log only.
    for line in ("from a subprocess", "written to fd 1 directly"):
        assert line in output and line not in text
    assert f"[run={run_id} attempt=1 step=work]: inside the step" in text
    assert f"[run={run_id} attempt=1 step=None]: before any step" in text
    assert f"[run={run_id} attempt=1 step=work]: a library's record" in text


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_json_records_carry_the_run_attempt_and_step(
        pool: Any, new_run: Any, worker_dsn: str, task_dir: Path, how: str) -> None:
    args, env = (("--log-format", "json"), {}) if how == "flag" else (
        (), {"DURAKUBE_LOG_FORMAT": "json"})
    run_id, text, _ = await run_chatty(pool, new_run, worker_dsn, task_dir, *args, **env)
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    by_message = {record["message"]: record for record in records}
    inside = by_message["inside the step"]
    assert (inside["run_id"], inside["attempt"], inside["step"]) == (run_id, 1, "work")
    assert inside["level"] == "WARNING" and inside["logger"] == "durakube.task.chatty"
    assert "step" not in by_message["before any step"]
    assert by_message["a library's record"]["step"] == "work"
    assert "printed to stdout" in text


async def test_the_shipper_stores_a_buffer_in_order_and_stops_when_revoked(
        pool: Any, new_run: Any) -> None:
    run_id = await new_run("t", {})
    secret = await start_attempt(pool, run_id, 1)
    credential = working.Credential(run_id, 1, secret)
    buffer = capturing.Buffer()
    shipper = capturing.Shipper(pool, credential, buffer, interval=0.05)
    shipper.start()
    buffer.write(b"one\n")
    shipper.nudge()
    for _ in range(100):
        if shipper.shipped:
            break
        await asyncio.sleep(0.05)
    buffer.write(b"two\n")
    await shipper.close()
    (stored,) = await logs.read_logs(pool, run_id)
    assert stored.text == "one\ntwo\n"
    # Revoked (a newer attempt): nothing more is stored, and nothing raises.
    await start_attempt(pool, run_id, 2)
    buffer.write(b"three\n")
    await shipper.flush()
    (stored,) = await logs.read_logs(pool, run_id)
    assert stored.text == "one\ntwo\n"


def test_a_buffer_written_faster_than_shipped_keeps_its_ends() -> None:
    buffer = capturing.Buffer(limit=10)
    buffer.write(b"abcdefghij")
    buffer.write(b"KLMNO")
    taken = buffer.take()
    assert taken.startswith(b"abcde") and taken.endswith(b"KLMNO")
    assert b"[durakube: 5 bytes dropped here" in taken
    assert buffer.take() == b""


async def test_an_attempt_run_in_process_ships_its_output_before_the_outcome(
        pool: Any, new_run: Any) -> None:
    registry = tasks.Registry()
    output = capturing.Output()

    @tasks.task(id="writes", registry=registry)
    async def writes(ctx: Any, payload: dict[str, Any]) -> int:
        output.buffer.write(b"first\n")
        await ctx.step("a", lambda: 1)
        output.buffer.write(b"second\n")
        return 2

    run_id = await new_run("writes", {})
    secret = await start_attempt(pool, run_id, 1)
    outcome = await worker.run_attempt(pool, run_id, 1, registry, secret=secret, output=output)
    assert outcome.kind == "succeeded"
    (stored,) = await logs.read_logs(pool, run_id)
    assert stored.text == "first\nsecond\n"

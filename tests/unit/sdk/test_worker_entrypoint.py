"""The real `durakube-worker` console script, run as a pod would run it, against Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from attempting import start_attempt

from durakube import worker
from durakube.store import attempts, steps

WORKER = Path(sys.executable).parent / "durakube-worker"

TASK_MODULE = textwrap.dedent('''
    import pydantic
    import durakube

    class Greeting(pydantic.BaseModel):
        name: str

    @durakube.step
    async def shout(text: str) -> str:
        return text.upper()

    @durakube.task(id="greet")
    async def greet(ctx: durakube.TaskContext, payload: Greeting) -> dict:
        ctx.state["greeted"] = payload.name
        return {"greeting": await shout(f"hello {payload.name}")}

    @durakube.task(id="refuse")
    async def refuse(ctx: durakube.TaskContext, payload: dict) -> None:
        raise durakube.PermanentError("not today")
''')


async def run_worker(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(WORKER), *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    (tmp_path / "greet_tasks.py").write_text(TASK_MODULE)
    return tmp_path


# What every attempt pod gets from its Secret.
SECRETS = {"DURAKUBE_DATABASE_URL": "pg://", "DURAKUBE_ATTEMPT_SECRET": "s"}


def worker_env(database_dsn: str, run_id: str, secret: str, termination: Path,
               **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "DURAKUBE_RUN_ID": run_id,
            "DURAKUBE_ATTEMPT": "1", "DURAKUBE_DATABASE_URL": database_dsn,
            "DURAKUBE_ATTEMPT_SECRET": secret,
            "DURAKUBE_TERMINATION_MESSAGE_PATH": str(termination),
            "DURAKUBE_POD_NAME": f"{run_id}-1", **extra}


@pytest.mark.parametrize(
    ("task_id", "payload", "modules", "args", "kind", "hint"),
    [
        ("greet", {"name": "ada"}, "greet_tasks", (), "succeeded", {}),
        ("greet", {"name": "ada"}, "", ("--module", "greet_tasks"), "succeeded", {}),
        ("refuse", {}, "greet_tasks", (), "failed",
         {"type": "durakube.errors.PermanentError", "message": "not today"}),
        ("greet", {"name": "ada"}, "no_such_module", (), "failed",
         {"type": "ModuleNotFoundError", "message": "No module named 'no_such_module'"}),
        ("greet", {}, "greet_tasks", (), "failed", {"type": "durakube.errors.InvalidPayload"}),
    ],
    ids=["succeeds", "module-flag", "task-fails", "module-missing", "invalid-payload"],
)
async def test_worker_process_records_the_outcome_and_exits_zero(
        pool: Any, new_run: Any, worker_dsn: str, task_dir: Path, task_id: str,
        payload: dict[str, Any], modules: str, args: tuple[str, ...], kind: str,
        hint: dict[str, str]) -> None:
    run_id = await new_run(task_id, payload)
    termination = task_dir / "termination-log"
    secret = await start_attempt(pool, run_id, 1)
    env = worker_env(worker_dsn, run_id, secret, termination, DURAKUBE_TASK_MODULES=modules)

    code, output = await run_worker(env, *args, cwd=task_dir)

    assert code == 0, output
    outcome = await attempts.read_outcome(pool, run_id, 1)
    assert outcome is not None and outcome.kind == kind, output
    message = json.loads(termination.read_text())
    assert (message["outcome"], message["attempt"]) == (kind, 1)
    for key, value in hint.items():
        assert value in message["error"][key]
    (attempt,) = await attempts.load_attempts(pool, run_id)
    assert attempt.pod_name == f"{run_id}-1"
    if kind == "succeeded":
        assert outcome.output == {"greeting": "HELLO ADA"}
        assert [step.name for step in await steps.load_steps(pool, run_id)] == ["shout"]


async def test_worker_process_exits_non_zero_when_nothing_can_be_recorded(
        pool: Any, worker_dsn: str, task_dir: Path) -> None:
    unwritable = task_dir / "missing-dir" / "termination-log"
    env = worker_env(worker_dsn, "no-such-run", "no-secret", unwritable,
                     DURAKUBE_TASK_MODULES="greet_tasks")
    code, output = await run_worker(env, cwd=task_dir)
    assert code == 1
    assert "no-such-run" in output
    env.pop("DURAKUBE_DATABASE_URL")
    code, output = await run_worker(env, cwd=task_dir)
    assert code == 2
    assert "missing environment variables: DURAKUBE_DATABASE_URL" in output


EXIT_MODULE = textwrap.dedent('''
    import atexit, os, sys, threading, time
    import durakube

    @durakube.task(id="leave")
    async def leave(ctx: durakube.TaskContext, payload: dict) -> str:
        # Each of these needs the interpreter's own exit: the worker ends the process
        # without tearing its modules down, and must not skip them.
        atexit.register(lambda: open(payload["marker"], "w").write("atexit ran"))
        sys.__stdout__.write("written last, without a newline")
        if payload["thread"]:
            def finish() -> None:
                time.sleep(0.5)
                open(payload["marker"] + ".thread", "w").write("thread finished")
            threading.Thread(target=finish).start()
        return "left"
''')


@pytest.mark.parametrize("thread", [False, True], ids=["alone", "with-a-thread-left-running"])
async def test_worker_process_exits_as_the_interpreter_would(
        pool: Any, new_run: Any, worker_dsn: str, tmp_path: Path, thread: bool) -> None:
    (tmp_path / "exit_tasks.py").write_text(EXIT_MODULE)
    marker = tmp_path / "marker"
    run_id = await new_run("leave", {"marker": str(marker), "thread": thread})
    secret = await start_attempt(pool, run_id, 1)
    env = worker_env(worker_dsn, run_id, secret, tmp_path / "termination-log",
                     DURAKUBE_TASK_MODULES="exit_tasks")

    code, output = await run_worker(env, cwd=tmp_path)

    assert code == 0, output
    assert marker.read_text() == "atexit ran"
    assert "written last, without a newline" in output
    # A thread the interpreter would wait for (not a daemon) is waited for.
    assert (tmp_path / "marker.thread").exists() == thread
    if thread:
        assert (tmp_path / "marker.thread").read_text() == "thread finished"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "missing environment variables: DURAKUBE_RUN_ID, DURAKUBE_ATTEMPT"),
        ({"DURAKUBE_RUN_ID": "r", "DURAKUBE_ATTEMPT": "one", **SECRETS},
         "DURAKUBE_ATTEMPT must be an integer, got 'one'"),
        ({"DURAKUBE_RUN_ID": "r", "DURAKUBE_ATTEMPT": "0", **SECRETS},
         "DURAKUBE_ATTEMPT must be at least 1"),
        ({"DURAKUBE_RUN_ID": "r", "DURAKUBE_ATTEMPT": "1", **SECRETS,
          "DURAKUBE_RETRY_POLICY": '{"min_timeout": 5, "max_timeout": 1}'},
         "DURAKUBE_RETRY_POLICY is not a retry policy"),
    ],
    ids=["missing", "not-a-number", "zero", "inconsistent-retry-policy"],
)
def test_bad_settings_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        worker.read_settings(environ)


def test_settings_merge_env_modules_and_flags() -> None:
    settings = worker.read_settings(
        {"DURAKUBE_RUN_ID": "r", "DURAKUBE_ATTEMPT": "3", **SECRETS,
         "DURAKUBE_TASK_MODULES": "a, b,,", "HOSTNAME": "r-3"}, ["b", "c"])
    assert settings.task_modules == ("a", "b", "c")
    assert (settings.attempt, settings.pod_name) == (3, "r-3")
    assert settings.termination_message_path == "/dev/termination-log"
    assert settings.statement_cache_size is None
    assert worker.spec_retry_policy(settings) is None

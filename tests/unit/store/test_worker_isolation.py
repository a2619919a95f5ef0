"""What a worker's database login can and cannot do, against real Postgres.

A worker connects as a login in durakube_worker and holds the secret of one attempt
(A, of run R). It may read and write R's rows through the worker functions while A
is R's live attempt, and nothing else: no table, not another run, not another
attempt, not a wrong secret, not after A ended.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from durakube import errors
from durakube.store import attempts, logs, pools, runs, schema, steps, working


@dataclass
class Started:
    run_id: str
    credential: working.Credential


async def start_run(owner: Any, attempt: int = 1) -> Started:
    """A run registered and its attempt started as the operator does; the pod's credential."""
    run_id = str(uuid.uuid4())
    await runs.register_run(owner, run_id=run_id, namespace="ns", name=run_id[:8], task_id="t",
                            payload={"secret": "of " + run_id})
    secret = attempts.new_secret()
    await attempts.start_attempt(owner, run_id, attempt, f"{run_id[:8]}-{attempt}", secret=secret)
    return Started(run_id, working.Credential(run_id, attempt, secret))


def make_step(credential: working.Credential, seq: int, name: str = "s") -> steps.Step:
    now = datetime.now(UTC)
    return steps.Step(run_id=credential.run_id, seq=seq, name=name, status="succeeded",
                      result={"n": seq}, error=None, state={"at": seq},
                      attempt=credential.attempt, started_at=now, finished_at=now,
                      duration_ms=0.1)


async def every_call(worker: Any, credential: working.Credential) -> dict[str, Any]:
    """Each worker function called with `credential`: the name -> its awaitable's factory."""
    return {
        "start_attempt": lambda: working.start_attempt(worker, credential, "pod"),
        "load_steps": lambda: working.load_steps(worker, credential),
        "load_step": lambda: working.load_step(worker, credential, 1),
        "record_step": lambda: working.record_step(worker, credential, make_step(credential, 9)),
        "record_outcome": lambda: working.record_outcome(
            worker, credential, attempts.Outcome("succeeded", output="forged")),
        "load_waitpoint": lambda: working.load_waitpoint(worker, credential, 1),
        "load_waitpoint_by_token": lambda: working.load_waitpoint_by_token(worker, credential, "t"),
        "create_waitpoint": lambda: working.create_waitpoint(
            worker, credential, seq=8, kind="sleep", wake_at=None),
        "wait_for_event": lambda: working.wait_for_event(
            worker, credential, seq=7, key="k", wake_at=None),
        "request_child_run": lambda: working.request_child_run(
            worker, credential, seq=6, task="t", payload={}, options={}),
        "append_log": lambda: working.append_log(worker, credential, b"forged line\n"),
        "record_compensation": lambda: working.record_compensation(
            worker, credential, step_seq=1, position=0, name="m:undo", args={}),
        "load_compensations": lambda: working.load_compensations(worker, credential),
        "finish_compensation": lambda: working.finish_compensation(
            worker, credential, step_seq=1, position=0),
        "end_compensating": lambda: working.end_compensating(
            worker, credential, attempts.Outcome("succeeded")),
    }


async def test_a_worker_can_checkpoint_its_own_run(owner: Any, worker: Any) -> None:
    mine = await start_run(owner)
    run = await working.start_attempt(worker, mine.credential, "pod-1")
    assert run.run_id == mine.run_id
    assert await working.record_step(worker, mine.credential, make_step(mine.credential, 1, "a"))
    assert not await working.record_step(worker, mine.credential, make_step(mine.credential, 1, "b"))
    (step,) = await working.load_steps(worker, mine.credential)
    assert (step.name, step.attempt, step.result) == ("a", 1, {"n": 1})
    assert await working.load_step(worker, mine.credential, 1) == step
    waitpoint = await working.create_waitpoint(worker, mine.credential, seq=2, kind="token",
                                               wake_at=None, token="wpt_mine")
    assert await working.load_waitpoint_by_token(worker, mine.credential, "wpt_mine") == waitpoint
    assert await working.request_child_run(worker, mine.credential, seq=3, task="t", payload={},
                                           options={}) == ("ns", f"{mine.run_id[:8]}-c3")
    assert await working.append_log(worker, mine.credential, b"hello\n") == 6
    await working.record_outcome(worker, mine.credential, attempts.Outcome("succeeded", output=1))
    assert await attempts.read_outcome(owner, mine.run_id, 1) == attempts.Outcome(
        "succeeded", output=1)
    (log,) = await logs.read_logs(owner, mine.run_id)
    assert (log.attempt, log.pod_name, log.text) == (1, f"{mine.run_id[:8]}-1", "hello\n")


async def test_a_worker_can_read_or_change_no_table(owner: Any, worker: Any) -> None:
    await start_run(owner)
    async with owner.acquire() as conn:
        tables = [row["tablename"] for row in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'durakube'")]
    assert {"runs", "steps", "attempts", "queue_slots", "payloads", "events"} <= set(tables)
    async with worker.acquire() as conn:
        for table in tables:
            for statement in (f"SELECT * FROM durakube.{table}", f"DELETE FROM durakube.{table}",
                              f"TRUNCATE durakube.{table}"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        for statement in ("CREATE TABLE durakube.mine (x int)", "DROP SCHEMA durakube CASCADE",
                          "SELECT durakube.check_attempt('r', 1, 's')"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)


async def test_only_the_worker_functions_are_executable_by_workers(owner: Any) -> None:
    async with owner.acquire() as conn:
        rows = await conn.fetch("""
            SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
                   has_function_privilege('durakube_worker', p.oid, 'EXECUTE') AS worker,
                   has_function_privilege('durakube_operator', p.oid, 'EXECUTE') AS operator,
                   p.prosecdef, p.proconfig
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'durakube'""")
    executable = {row["proname"] for row in rows if row["worker"]}
    assert executable == {signature.split("(")[0] for signature in
                          (*schema.WORKER_FUNCTIONS, *schema.LOG_WORKER_FUNCTIONS,
                           *schema.METADATA_WORKER_FUNCTIONS,
                           *schema.COMPENSATION_WORKER_FUNCTIONS)}
    # The operator's own functions run with its rights (it may write the tables anyway):
    # one statement where a transaction of several would do.
    assert {row["proname"] for row in rows if row["operator"]} == {
        signature.split("(")[0] for signature in schema.OPERATOR_FUNCTIONS}
    for row in rows:
        # Each runs on a search path no caller can put a table of its own on; all but the
        # operator's run as the owner.
        assert row["proconfig"] == ["search_path=pg_catalog, pg_temp"], row
        assert row["prosecdef"] != row["operator"], row


@pytest.mark.parametrize("wrong", ["another-run", "another-attempt", "wrong-secret", "no-secret"])
async def test_a_credential_opens_only_its_own_attempt(owner: Any, worker: Any, wrong: str) -> None:
    mine = await start_run(owner)
    theirs = await start_run(owner)
    credential = {
        "another-run": working.Credential(theirs.run_id, 1, mine.credential.secret),
        "another-attempt": working.Credential(mine.run_id, 2, mine.credential.secret),
        "wrong-secret": working.Credential(mine.run_id, 1, attempts.new_secret()),
        "no-secret": working.Credential(mine.run_id, 1, ""),
    }[wrong]
    for name, call in (await every_call(worker, credential)).items():
        with pytest.raises(errors.AttemptRevoked):
            await call()
            pytest.fail(f"{name} let {wrong} through")
    for run_id in (mine.run_id, theirs.run_id):
        assert await steps.load_steps(owner, run_id) == []
        assert await attempts.read_outcome(owner, run_id, 1) is None
        assert await logs.read_logs(owner, run_id) == []


@pytest.mark.parametrize("ended_by", ["its-outcome", "a-newer-attempt", "its-pod-ending",
                                      "the-run-finishing"])
async def test_a_credential_dies_with_its_attempt(owner: Any, worker: Any, ended_by: str) -> None:
    mine = await start_run(owner)
    await working.start_attempt(worker, mine.credential, "pod")
    if ended_by == "its-outcome":
        await working.record_outcome(worker, mine.credential, attempts.Outcome("retry"))
    elif ended_by == "a-newer-attempt":
        await attempts.start_attempt(owner, mine.run_id, 2, "pod-2", secret=attempts.new_secret())
    elif ended_by == "its-pod-ending":
        assert await attempts.revoke_secrets(owner, mine.run_id) == 1
    else:
        await runs.set_run_status(owner, mine.run_id, "Canceled")
    for name, call in (await every_call(worker, mine.credential)).items():
        with pytest.raises(errors.AttemptRevoked):
            await call()
            pytest.fail(f"{name} still works after {ended_by}")


async def test_the_operator_login_has_rows_but_no_ddl(owner: Any, operator: Any) -> None:
    mine = await start_run(owner)
    assert (await runs.load_run(operator, mine.run_id)) is not None
    await runs.set_run_status(operator, mine.run_id, "Running")
    async with operator.acquire() as conn:
        for statement in ("CREATE TABLE durakube.mine (x int)", "DROP TABLE durakube.steps",
                          "ALTER TABLE durakube.runs ADD COLUMN x int",
                          "DELETE FROM durakube.schema_migrations"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)


async def test_migrations_apply_where_an_administrator_made_the_roles(database_dsn: str) -> None:
    pool = await pools.connect(database_dsn, max_size=1)
    try:
        async with pool.acquire() as conn:
            for role in ("durakube_operator", "durakube_worker"):
                await conn.execute(f"""
                    DO $$ BEGIN
                        CREATE ROLE {role} NOLOGIN;
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                    END $$""")
        assert 8 in await schema.migrate(pool)
        assert await schema.migrate(pool) == []
    finally:
        await pool.close()

"""A malicious task: with every credential its pod can see, it goes after another run.

`intrude` is given the run id and namespace of a victim run (of another namespace)
and tries, in turn, to read the victim's steps, payloads and runs, to write a
checkpoint or an outcome for it, to take or free queue slots, to change the
schema, and to have the operator create a child run in the victim's namespace. It
returns what each attempt met: "refused: <why>", or "ALLOWED" with what it got.

The credentials: every environment value that is a Postgres URL (the pod's
DURAKUBE_DATABASE_URL, from the attempt's Secret), every file named by a *_FILE
variable, and the attempt's own secret. The pod has no Kubernetes token
(automountServiceAccountToken is off), so the Secret's content is all it has of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

import durakube
from durakube import current, triggering
from durakube.store import working


def visible_dsns() -> list[str]:
    """Every Postgres URL the pod can see, in its environment or in files it names."""
    found = [value for value in os.environ.values() if value.startswith("postgres")]
    for name, value in os.environ.items():
        if name.endswith("_FILE") and Path(value).is_file():
            text = Path(value).read_text().strip()
            if text.startswith("postgres"):
                found.append(text)
    return sorted(set(found))


async def attempt(dsn: str, call: Callable[[Any], Awaitable[Any]]) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        got = await call(connection)
        return f"ALLOWED: {got!r}"[:300]
    except asyncpg.PostgresError as error:
        return f"refused: {type(error).__name__}"
    finally:
        await connection.close()


def attacks(victim: str, victim_namespace: str, secret: str, me: str,
            attempt_number: int) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    now = datetime.now(UTC)
    step_args: tuple[Any, ...] = (1, "forged", "succeeded", {"forged": True}, None, {}, now, now, 0.1)
    return {
        "read-victim-steps": lambda c: c.fetch(
            "SELECT * FROM durakube.steps WHERE run_id = $1", victim),
        "read-payloads": lambda c: c.fetch("SELECT * FROM durakube.payloads"),
        "read-victim-run": lambda c: c.fetch(
            "SELECT payload, output FROM durakube.runs WHERE run_id = $1", victim),
        "read-victim-steps-with-my-secret": lambda c: c.fetch(
            "SELECT * FROM durakube.worker_load_steps($1, 1, $2)", victim, secret),
        "write-victim-step": lambda c: c.execute(
            "INSERT INTO durakube.steps (run_id, seq, name, status, state, attempt, started_at,"
            " finished_at, duration_ms) VALUES ($1, 99, 'forged', 'succeeded', '{}', 1, now(),"
            " now(), 0)", victim),
        "write-victim-step-with-my-secret": lambda c: c.fetchval(
            "SELECT durakube.worker_record_step($1, 1, $2, $3, $4, $5, $6::jsonb, $7::jsonb,"
            " $8::jsonb, $9, $10, $11)", victim, secret, *_jsonb(step_args)),
        "write-victim-outcome": lambda c: c.execute(
            "UPDATE durakube.attempts SET outcome = 'failed' WHERE run_id = $1", victim),
        "write-victim-outcome-with-my-secret": lambda c: c.fetchval(
            "SELECT durakube.worker_record_outcome($1, 1, $2, 'failed', NULL, NULL, NULL, NULL,"
            " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)", victim, secret),
        "release-queue-slots": lambda c: c.execute("DELETE FROM durakube.queue_slots"),
        "grant-a-queue-slot": lambda c: c.execute(
            "INSERT INTO durakube.queue_slots (queue, run_id) VALUES ('x', $1)", me),
        "raise-a-queue-limit": lambda c: c.execute(
            "UPDATE durakube.queues SET concurrency_limit = 100000"),
        "insert-child-in-victim-namespace": lambda c: c.execute(
            "INSERT INTO durakube.child_runs (parent_run_id, seq, namespace, name, task, payload)"
            " VALUES ($1, 99, $2, 'forged-child', 'victim-task', '{}')", victim, victim_namespace),
        "request-child-as-victim": lambda c: c.fetch(
            "SELECT * FROM durakube.worker_request_child_run($1, 1, $2, 99, 'victim-task',"
            " '{}'::jsonb, '{}'::jsonb)", victim, secret),
        "check-attempt-directly": lambda c: c.fetchval(
            "SELECT durakube.check_attempt($1, $2, $3)", me, attempt_number, secret),
        "create-a-table": lambda c: c.execute("CREATE TABLE durakube.mine (x int)"),
        "drop-the-schema": lambda c: c.execute("DROP SCHEMA durakube CASCADE"),
    }


def _jsonb(args: tuple[Any, ...]) -> tuple[Any, ...]:
    seq, name, status, result, error, state, started, finished, duration = args
    return (seq, name, status, json.dumps(result), json.dumps(error), json.dumps(state), started,
            finished, duration)


@durakube.task(id="intrude")
async def intrude(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    victim, victim_namespace = payload["victim"], payload["victim_namespace"]
    secret = os.environ["DURAKUBE_ATTEMPT_SECRET"]

    async def everything() -> dict[str, str]:
        dsns = visible_dsns()
        report = {"dsns-seen": str(len(dsns))}
        for index, dsn in enumerate(dsns):
            for name, call in attacks(victim, victim_namespace, secret, ctx.run_id,
                                      ctx.attempt).items():
                report[f"{name}#{index}"] = await attempt(dsn, call)
        return report

    report: dict[str, str] = await ctx.step("attacks", everything)

    async def ask_for_a_child_in_the_victims_namespace() -> str:
        # Through the worker's own function, for its own run: accepted by Postgres, so the
        # operator must refuse the options (a namespace, a task reference of its choosing).
        _, name = await working.request_child_run(
            ctx.pool, ctx.credential, seq=current.current_seq(), task="victim-task", payload={},
            options={"namespace": victim_namespace, "taskRef": {"name": "victim-task"}})
        return name

    child = await ctx.step("child-request", ask_for_a_child_in_the_victims_namespace)
    try:
        await triggering.wait_for_run(ctx, child)
        report["child-in-victim-namespace"] = "ALLOWED: the child ran"
    except triggering.ChildRunFailed as failed:
        report["child-in-victim-namespace"] = f"refused: {failed.error_type}: {failed.error_message}"
    return report


@durakube.task(id="victim-task")
async def victim_task(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """What the intruder would like to run in the victim's namespace; never should."""
    return {"ran-in": os.environ.get("DURAKUBE_RUN_ID")}

"""Plain `def` tasks and steps in worker pods on the test bed (tasks/syncing.py).

A SIGKILLed worker's `def` task resumes in a new pod without re-running a completed
step; a `def` step that blocks its thread leaves the worker's event loop running
(the loop ships the step's printed line to Postgres while the step still blocks).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import kubernetes
import pytest
from helpers import (
    InstalledOperator,
    create,
    effects,
    get_taskrun,
    read_steps,
    run_manifest,
    wait_for,
    wait_for_phase,
)
from test_taskrun_lifecycle import task_manifest

from durakube.store import logs, pools

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def test_killed_sync_worker_resumes_and_completed_def_steps_never_run_again(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    create(custom, namespace,
           task_manifest("sync-crasher", "sync-crash-in-three", modules=["syncing"]),
           run_manifest("sync-crash-1", "sync-crasher"))
    run = wait_for_phase(custom, namespace, "sync-crash-1", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["attempt"] == 2
    assert run["status"]["infrastructureFailures"] == 1
    # Steps 1 and 2 were recorded before the kill and replayed; step 3 was cut short
    # (killed after its side effect, before its checkpoint) and ran again.
    assert effects(operator.database_url, run["metadata"]["uid"]) == {
        "step-1": 1, "step-2": 1, "step-3": 2, "step-4": 1}
    assert run["status"]["output"] == {"counts": [1, 1, 2, 1], "attempt": 2}


def test_a_blocked_def_step_leaves_the_workers_loop_running(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    create(custom, namespace, task_manifest("sync-hold", "sync-hold", modules=["syncing"]),
           run_manifest("sync-hold-1", "sync-hold"))
    # The run's id is its TaskRun's uid.
    run_id = get_taskrun(custom, namespace, "sync-hold-1")["metadata"]["uid"]
    # The line is shipped by the worker's loop while the step blocks its own thread.
    wait_for(lambda: f"holding run {run_id}" in stored_log(operator.database_url, run_id),
             what="the held step's line in the attempt's stored log")
    assert read_steps(operator.database_url, run_id) == []

    release(operator.database_url, run_id)
    run = wait_for_phase(custom, namespace, "sync-hold-1", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert [step.name for step in read_steps(operator.database_url, run_id)] == ["hold"]


def stored_log(database_url: str, run_id: str) -> str:
    async def read() -> str:
        pool = await pools.connect(database_url, max_size=1)
        try:
            return "".join(log.text for log in await logs.read_logs(pool, run_id))
        finally:
            await pool.close()

    return asyncio.run(read())



def release(database_url: str, run_id: str) -> None:
    """Counts a "release" for the run: what its held step waits for (tasks/effects.py)."""
    async def write() -> Any:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(
                "INSERT INTO public.test_effects (run_id, step, count) VALUES ($1, 'release', 1)",
                run_id)
        finally:
            await connection.close()

    asyncio.run(write())

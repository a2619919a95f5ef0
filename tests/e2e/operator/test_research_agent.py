"""The research agent example on the test bed: killed inside a tool call, and as the local
runner runs it.

tasks/researching.py runs the example's agent loop with each tool call counted per
attempt and one call held in the first attempt; the test SIGKILLs the worker while
that call is held. The example itself, applied from examples/research-agent.yaml in
the examples image, records the same run on the cluster as `durakube.testing`'s
local runner records in-process.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from helpers import (
    InstalledOperator,
    container_pids,
    create,
    effects,
    get_taskrun,
    kubectl,
    read_steps,
    run_manifest,
    wait_for,
    wait_for_phase,
)
from test_taskrun_lifecycle import task_manifest

from devcluster import cluster as devcluster_cluster
from devcluster import postgres
from durakube.testing import AsyncLocalRunner

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

ROOT = Path(__file__).resolve().parents[3]
QUESTION = "How does a Fresnel lens make a lighthouse visible so far?"


def test_worker_killed_inside_a_tool_call_runs_no_completed_call_again(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    create(custom, namespace,
           task_manifest("researcher", "research-agent-counted", modules=["researching"]),
           run_manifest("research-1", "researcher", {"question": QUESTION, "hold": "call-2-2"}))
    run_id = get_taskrun(custom, namespace, "research-1")["metadata"]["uid"]
    # The second fetch of the second turn is running (and held) in attempt 1.
    wait_for(lambda: effects(operator.database_url, run_id).get("call-2-2@1"),
             what="the held tool call running in attempt 1")
    before = read_steps(operator.database_url, run_id)
    assert [(step.name, step.attempt) for step in before] == [
        ("model-turn-1", 1), ("tool:search:call-1-1", 1), ("model-turn-2", 1),
        ("tool:fetch:call-2-1", 1)]
    pids = container_pids("DURAKUBE_POD_NAME", "research-1-1")
    assert pids, "the worker process of pod research-1-1 is not on this machine"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    run = wait_for_phase(custom, namespace, "research-1", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["attempt"] == 2
    assert run["status"]["infrastructureFailures"] == 1
    # Each call counted once per attempt that ran it: the completed calls in attempt 1
    # only, the one cut short in both.
    assert effects(operator.database_url, run_id) == {
        "call-1-1@1": 1, "call-2-1@1": 1, "call-2-2@1": 1, "call-2-2@2": 1}
    after = read_steps(operator.database_url, run_id)
    assert after[:4] == before
    assert [(step.name, step.attempt) for step in after[4:]] == [
        ("tool:fetch:call-2-2", 2), ("model-turn-3", 2)]
    assert "[fresnel-lens]" in run["status"]["output"]["answer"]


def test_the_example_runs_on_the_cluster_as_under_the_local_runner(
        cluster: devcluster_cluster.Cluster, namespace: str,
        custom: kubernetes.client.CustomObjectsApi, operator: InstalledOperator,
        pg_server: postgres.PostgresServer) -> None:
    kubectl(cluster, "apply", "-n", namespace, "-f", str(ROOT / "examples" / "research-agent.yaml"))
    run = wait_for_phase(custom, namespace, "research-lighthouses", {"Succeeded", "Failed"})
    assert run["status"]["phase"] == "Succeeded", run["status"]
    on_cluster = read_steps(operator.database_url, run["metadata"]["uid"])

    research_agent = import_example()
    local = asyncio.run(run_locally(pg_server.create_database(), research_agent,
                                    {"question": QUESTION}))

    assert local.phase == "Succeeded"
    assert [(step.name, step.result) for step in local.steps] == [
        (step.name, step.result) for step in on_cluster]
    assert local.output["answer"] == run["status"]["output"]["answer"]
    assert len(on_cluster) == 6


def import_example() -> Any:
    folder = str(ROOT / "examples")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("research_agent")


async def run_locally(database_url: str, module: Any, payload: dict[str, Any]) -> Any:
    async with AsyncLocalRunner(database_url) as runner:
        return await runner.run(module.research_agent, payload)


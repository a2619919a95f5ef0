"""Forks end to end: `replay(run, from_step=N)` and `durakube replay RUN --from-step N` reuse
the steps recorded before N (their results and `ctx.state`) and run N onwards again, on
the real test bed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes
import pytest
from clientbed import client, install_task
from helpers import InstalledOperator, create, effects, run_manifest, wait_for_phase

from devcluster import cluster as devcluster_cluster
from durakube.client import CannotFork, Client

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
__all__ = ["client"]  # a fixture, imported for pytest

DURAKUBE = str(Path(sys.executable).parent / "durakube")


def test_fork_from_a_step_runs_only_that_step_and_the_ones_after(
        client: Client, custom: kubernetes.client.CustomObjectsApi, namespace: str,
        operator: InstalledOperator) -> None:
    install_task(custom, namespace, "sum-steps", "sum-steps", "behaviours")
    first = client.trigger("sum-steps", {})
    assert client.result(first, timeout=60) == {"total": 6, "attempt": 1}
    with pytest.raises(CannotFork, match="recorded steps 1 to 3, not step 4"):
        client.replay(first, from_step=4)

    fork = client.replay(first, from_step=3)
    # Step 3 starts from the state steps 1 and 2 left (1 + 2), and only it runs again.
    assert client.result(fork, timeout=60) == {"total": 6, "attempt": 1}
    assert effects(operator.database_url, fork.run_id) == {"step-3": 1}
    assert effects(operator.database_url, first.run_id) == {"step-1": 1, "step-2": 1, "step-3": 1}
    assert [(step.seq, step.name, step.attempt) for step in client.steps(fork)] == [
        (1, "step-1", 0), (2, "step-2", 0), (3, "step-3", 1)]
    origin = client.get(fork).replay_of
    assert origin is not None
    assert (origin["run"], origin["runId"], origin["fromStep"]) == (first.name, first.run_id, 3)

    # The operator checks a fork written by hand as well: it fails with the reason.
    create(custom, namespace, run_manifest("bad-fork", "sum-steps", replayOf={
        "run": first.name, "runId": first.run_id, "fromStep": 7}))
    failed = wait_for_phase(custom, namespace, "bad-fork", {"Failed", "Succeeded"})
    condition = next(c for c in failed["status"]["conditions"] if c["type"] == "Succeeded")
    assert (failed["status"]["phase"], condition["reason"]) == ("Failed", "Invalid")
    assert "not step 7" in condition["message"]


def test_cli_forks_a_run_and_get_shows_where_it_came_from(
        client: Client, cluster: devcluster_cluster.Cluster,
        custom: kubernetes.client.CustomObjectsApi, namespace: str,
        operator: InstalledOperator) -> None:
    install_task(custom, namespace, "sum-steps", "sum-steps", "behaviours")
    first = client.trigger("sum-steps", {})
    assert client.wait(first, timeout=60).phase == "Succeeded"
    env = {**cluster.env(), "DURAKUBE_DATABASE_URL": operator.database_url}

    def durakube(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DURAKUBE, "-n", namespace, *args], env=env, capture_output=True,
                              text=True, timeout=120)

    refused = durakube("replay", first.name, "--from-step", "9")
    assert refused.returncode != 0 and "not step 9" in refused.stderr, refused.stderr
    made = durakube("replay", first.name, "--from-step", "2", "-o", "json")
    assert made.returncode == 0, made.stderr
    fork = json.loads(made.stdout)
    assert client.result(fork["name"], timeout=60) == {"total": 6, "attempt": 1}
    assert effects(operator.database_url, fork["runId"]) == {"step-2": 1, "step-3": 1}
    shown = durakube("get", fork["name"])
    assert "Fork of:" in shown.stdout and f"{first.name} from step 2" in shown.stdout

"""The `durakube` CLI through its real entry point (.venv/bin/durakube), one test per
command, on the real test bed with the operator; KUBECONFIG and DURAKUBE_DATABASE_URL
come from the environment, as a user's shell would set them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes
import pytest
import yaml
from clientbed import TASKS_DIR, TEST_IMAGE, install_task, install_tasks
from helpers import InstalledOperator, get_taskrun, kubectl, wait_for_phase

from devcluster import cluster as devcluster_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

DURAKUBE = str(Path(sys.executable).parent / "durakube")


@pytest.fixture
def durakube(cluster: devcluster_cluster.Cluster, operator: InstalledOperator, namespace: str):
    env = {**cluster.env(), "DURAKUBE_DATABASE_URL": operator.database_url}

    def run(*args: str, check: bool = True, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([DURAKUBE, "-n", namespace, *args], env=env, cwd=cwd,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"durakube {' '.join(args)} exited {result.returncode}:\n"
                        f"{result.stdout}\n{result.stderr}")
        return result

    return run


def test_manifests_prints_tasks_that_kubectl_applies_and_trigger_wait_runs(
        durakube, cluster: devcluster_cluster.Cluster, namespace: str) -> None:
    printed = durakube("manifests", "echoing", "--image", TEST_IMAGE, cwd=TASKS_DIR).stdout
    documents = list(yaml.safe_load_all(printed))
    assert [d["metadata"]["name"] for d in documents] == ["echo", "greet"]
    assert documents[1]["spec"]["inputSchema"]["required"] == ["name"]
    kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=printed)
    result = durakube("trigger", "greet", "--payload", '{"name": "cli"}', "--wait",
                      "--timeout", "60")
    assert json.loads(result.stdout) == {"message": "hello cli", "length": 9}
    # The progress display: each completed step by name, then the outcome.
    assert "step 1: compose" in result.stderr
    assert "Succeeded" in result.stderr


def test_trigger_with_options_then_get_list_steps_and_logs(
        durakube, custom: kubernetes.client.CustomObjectsApi, namespace: str,
        tmp_path: Path) -> None:
    install_tasks(custom, namespace, "echoing")
    payload_file = tmp_path / "payload.json"
    payload_file.write_text('{"word": "from a file"}')
    created = json.loads(durakube(
        "trigger", "echo", "--payload-file", str(payload_file), "--priority", "5",
        "--key", "tenant-a", "--idempotency-key", "k-1", "--tag", "cli", "-o", "json").stdout)
    assert created["created"] is True
    again = durakube("trigger", "echo", "--payload", "{}", "--idempotency-key", "k-1")
    assert again.stdout.strip() == f"taskrun/{created['name']} exists"
    run = get_taskrun(custom, namespace, created["name"])
    assert run["spec"]["priority"] == 5 and run["spec"]["concurrencyKey"] == "tenant-a"
    assert run["metadata"]["labels"]["durakube.io/tag-cli"] == "true"

    waited = durakube("wait", created["name"], "--timeout", "60", "-o", "json")
    assert json.loads(waited.stdout) == {"word": "from a file"}

    shown = durakube("get", created["name"]).stdout
    assert "Phase:" in shown and "Succeeded" in shown and "Tags:" in shown
    assert json.loads(durakube("get", created["name"], "-o", "json").stdout)["phase"] == "Succeeded"

    table = durakube("list", "--task", "echo", "--phase", "Succeeded").stdout.splitlines()
    assert table[0].split() == ["NAME", "TASK", "PHASE", "REASON", "ATTEMPT", "STEP", "AGE", "SOURCE"]
    assert created["name"] in table[1]
    assert yaml.safe_load(durakube("list", "-o", "yaml", "--limit", "1").stdout)[0]["name"] == \
        created["name"]

    steps = durakube("steps", created["name"]).stdout.splitlines()
    assert steps[0].split()[:4] == ["SEQ", "NAME", "STATUS", "ATTEMPT"]
    assert steps[1].split()[:4] == ["1", "measure", "succeeded", "1"]

    logs = durakube("logs", created["name"]).stdout
    assert f"==> attempt 1 (pod {created['name']}-1) <==" in logs


def test_failed_run_exits_nonzero_with_the_error(
        durakube, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_task(custom, namespace, "broken", "broken", "behaviours")
    result = durakube("trigger", "broken", "--payload", '{"item": "x-1"}', "--wait",
                      "--timeout", "60", check=False)
    assert result.returncode == 1
    assert "Failed (Failed): ValueError: cannot process x-1" in result.stderr
    unknown = durakube("trigger", "nope", check=False)
    assert unknown.returncode == 1 and "error: no Task 'nope'" in unknown.stderr
    bad = durakube("trigger", "broken", "--payload", "{not json", check=False)
    assert bad.returncode == 1 and "--payload is not valid JSON" in bad.stderr


def test_cancel_replay_and_wait_timeout(
        durakube, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_task(custom, namespace, "nap", "nap", "behaviours")
    name = json.loads(durakube("trigger", "nap", "--payload", '{"seconds": 120}',
                               "-o", "json").stdout)["name"]
    timed_out = durakube("wait", name, "--timeout", "1", check=False)
    assert timed_out.returncode == 1 and "did not finish within 1s" in timed_out.stderr
    assert durakube("cancel", name).stdout.strip() == f"taskrun/{name} cancel requested"
    wait_for_phase(custom, namespace, name, {"Canceled"}, timeout=60)
    replayed = durakube("replay", name).stdout.strip()
    assert replayed.startswith("taskrun/nap-") and f"(replay of {name})" in replayed
    new_name = replayed.split()[0].split("/", 1)[1]
    assert get_taskrun(custom, namespace, new_name)["spec"]["payload"] == {"seconds": 120}
    durakube("cancel", new_name)


def test_send_event_and_complete_token(durakube) -> None:
    sent = durakube("send-event", "order-7/paid", "--data", '{"amount": 3}', check=False)
    completed = durakube("complete-token", "wpt_unknown", "--data", "{}", check=False)
    assert sent.returncode == 0, sent.stderr
    assert "buffered (no run waits on 'order-7/paid' yet)" in sent.stdout
    assert completed.returncode == 1
    assert "error: no waitpoint has token" in completed.stderr


def test_send_event_refuses_a_child_result_key(durakube, namespace: str) -> None:
    forged = durakube("send-event", f"durakube.io/run/{namespace}/parent-c1", "--data",
                      '{"phase": "Succeeded", "output": "forged"}', check=False)
    assert forged.returncode == 1
    assert "is reserved" in forged.stderr and "only the operator sends" in forged.stderr


def test_a_tasks_metadata_reaches_the_taskrun_and_durakube_get(
        durakube, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    install_task(custom, namespace, "report-progress", "report-progress", "behaviours")
    name = json.loads(durakube("trigger", "report-progress", "-o", "json").stdout)["name"]
    run = wait_for_phase(custom, namespace, name, {"Succeeded", "Failed"}, timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    # The last update removed "last": the status holds the merged result, not a history.
    assert run["status"]["metadata"] == {"done": 3, "of": 3}
    shown = json.loads(durakube("get", name, "-o", "json").stdout)
    assert shown["metadata"] == {"done": 3, "of": 3}
    assert 'Metadata:' in durakube("get", name).stdout

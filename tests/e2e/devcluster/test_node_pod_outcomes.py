"""Pods run by the process node end as the kubelet would end them: phases, exit
codes, reasons, termination messages, logs, environment and restarts."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Pods, container_status, shell, waiting_reason

from devcluster import cluster as devcluster_cluster
from devcluster.node import logs

pytestmark = pytest.mark.e2e


def test_never_pod_succeeds_and_its_output_is_in_the_logs(
        pods: Pods, cluster: devcluster_cluster.Cluster) -> None:
    pods.create("hello", [shell("main", "echo hello")])
    pod = pods.wait_for_phase("hello", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == "127.0.0.1"
    assert "hello" in logs.read(cluster.state_dir / "nodes" / "node-1", pods.namespace,
                                "hello", "main")
    kubectl = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "logs", "-n", pods.namespace, "hello", "-c", "main"],
        env=cluster.env(), capture_output=True, text=True, timeout=30)
    assert kubectl.returncode == 0, kubectl.stderr
    assert kubectl.stdout == "hello\n"


def test_failing_command_fails_the_pod_with_its_exit_code(pods: Pods) -> None:
    pods.create("failing", [shell("main", "echo oops >&2; exit 3")])
    pod = pods.wait_for_phase("failing", "Failed", "Succeeded")
    assert pod["status"]["phase"] == "Failed"
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_missing_command_is_a_start_error(pods: Pods) -> None:
    pods.create("nocommand", [{"name": "main", "image": "busybox",
                               "command": ["no-such-program-here"]}])
    pod = pods.wait_for_phase("nocommand", "Failed", "Succeeded")
    terminated = container_status(pod)["state"]["terminated"]
    assert terminated["reason"] == "StartError"
    assert "no-such-program-here" in terminated["message"]


def test_termination_message_written_by_the_container_is_reported(pods: Pods) -> None:
    pods.create("message", [
        shell("default-path", "printf 'all done' > /dev/termination-log"),
        shell("custom-path", "printf 'custom' > /tmp/durakube-message; exit 1",
              terminationMessagePath="/tmp/durakube-message"),
    ])
    pod = pods.wait_for_phase("message", "Failed", "Succeeded")
    assert container_status(pod, "default-path")["state"]["terminated"]["message"] == "all done"
    assert container_status(pod, "custom-path")["state"]["terminated"]["message"] == "custom"


def test_fallback_to_logs_on_error_uses_the_log_tail(pods: Pods) -> None:
    pods.create("fallback", [
        shell("failed", "for i in $(seq 1 100); do echo line $i; done; exit 2",
              terminationMessagePolicy="FallbackToLogsOnError"),
        shell("succeeded", "echo fine", terminationMessagePolicy="FallbackToLogsOnError"),
    ])
    pod = pods.wait_for_phase("fallback", "Failed", "Succeeded")
    message = container_status(pod, "failed")["state"]["terminated"]["message"]
    assert message.endswith("line 100\n")
    assert "line 21\n" in message and "line 20\n" not in message  # the last 80 lines
    assert "message" not in container_status(pod, "succeeded")["state"]["terminated"]


def test_environment_comes_from_secrets_configmaps_fields_and_expansion(pods: Pods) -> None:
    core = pods.core
    core.create_namespaced_secret(pods.namespace, {
        "metadata": {"name": "creds"},
        "data": {"password": base64.b64encode(b"s3cret").decode(),
                 "user": base64.b64encode(b"alice").decode()}})
    core.create_namespaced_config_map(pods.namespace, {
        "metadata": {"name": "settings"}, "data": {"mode": "fast", "level": "3"}})
    script = ('echo "pw=$PASSWORD mode=$MODE name=$POD_NAME ns=$POD_NAMESPACE app=$APP '
              'node=$NODE ip=$POD_IP greeting=$GREETING cfg_level=$CFG_level user=$user '
              'missing=${OPTIONAL:-unset} svc=$KUBERNETES_SERVICE_HOST cwd=$(pwd)"; '
              'echo "args: $0 $1"')
    pods.create("env", [{
        "name": "main", "image": "busybox",
        "command": ["sh", "-c", script, "$(MODE)", "$$(MODE)"],
        "workingDir": "/tmp",
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "creds"}}],
        "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                               "key": "mode"}}},
            {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {
                "name": "absent", "key": "x", "optional": True}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "GREETING", "value": "hi-$(POD_NAME)"},
        ],
    }], labels={"app": "demo"})
    pod = pods.wait_for_phase("env", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    text = pods_log(pods, "env", "main")
    assert (f"pw=s3cret mode=fast name=env ns={pods.namespace} app=demo node=node-1 "
            f"ip=127.0.0.1 greeting=hi-env cfg_level=3 user=alice missing=unset "
            f"svc=127.0.0.1 cwd=/tmp") in text
    assert "args: fast $(MODE)" in text


def pods_log(pods: Pods, name: str, container: str) -> str:
    return str(pods.core.read_namespaced_pod_log(name, pods.namespace, container=container))


def test_missing_secret_keeps_the_container_waiting(pods: Pods) -> None:
    pods.create("nosecret", [{**shell("main", "true"), "env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}])
    pod = pods.wait_for("nosecret",
                        lambda p: waiting_reason(p) == "CreateContainerConfigError",
                        what="CreateContainerConfigError")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert 'secret "absent" not found' in container_status(pod)["state"]["waiting"]["message"]


def test_active_deadline_fails_the_pod_with_deadline_exceeded(pods: Pods) -> None:
    pods.create("deadline", [shell("main", "sleep 600")], activeDeadlineSeconds=2)
    pod = pods.wait_for_phase("deadline", "Failed", "Succeeded", timeout=30)
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert "deadline" in pod["status"]["message"]
    # The containers are killed (SIGTERM first) once the deadline passed.
    pod = pods.wait_for("deadline", lambda p: p is not None and
                        "terminated" in container_status(p)["state"], timeout=10,
                        what="terminated container")
    assert pod is not None and pod["status"]["phase"] == "Failed"


def test_on_failure_restarts_the_container_until_it_succeeds(pods: Pods) -> None:
    script = "if [ -f /data/tried ]; then echo second; exit 0; fi; touch /data/tried; exit 1"
    pods.create("retry", [{**shell("main", script),
                           "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                restartPolicy="OnFailure", volumes=[{"name": "data", "emptyDir": {}}])
    pod = pods.wait_for_phase("retry", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded"
    status = container_status(pod)
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert pods_log(pods, "retry", "main") == "second\n"
    previous = pods.core.read_namespaced_pod_log("retry", pods.namespace, previous=True)
    assert previous == ""


def test_init_containers_run_first_and_in_order(pods: Pods) -> None:
    volume_mount = {"name": "data", "mountPath": "/work"}
    pods.create("init", [
        {**shell("main", "cat /work/order"), "volumeMounts": [volume_mount]},
    ], initContainers=[
        {**shell("first", "echo first >> /work/order"), "volumeMounts": [volume_mount]},
        {**shell("second", "echo second >> /work/order"), "volumeMounts": [volume_mount]},
    ], volumes=[{"name": "data", "emptyDir": {}}])
    pod = pods.wait_for_phase("init", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded"
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Initialized"] == "True"
    assert pods_log(pods, "init", "main") == "first\nsecond\n"
    assert container_status(pod, "first", init=True)["state"]["terminated"]["exitCode"] == 0


def test_image_without_entrypoint_waits_with_err_image_pull(pods: Pods) -> None:
    pods.create("noimage", [{"name": "main", "image": "example.com/unknown:1.0"}])
    pod = pods.wait_for("noimage", lambda p: waiting_reason(p) == "ErrImagePull",
                        what="ErrImagePull")
    assert pod is not None
    assert "no entrypoint" in container_status(pod)["state"]["waiting"]["message"]


def test_security_context_sets_user_and_refuses_root_for_non_root_pods(pods: Pods) -> None:
    pods.create("user", [{**shell("main", "id -u; id -g; grep NoNewPrivs /proc/self/status"),
                          "securityContext": {"runAsUser": 65534, "runAsGroup": 65534,
                                              "allowPrivilegeEscalation": False}}])
    pods.create("nonroot", [shell("main", "true")], securityContext={"runAsNonRoot": True})
    pod = pods.wait_for_phase("user", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    text = pods_log(pods, "user", "main")
    assert text.split()[:2] == ["65534", "65534"] and "NoNewPrivs:\t1" in text
    refused = pods.wait_for("nonroot",
                            lambda p: waiting_reason(p) == "CreateContainerConfigError",
                            what="CreateContainerConfigError")
    assert refused is not None
    assert "runAsNonRoot" in container_status(refused)["state"]["waiting"]["message"]


def test_readiness_probe_gates_the_ready_condition(pods: Pods) -> None:
    pods.create("probed", [{
        **shell("main", "sleep 2; touch /data/ready; sleep 600"),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"exec": {"command": ["cat", "/data/ready"]}, "periodSeconds": 1},
    }], volumes=[{"name": "data", "emptyDir": {}}])

    def ready(pod: dict[str, Any] | None) -> str | None:
        if pod is None:
            return None
        conditions = pod["status"].get("conditions", [])
        return next((c["status"] for c in conditions if c["type"] == "Ready"), None)

    running = pods.wait_for_phase("probed", "Running")
    assert ready(running) == "False" or container_status(running)["ready"] is False
    pods.wait_for("probed", lambda p: ready(p) == "True", timeout=20, what="Ready")


def test_kubectl_logs_follows_a_running_container(
        pods: Pods, cluster: devcluster_cluster.Cluster) -> None:
    pods.create("ticker", [shell("main", "for i in 1 2 3; do echo tick $i; sleep 0.5; done")])
    pods.wait_for_phase("ticker", "Running", "Succeeded")
    follow = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "logs", "-f", "-n", pods.namespace,
         "ticker"], env=cluster.env(), capture_output=True, text=True, timeout=30)
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.endswith("tick 3\n")
    tail = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "logs", "--tail=1", "--timestamps",
         "-n", pods.namespace, "ticker"], env=cluster.env(), capture_output=True, text=True,
        timeout=30)
    assert tail.stdout.endswith("Z tick 3\n") and tail.stdout.count("\n") == 1

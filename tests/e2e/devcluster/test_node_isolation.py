"""What the process node gives a container besides a command: memory limits
(OOMKilled), volumes in a private mount namespace, an in-cluster service-account
token, and a kubelet endpoint that only the cluster's own clients may use."""

from __future__ import annotations

import base64
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import Pods, container_status, shell

from devcluster import cluster as devcluster_cluster

pytestmark = pytest.mark.e2e

WHOAMI = """
import json, os, ssl, urllib.request
base = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(base + "/token").read()
namespace = open(base + "/namespace").read()
context = ssl.create_default_context(cafile=base + "/ca.crt")
url = "https://%s:%s/apis/authentication.k8s.io/v1/selfsubjectreviews" % (
    os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
request = urllib.request.Request(url, method="POST", data=json.dumps({
    "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
review = json.load(urllib.request.urlopen(request, context=context))
print("namespace", namespace)
print("user", review["status"]["userInfo"]["username"])
"""


def test_process_over_its_memory_limit_is_oom_killed(pods: Pods) -> None:
    allocate = "data = b'x' * (300 * 1024 * 1024); print(len(data))"
    pods.create("hungry", [{"name": "main", "image": "busybox",
                            "command": [sys.executable, "-c", allocate],
                            "resources": {"limits": {"memory": "64Mi"}}}])
    pod = pods.wait_for_phase("hungry", "Failed", "Succeeded")
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_service_account_token_authenticates_in_cluster(pods: Pods) -> None:
    pods.create("whoami", [{"name": "main", "image": "busybox",
                            "command": [sys.executable, "-c", WHOAMI]}])
    pods.create("notoken", [shell("main", "cat /var/run/secrets/kubernetes.io/serviceaccount/token")],
                automountServiceAccountToken=False)
    pod = pods.wait_for_phase("whoami", "Succeeded", "Failed")
    text = pods.core.read_namespaced_pod_log("whoami", pods.namespace)
    assert pod["status"]["phase"] == "Succeeded", text
    assert f"namespace {pods.namespace}" in text
    assert f"user system:serviceaccount:{pods.namespace}:default" in text
    assert pods.wait_for_phase("notoken", "Succeeded", "Failed")["status"]["phase"] == "Failed"


def test_volumes_are_mounted_with_their_contents(pods: Pods, tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "greeting").write_text("from the host\n")
    pods.core.create_namespaced_secret(pods.namespace, {
        "metadata": {"name": "files"}, "data": {"key": base64.b64encode(b"secret!").decode()}})
    pods.core.create_namespaced_config_map(pods.namespace, {
        "metadata": {"name": "conf"}, "data": {"app.ini": "[app]\nx=1\n"}})
    script = ("cat /etc/secret/key; echo; cat /etc/conf/app.ini; cat /etc/info/name; echo; "
              "echo scratch > /scratch/file && cat /scratch/file; "
              "touch /etc/secret/new 2>/dev/null && echo writable || echo read-only; "
              f"cat {tmp_path}/inside/greeting")
    pods.create("volumes", [{**shell("main", script), "volumeMounts": [
        {"name": "secret", "mountPath": "/etc/secret", "readOnly": True},
        {"name": "conf", "mountPath": "/etc/conf"},
        {"name": "info", "mountPath": "/etc/info"},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "host", "mountPath": str(tmp_path / "inside")},
    ]}], volumes=[
        {"name": "host", "hostPath": {"path": str(tmp_path / "host"), "type": "Directory"}},
        {"name": "secret", "secret": {"secretName": "files"}},
        {"name": "conf", "configMap": {"name": "conf"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"name": "scratch", "emptyDir": {}},
    ])
    pod = pods.wait_for_phase("volumes", "Succeeded", "Failed")
    text = pods.core.read_namespaced_pod_log("volumes", pods.namespace)
    assert pod["status"]["phase"] == "Succeeded", text
    assert text == "secret!\n[app]\nx=1\nvolumes\nscratch\nread-only\nfrom the host\n"


def test_kubelet_endpoint_refuses_clients_without_a_cluster_certificate(
        cluster: devcluster_cluster.Cluster, kube: object) -> None:
    node = cluster.api_get("/api/v1/nodes/node-1")
    assert isinstance(node, dict)
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    anonymous = ssl.create_default_context(cafile=str(cluster.ca.cert_path))
    anonymous.check_hostname = False
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=anonymous,
                               timeout=5).read()
    admin = ssl.create_default_context(cafile=str(cluster.ca.cert_path))
    admin.check_hostname = False
    admin.load_cert_chain(str(cluster.state_dir / "pki" / "admin.crt"),
                          str(cluster.state_dir / "pki" / "admin.key"))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=admin,
                                timeout=5) as response:
        assert response.read() == b"ok"
    assert json.dumps(node["status"]["nodeInfo"]["kubeletVersion"]) == '"v1.37.2"'

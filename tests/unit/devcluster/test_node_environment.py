"""Environment and command resolution of the process node, as the kubelet does it."""

from __future__ import annotations

import base64

import pytest

from devcluster.node import environment, images

MAPPING = {"NAME": "world", "EMPTY": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("hello $(NAME)", "hello world"),
    ("$(NAME)$(NAME)", "worldworld"),
    ("$$(NAME)", "$(NAME)"),
    ("$(UNKNOWN)", "$(UNKNOWN)"),
    ("$(EMPTY)x", "x"),
    ("cost: $5", "cost: $5"),
    ("$(NAME", "$(NAME"),
    ("trailing $", "trailing $"),
    ("$$$(NAME)", "$world"),
], ids=["simple", "twice", "escaped", "unknown-kept", "empty", "plain-dollar",
        "unclosed", "trailing-dollar", "escape-then-var"])
def test_variable_references_expand_like_kubernetes(text: str, expected: str) -> None:
    assert environment.expand(text, MAPPING) == expected


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                    "labels": {"app": "demo"}, "annotations": {"a": "b"}},
       "spec": {"nodeName": "node-1", "containers": [
           {"name": "main", "resources": {"limits": {"memory": "64Mi"},
                                          "requests": {"cpu": "250m"}}}]}}

OBJECTS = {
    ("Secret", "ns", "s"): {"data": {"k": base64.b64encode(b"v").decode()}},
    ("ConfigMap", "ns", "c"): {"data": {"x": "1", "y": "2"}},
}


async def fetch(kind: str, namespace: str, name: str) -> dict[str, object] | None:
    return OBJECTS.get((kind, namespace, name))


async def test_env_sources_resolve_in_kubelet_order() -> None:
    container = {"name": "main",
                 "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "C_"}],
                 "env": [
                     {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                     {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                     {"name": "APP", "valueFrom": {"fieldRef": {
                         "fieldPath": "metadata.labels['app']"}}},
                     {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                         "resource": "limits.memory", "divisor": "1Mi"}}},
                     {"name": "CPU", "valueFrom": {"resourceFieldRef": {
                         "resource": "requests.cpu", "divisor": "1m"}}},
                     {"name": "GONE", "valueFrom": {"configMapKeyRef": {
                         "name": "missing", "key": "k", "optional": True}}},
                     {"name": "COMBINED", "value": "$(POD)-$(C_x)-$(KUBERNETES_SERVICE_PORT)"},
                 ]}
    env = await environment.resolve_env(POD, container, fetch, apiserver_port=6443,
                                        allocatable={"memory": "1Gi", "cpu": "2"})
    assert env["SECRET"] == "v" and env["POD"] == "p" and env["APP"] == "demo"
    assert env["MEM"] == "64" and env["CPU"] == "250"
    assert env["C_x"] == "1" and "GONE" not in env
    assert env["COMBINED"] == "p-1-6443"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"


async def test_missing_secret_is_a_config_error() -> None:
    container = {"name": "main", "env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}
    with pytest.raises(environment.ConfigError, match='secret "absent" not found'):
        await environment.resolve_env(POD, container, fetch, apiserver_port=1, allocatable={})


@pytest.mark.parametrize(("image", "command", "args", "expected"), [
    ("ghcr.io/acme/durakube/worker:1.2", None, ["--x"], ["*/durakube-worker", "--x"]),
    ("durakube/operator@sha256:abc", None, None, ["*/durakube-operator"]),
    ("busybox", ["sh", "-c"], ["echo"], ["sh", "-c", "echo"]),
    ("localhost:5000/tools/mine:v1", None, ["a"], ["/opt/mine", "a"]),
], ids=["worker-image", "operator-digest", "command-wins", "mapped-with-port-registry"])
def test_images_map_to_local_entrypoints(image: str, command: list[str] | None,
                                         args: list[str] | None, expected: list[str]) -> None:
    table = images.ImageTable({**images.BUILTIN_ENTRYPOINTS, "tools/mine": ["/opt/mine"]})
    argv = table.resolve_command(image, command, args)
    assert len(argv) == len(expected)
    for got, want in zip(argv, expected, strict=True):
        assert got.endswith(want[1:]) if want.startswith("*") else got == want


def test_unmapped_image_without_command_has_no_entrypoint() -> None:
    with pytest.raises(images.NoEntrypointError, match="no entrypoint"):
        images.load_image_table(None).resolve_command("nginx:1.27", None, None)

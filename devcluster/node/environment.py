"""A container's environment and command line, resolved as the kubelet does.

Order: the service variables the kubelet injects (so in-cluster config finds the
apiserver), then `envFrom` sources, then `env` entries (each value may use
`$(VAR)` of what came before); finally `$(VAR)` in command and args is expanded
against the whole environment. Secrets and ConfigMaps come through a `Fetch`
callable, so the logic is testable without a cluster.

Called by `running` before each container start; it makes no API calls itself.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from devcluster.node import quantities

Json = dict[str, Any]
# fetch(kind, namespace, name) -> the object, or None when it does not exist.
Fetch = Callable[[str, str, str], Awaitable[Json | None]]


class ConfigError(Exception):
    """The container cannot be configured (reason CreateContainerConfigError)."""


def expand(text: str, mapping: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, unknown ones kept
    verbatim, `$$` escapes a dollar."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            following = text[cursor + 1]
            if following == "$":
                out.append("$")
                advance = 1
            elif following == "(":
                closing = text.find(")", cursor + 2)
                if closing == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = text[cursor + 2: closing]
                    out.append(mapping.get(name, f"$({name})"))
                    advance = closing - cursor
            else:
                out.append("$" + following)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def build_service_env(apiserver_port: int) -> dict[str, str]:
    """The `kubernetes` service's variables, pointing at the local apiserver."""
    port = str(apiserver_port)
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://127.0.0.1:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": port,
        f"KUBERNETES_PORT_{port}_TCP_ADDR": "127.0.0.1",
    }


def read_field(pod: Json, field_path: str) -> str:
    """The value of a downward-API fieldRef on `pod`."""
    metadata = pod.get("metadata", {})
    for prefix, key in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if field_path.startswith(prefix + "['") and field_path.endswith("']"):
            return str(metadata.get(key, {}).get(field_path[len(prefix) + 2: -2], ""))
        if field_path == prefix:
            items = sorted(metadata.get(key, {}).items())
            return "\n".join(f'{k}="{v}"' for k, v in items)
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": pod.get("spec", {}).get("nodeName", ""),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if field_path in simple:
        return str(simple[field_path])
    raise ConfigError(f"unsupported fieldRef fieldPath {field_path!r}")


def read_resource(pod: Json, container_name: str | None, resource: str,
                  divisor: str | None, allocatable: Mapping[str, str]) -> str:
    """The value of a resourceFieldRef; an unset limit reads as node allocatable,
    an unset request as 0 (cpu requests default to the limit, as defaulting does)."""
    containers = [*pod["spec"].get("initContainers", []), *pod["spec"].get("containers", [])]
    container = next((c for c in containers if c["name"] == container_name), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef names unknown container {container_name!r}")
    kind, _, name = resource.partition(".")
    resources = container.get("resources", {})
    value = resources.get(kind, {}).get(name)
    if value is None and kind == "requests":
        value = resources.get("limits", {}).get(name)
    if value is None:
        value = allocatable.get(name, "0") if kind == "limits" else "0"
    return quantities.format_resource(
        name, quantities.parse_quantity(value),
        quantities.parse_quantity(divisor) if divisor else Decimal(1))


async def _read_key(fetch: Fetch, kind: str, namespace: str, ref: Json) -> str | None:
    name, key, optional = ref.get("name", ""), ref["key"], bool(ref.get("optional"))
    obj = await fetch(kind, namespace, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    values = _decoded_data(kind, obj)
    if key not in values:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return values[key]


def _decoded_data(kind: str, obj: Json) -> dict[str, str]:
    if kind == "Secret":
        return {k: base64.b64decode(v).decode(errors="replace")
                for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


async def resolve_env(pod: Json, container: Json, fetch: Fetch, *, apiserver_port: int,
                      allocatable: Mapping[str, str]) -> dict[str, str]:
    """The environment variables of `container` (without the process basics such
    as PATH, which `running` adds underneath)."""
    namespace = pod["metadata"]["namespace"]
    service_env = build_service_env(apiserver_port)
    defined: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            obj = await fetch(kind, namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
            for key, data in _decoded_data(kind, obj).items():
                defined[prefix + key] = data
    for variable in container.get("env", []):
        name = variable["name"]
        source = variable.get("valueFrom")
        if source is None:
            defined[name] = expand(variable.get("value", ""), {**service_env, **defined})
            continue
        value: str | None
        if "fieldRef" in source:
            value = read_field(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            value = read_resource(pod, ref.get("containerName") or container["name"],
                                  ref["resource"], ref.get("divisor"), allocatable)
        elif "secretKeyRef" in source:
            value = await _read_key(fetch, "Secret", namespace, source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = await _read_key(fetch, "ConfigMap", namespace, source["configMapKeyRef"])
        else:
            raise ConfigError(f"unsupported valueFrom for env {name!r}")
        if value is not None:
            defined[name] = value
    return {**{k: v for k, v in service_env.items() if k not in defined}, **defined}


def expand_command(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """$(VAR) expansion of a container's command and args."""
    return [expand(part, env) for part in argv]

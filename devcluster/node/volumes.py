"""Pod volumes as folders on the host, ready to be bound into containers.

emptyDir is a folder per pod; secret, configMap, downwardAPI and projected
volumes (service-account tokens from the TokenRequest API, the
kube-root-ca.crt ConfigMap, the namespace) are written as files once, when the
pod starts; hostPath is the host's own path. `mounts_for` turns a container's
volumeMounts into the binds the launcher performs inside the container's
private mount namespace, so `/var/run/secrets/kubernetes.io/serviceaccount`
holds what in-cluster config expects, and is absent when the token is not
automounted.

Called by `running`; API objects come through `environment.Fetch` and a token
callable, so this module makes no API calls itself. Volumes are not refreshed
while the pod runs (tokens last an hour or more; tests are shorter).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from devcluster.node import environment, spawning

Json = dict[str, Any]
# request_token(service_account, audience, expiration_seconds) -> token
RequestToken = Callable[[str, str | None, int], Awaitable[str]]


class VolumeError(Exception):
    """A volume could not be set up (the pod stays ContainerCreating)."""


def volumes_dir(pod_folder: Path) -> Path:
    return pod_folder / "volumes"


async def prepare_volumes(pod: Json, pod_folder: Path, fetch: environment.Fetch,
                          request_token: RequestToken,
                          allocatable: Mapping[str, str]) -> dict[str, str]:
    """Materialises every volume of `pod`; returns volume name -> host path."""
    namespace = pod["metadata"]["namespace"]
    fs_group = pod["spec"].get("securityContext", {}).get("fsGroup")
    paths: dict[str, str] = {}
    for volume in pod["spec"].get("volumes", []):
        name = volume["name"]
        folder = volumes_dir(pod_folder) / name
        if "hostPath" in volume:
            paths[name] = _prepare_host_path(volume["hostPath"])
            continue
        if "emptyDir" in volume:
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)  # as the kubelet makes it: any container user may write
            paths[name] = str(folder)
            continue
        files: dict[str, tuple[bytes, int]] = {}
        if "secret" in volume:
            source = volume["secret"]
            await _add_object_files(files, fetch, "Secret", namespace,
                                    {**source, "name": source.get("secretName", "")},
                                    source.get("defaultMode", 0o644))
        elif "configMap" in volume:
            source = volume["configMap"]
            await _add_object_files(files, fetch, "ConfigMap", namespace, source,
                                    source.get("defaultMode", 0o644))
        elif "downwardAPI" in volume:
            source = volume["downwardAPI"]
            _add_downward_files(files, pod, source, source.get("defaultMode", 0o644),
                                allocatable)
        elif "projected" in volume:
            await _add_projected_files(files, pod, volume["projected"], fetch,
                                       request_token, allocatable)
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise VolumeError(f"volume {name!r}: type {', '.join(kinds)} is not supported "
                              f"by the process node")
        _write_files(folder, files, fs_group)
        paths[name] = str(folder)
    return paths


def _prepare_host_path(source: Json) -> str:
    path = Path(source["path"])
    kind = source.get("type", "")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind in ("Directory", "File", "Socket", "CharDevice", "BlockDevice") and \
            not path.exists():
        raise VolumeError(f"hostPath type check failed: {path} is not a {kind}")
    return str(path)


async def _add_object_files(files: dict[str, tuple[bytes, int]], fetch: environment.Fetch,
                            kind: str, namespace: str, source: Json, mode: int) -> None:
    name = source.get("name", "")
    obj = await fetch(kind, namespace, name)
    if obj is None:
        if source.get("optional"):
            return
        raise VolumeError(f'{kind.lower()} "{name}" not found')
    data: dict[str, bytes] = {}
    if kind == "Secret":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    else:
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    items = source.get("items")
    if not items:
        for key, value in data.items():
            files[key] = (value, mode)
        return
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"configmap/secret {name!r} has no key {item['key']!r}")
        files[item["path"]] = (data[item["key"]], item.get("mode", mode))


def _add_downward_files(files: dict[str, tuple[bytes, int]], pod: Json, source: Json,
                        mode: int, allocatable: Mapping[str, str]) -> None:
    for item in source.get("items", []):
        if "fieldRef" in item:
            value = environment.read_field(pod, item["fieldRef"]["fieldPath"])
        else:
            ref = item["resourceFieldRef"]
            value = environment.read_resource(pod, ref.get("containerName"), ref["resource"],
                                              ref.get("divisor"), allocatable)
        files[item["path"]] = (value.encode(), item.get("mode", mode))


async def _add_projected_files(files: dict[str, tuple[bytes, int]], pod: Json, projected: Json,
                               fetch: environment.Fetch, request_token: RequestToken,
                               allocatable: Mapping[str, str]) -> None:
    mode = projected.get("defaultMode", 0o644)
    namespace = pod["metadata"]["namespace"]
    for source in projected.get("sources", []):
        if "serviceAccountToken" in source:
            token_source = source["serviceAccountToken"]
            token = await request_token(pod["spec"].get("serviceAccountName", "default"),
                                        token_source.get("audience"),
                                        int(token_source.get("expirationSeconds", 3600)))
            files[token_source["path"]] = (token.encode(), mode)
        elif "configMap" in source:
            await _add_object_files(files, fetch, "ConfigMap", namespace, source["configMap"],
                                    mode)
        elif "secret" in source:
            await _add_object_files(files, fetch, "Secret", namespace, source["secret"], mode)
        elif "downwardAPI" in source:
            _add_downward_files(files, pod, source["downwardAPI"], mode, allocatable)
        else:
            raise VolumeError(f"projected source {sorted(source)} is not supported")


def _write_files(folder: Path, files: Mapping[str, tuple[bytes, int]],
                 fs_group: int | None) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    for relative, (data, mode) in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if fs_group is not None:
            os.chown(path, 0, fs_group)
            mode |= 0o040
        path.chmod(mode)


def mounts_for(container: Json, paths: Mapping[str, str]) -> list[spawning.Mount]:
    """The binds of a container's volumeMounts (subPath included)."""
    mounts = []
    for mount in container.get("volumeMounts", []):
        source = paths.get(mount["name"])
        if source is None:
            raise VolumeError(f"volumeMount {mount['name']!r} names no volume of the pod")
        sub_path = mount.get("subPath")
        if sub_path:
            source = os.path.join(source, sub_path)
            if not os.path.exists(source):
                os.makedirs(source, exist_ok=True)
        mounts.append(spawning.Mount(source, mount["mountPath"], bool(mount.get("readOnly"))))
    return mounts

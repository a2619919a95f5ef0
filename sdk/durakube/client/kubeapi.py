"""The client's calls to the Kubernetes API: blocking, with the official client.

`AsyncClient` runs each call in a thread of its own bounded pool; `Client` runs the
async client on a private loop. Every call maps the API's refusals to the client's
errors: 403 -> `failures.PermissionDenied` carrying the RBAC message, 404 -> None
(callers decide what is missing), 409 on create -> `AlreadyExists`. Configuration
comes from a kubeconfig (a path, or the default search) or, inside a pod, from the
service account.

Talks to the API only: never to Postgres.
"""

from __future__ import annotations

import json
import os
import threading
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes

from durakube import resources
from durakube.client import failures

T = TypeVar("T")
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RUN_UID_LABEL = "durakube.io/run-uid"
ATTEMPT_LABEL = "durakube.io/attempt"
# Server-side length of one watch request: long enough to be no polling, short enough
# that a stopped wait releases its thread soon.
WATCH_CHUNK_SECONDS = 10


class AlreadyExists(Exception):
    """A create met an object of that name (409)."""


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again, then watch."""


@dataclass(frozen=True)
class Settings:
    configuration: kubernetes.client.Configuration
    namespace: str


def load_settings(kubeconfig: str | os.PathLike[str] | None = None, *, context: str | None = None,
                  namespace: str | None = None, connections: int = 32) -> Settings:
    """API settings from `kubeconfig` (or $KUBECONFIG / ~/.kube/config), else in-cluster.

    The namespace is the argument, else the kubeconfig context's, else the pod's,
    else "default". `connections` sizes the HTTP pool for concurrent calls.
    """
    configuration = kubernetes.client.Configuration()
    default_namespace = "default"
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")
    if path is None and not (Path.home() / ".kube" / "config").exists() \
            and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
        if IN_CLUSTER_NAMESPACE.exists():
            default_namespace = IN_CLUSTER_NAMESPACE.read_text().strip() or default_namespace
    else:
        config_file = path.split(os.pathsep)[0] if path else None
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=config_file, context=context, client_configuration=configuration)
        contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=config_file)
        if context is not None:
            active = next((c for c in contexts if c.get("name") == context), active)
        default_namespace = (active or {}).get("context", {}).get("namespace") or default_namespace
    configuration.connection_pool_maxsize = max(connections, 4)
    return Settings(configuration, namespace or default_namespace)


class KubeApi:
    """Blocking API calls of the client; safe to call from several threads at once."""

    def __init__(self, settings: Settings) -> None:
        self.api_client = kubernetes.client.ApiClient(settings.configuration)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)
        self.core = kubernetes.client.CoreV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    # Tasks.

    def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = _call(
            f"get Task {namespace}/{name}", lambda: self.custom.get_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, "tasks", name))
        return found

    def list_task_names(self, namespace: str) -> list[str]:
        found = _call(f"list Tasks in {namespace}", lambda: self.custom.list_namespaced_custom_object(
            resources.GROUP, resources.VERSION, namespace, "tasks"))
        return sorted(item["metadata"]["name"] for item in (found or {}).get("items", []))

    # TaskRuns.

    def create_taskrun(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Creates the TaskRun; raises `AlreadyExists` when its name is taken."""
        name = body["metadata"]["name"]
        try:
            created = self.custom.create_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, "taskruns", body)
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                raise AlreadyExists(name) from None
            raise _mapped(f"create TaskRun {namespace}/{name}", error) from None
        return typing.cast(dict[str, Any], created)

    def get_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = _call(f"get TaskRun {namespace}/{name}",
                     lambda: self.custom.get_namespaced_custom_object(
                         resources.GROUP, resources.VERSION, namespace, "taskruns", name))
        return found

    def list_taskruns(self, namespace: str, label_selector: str | None = None,
                      field_selector: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        found = _call(f"list TaskRuns in {namespace}",
                      lambda: self.custom.list_namespaced_custom_object(
                          resources.GROUP, resources.VERSION, namespace, "taskruns", **kwargs))
        return found or {"items": [], "metadata": {}}

    def patch_taskrun(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = _call(f"patch TaskRun {namespace}/{name}",
                     lambda: self.custom.patch_namespaced_custom_object(
                         resources.GROUP, resources.VERSION, namespace, "taskruns", name, patch))
        return found

    def delete_taskrun(self, namespace: str, name: str, uid: str) -> None:
        """Deletes that TaskRun if it still is the object `uid` (else nothing)."""
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid), propagation_policy="Background")
        try:
            _call(f"delete TaskRun {namespace}/{name}",
                  lambda: self.custom.delete_namespaced_custom_object(
                      resources.GROUP, resources.VERSION, namespace, "taskruns", name, body=options))
        except kubernetes.client.ApiException as error:
            if error.status != 409:  # another object by now: someone replaced it already
                raise

    def watch_taskrun(self, namespace: str, name: str, resource_version: str | None,
                      timeout_seconds: int, stop: threading.Event) -> Iterator[dict[str, Any]]:
        """Watch events ({"type", "object"}) of one TaskRun, for up to `timeout_seconds`.

        Raises `WatchExpired` when `resource_version` is too old.
        """
        watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        kwargs: dict[str, Any] = {"field_selector": f"metadata.name={name}",
                                  "timeout_seconds": max(1, timeout_seconds),
                                  "allow_watch_bookmarks": False}
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for event in watch.stream(  # type: ignore[no-untyped-call]
                    self.custom.list_namespaced_custom_object, resources.GROUP, resources.VERSION,
                    namespace, "taskruns", **kwargs):
                yield event
                if stop.is_set():
                    return
        except kubernetes.client.ApiException as error:
            if error.status == 410:
                raise WatchExpired(str(error.reason)) from None
            raise _mapped(f"watch TaskRun {namespace}/{name}", error) from None
        finally:
            watch.stop()  # type: ignore[no-untyped-call]

    # Pods and logs.

    def list_attempt_pods(self, namespace: str, run_uid: str) -> list[Any]:
        """The run's attempt pods, oldest attempt first."""
        found = _call(f"list pods in {namespace}", lambda: self.core.list_namespaced_pod(
            namespace, label_selector=f"{RUN_UID_LABEL}={run_uid}"))
        pods = list(found.items) if found is not None else []
        return sorted(pods, key=lambda pod: int((pod.metadata.labels or {}).get(ATTEMPT_LABEL, 0)))

    def read_pod_log(self, namespace: str, pod: str) -> str:
        text = _call(f"read the log of pod {namespace}/{pod}",
                     lambda: self.core.read_namespaced_pod_log(pod, namespace))
        return text or ""


def _call(action: str, request: Callable[[], T]) -> Any:
    """Runs one request: None on 404, `PermissionDenied` on 403, other errors unchanged."""
    try:
        return request()
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        if error.status == 409:
            raise
        raise _mapped(action, error) from None


def _mapped(action: str, error: kubernetes.client.ApiException) -> Exception:
    if error.status == 403:
        return failures.PermissionDenied(action, _api_message(error))
    return error


def _api_message(error: kubernetes.client.ApiException) -> str:
    """The Status message the API server sent (the RBAC sentence on a 403)."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        return str(error.reason or error)
    return str(body.get("message") or error.reason or error)

"""The client's calls to the Kubernetes API, native asyncio (`kubernetes.aio`).

Every call awaits the API over one aiohttp connection pool; there are no threads.
Every call maps the API's refusals to the client's errors: 403 ->
`failures.PermissionDenied` carrying the RBAC message, 404 -> None (callers decide
what is missing), 409 on create -> `AlreadyExists`, 410 on a watch ->
`WatchExpired`. Configuration comes from a kubeconfig (a path, or the default
search) or, inside a pod, from the service account.

Called by the client's `submitting`, `watching` and `managing` modules. Talks to
the API only: never to Postgres.
"""

from __future__ import annotations

import asyncio
import json
import os
import typing
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config
from kubernetes.aio import watch as aio_watch

from durakube import resources
from durakube.client import failures

T = TypeVar("T")
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RUN_UID_LABEL = "durakube.io/run-uid"
ATTEMPT_LABEL = "durakube.io/attempt"
# Server-side length of one watch request. A wait longer than this watches again
# from the last resourceVersion, so a stream that died silently is replaced soon.
WATCH_CHUNK_SECONDS = 60

ApiException = aio_client.ApiException
ConfigException = aio_config.ConfigException


class AlreadyExists(Exception):
    """A create met an object of that name (409)."""


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): read again, then watch."""


@dataclass(frozen=True)
class Settings:
    """Where the API is and who we are; `config_file` None means in-cluster."""

    configuration: aio_client.Configuration
    namespace: str
    config_file: str | None
    context: str | None


def load_settings(kubeconfig: str | os.PathLike[str] | None = None, *, context: str | None = None,
                  namespace: str | None = None, connections: int = 32) -> Settings:
    """API settings from `kubeconfig` (or $KUBECONFIG / ~/.kube/config), else in-cluster.

    The namespace is the argument, else the kubeconfig context's, else the pod's,
    else "default". `connections` sizes the HTTP pool for concurrent calls. Reads
    the kubeconfig at once (a missing or broken one raises `ConfigException` here);
    its credentials are loaded by `KubeApi` on the first call, as that may await an
    exec plugin or a token refresh.
    """
    configuration = aio_client.Configuration()
    default_namespace = "default"
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")
    config_file: str | None = None
    if path is None and not (Path.home() / ".kube" / "config").exists() \
            and os.environ.get("KUBERNETES_SERVICE_HOST"):
        aio_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
        if IN_CLUSTER_NAMESPACE.exists():
            default_namespace = IN_CLUSTER_NAMESPACE.read_text().strip() or default_namespace
    else:
        config_file = path.split(os.pathsep)[0] if path else os.path.expanduser(
            aio_config.KUBE_CONFIG_DEFAULT_LOCATION)
        contexts, active = aio_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=config_file)
        if context is not None:
            active = next((c for c in contexts if c.get("name") == context), active)
        default_namespace = (active or {}).get("context", {}).get("namespace") or default_namespace
    configuration.connection_pool_maxsize = max(connections, 4)
    return Settings(configuration, namespace or default_namespace, config_file, context)


class KubeApi:
    """The API calls of the client; every method is a coroutine of the caller's loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._api_client: aio_client.ApiClient | None = None
        self._connecting = asyncio.Lock()

    async def close(self) -> None:
        if self._api_client is not None:
            api_client, self._api_client = self._api_client, None
            await api_client.close()  # type: ignore[no-untyped-call]

    async def _connect(self) -> aio_client.ApiClient:
        """The API client, its credentials loaded on first use."""
        async with self._connecting:
            if self._api_client is None:
                settings = self.settings
                if settings.config_file is not None:
                    await aio_config.load_kube_config(  # type: ignore[no-untyped-call]
                        config_file=settings.config_file, context=settings.context,
                        client_configuration=settings.configuration)
                self._api_client = aio_client.ApiClient(settings.configuration)
        return self._api_client

    async def _custom(self) -> aio_client.CustomObjectsApi:
        return aio_client.CustomObjectsApi(await self._connect())

    async def _core(self) -> aio_client.CoreV1Api:
        return aio_client.CoreV1Api(await self._connect())

    # Tasks.

    async def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_custom("Task", "tasks", namespace, name)

    async def _get_custom(self, kind: str, plural: str, namespace: str,
                          name: str) -> dict[str, Any] | None:
        """One of our custom resources; None when it does not exist."""
        custom = await self._custom()
        found: dict[str, Any] | None = await _call(
            f"get {kind} {namespace}/{name}", custom.get_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, plural, name))
        return found

    async def list_task_names(self, namespace: str) -> list[str]:
        custom = await self._custom()
        found = await _call(f"list Tasks in {namespace}", custom.list_namespaced_custom_object(
            resources.GROUP, resources.VERSION, namespace, "tasks"))
        return sorted(item["metadata"]["name"] for item in (found or {}).get("items", []))

    # TaskRuns.

    async def create_taskrun(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Creates the TaskRun; raises `AlreadyExists` when its name is taken."""
        custom = await self._custom()
        name = body["metadata"].get("name") or body["metadata"].get("generateName", "") + "*"
        try:
            created = await custom.create_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, "taskruns", body)
        except ApiException as error:
            if error.status == 409:
                raise AlreadyExists(name) from None
            raise _mapped(f"create TaskRun {namespace}/{name}", error) from None
        return typing.cast(dict[str, Any], created)

    async def get_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_custom("TaskRun", "taskruns", namespace, name)

    async def list_taskruns(self, namespace: str | None,
                            label_selector: str | None = None) -> dict[str, Any]:
        """The TaskRuns of `namespace`, or of every namespace when it is None."""
        return await self.list_custom("TaskRuns", "taskruns", namespace, label_selector)

    async def list_custom(self, kinds: str, plural: str, namespace: str | None,
                          label_selector: str | None = None) -> dict[str, Any]:
        """A list of one of our custom resources (`kinds` names them in errors), in
        `namespace` or, when it is None, in every namespace."""
        custom = await self._custom()
        if namespace is None:
            request = custom.list_cluster_custom_object(
                resources.GROUP, resources.VERSION, plural, label_selector=label_selector or None)
        else:
            request = custom.list_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, plural,
                label_selector=label_selector or None)
        where = f"in {namespace}" if namespace is not None else "in all namespaces"
        found = await _call(f"list {kinds} {where}", request)
        return found or {"items": [], "metadata": {}}

    async def patch_taskrun(self, namespace: str, name: str,
                            patch: dict[str, Any]) -> dict[str, Any] | None:
        """A merge patch of the TaskRun; None when it does not exist."""
        custom = await self._custom()
        found: dict[str, Any] | None = await _call(
            f"patch TaskRun {namespace}/{name}", custom.patch_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, "taskruns", name, patch))
        return found

    async def delete_taskrun(self, namespace: str, name: str, uid: str) -> None:
        """Deletes that TaskRun if it still is the object `uid` (else nothing)."""
        custom = await self._custom()
        options = aio_client.V1DeleteOptions(
            preconditions=aio_client.V1Preconditions(uid=uid), propagation_policy="Background")
        try:
            await _call(f"delete TaskRun {namespace}/{name}", custom.delete_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, "taskruns", name, body=options))
        except ApiException as error:
            if error.status != 409:  # another object by now: someone replaced it already
                raise

    async def watch_taskrun(self, namespace: str, name: str, resource_version: str | None,
                            timeout_seconds: int = WATCH_CHUNK_SECONDS
                            ) -> AsyncGenerator[dict[str, Any], None]:
        """Watch events ({"type", "object"}) of one TaskRun, for up to `timeout_seconds`.

        Raises `WatchExpired` when `resource_version` is too old. Close the iterator
        (`contextlib.aclosing`) when leaving it early, so the stream is released.
        """
        custom = await self._custom()
        watch = aio_watch.Watch()  # type: ignore[no-untyped-call]
        kwargs: dict[str, Any] = {"field_selector": f"metadata.name={name}",
                                  "timeout_seconds": max(1, timeout_seconds),
                                  "allow_watch_bookmarks": False}
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            async for event in watch.stream(  # type: ignore[no-untyped-call]
                    custom.list_namespaced_custom_object, resources.GROUP, resources.VERSION,
                    namespace, "taskruns", **kwargs):
                # Custom objects have no model: the event's dict is `raw_object`.
                yield {"type": event["type"], "object": event["raw_object"]}
        except ApiException as error:
            if error.status == 410:
                raise WatchExpired(str(error.reason)) from None
            raise _mapped(f"watch TaskRun {namespace}/{name}", error) from None
        finally:
            await watch.close()  # type: ignore[no-untyped-call]

    # TaskEvents: events for waiting runs, and token completions.

    async def create_taskevent(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Creates the TaskEvent (the operator delivers it); `PermissionDenied` on a 403."""
        custom = await self._custom()
        try:
            created = await custom.create_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, "taskevents", body)
        except ApiException as error:
            raise _mapped(f"create TaskEvent in {namespace}", error) from None
        return typing.cast(dict[str, Any], created)

    async def get_taskevent(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_custom("TaskEvent", "taskevents", namespace, name)

    # Kubernetes Events of an object.

    async def list_object_events(self, namespace: str, kind: str, name: str,
                                 uid: str | None = None) -> list[Any]:
        """The core Events recorded on one object, oldest first."""
        core = await self._core()
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        if uid:
            selector += f",involvedObject.uid={uid}"
        found = await _call(f"list events in {namespace}", core.list_namespaced_event(
            namespace, field_selector=selector))
        events = list(found.items) if found is not None else []
        return sorted(events, key=_event_time)

    # Pods and logs.

    async def list_attempt_pods(self, namespace: str, run_uid: str) -> list[Any]:
        """The run's attempt pods, oldest attempt first."""
        core = await self._core()
        found = await _call(f"list pods in {namespace}", core.list_namespaced_pod(
            namespace, label_selector=f"{RUN_UID_LABEL}={run_uid}"))
        pods = list(found.items) if found is not None else []
        return sorted(pods, key=lambda pod: int((pod.metadata.labels or {}).get(ATTEMPT_LABEL, 0)))

    async def read_pod_log(self, namespace: str, pod: str) -> str:
        core = await self._core()
        text = await _call(f"read the log of pod {namespace}/{pod}",
                           core.read_namespaced_pod_log(pod, namespace))
        return str(text or "")


async def _call(action: str, request: Awaitable[T]) -> Any:
    """Awaits one request: None on 404, `PermissionDenied` on 403, other errors unchanged."""
    try:
        return await request
    except ApiException as error:
        if error.status == 404:
            return None
        if error.status == 409:
            raise
        raise _mapped(action, error) from None


def _event_time(event: Any) -> str:
    stamp = event.last_timestamp or event.event_time or event.first_timestamp
    return stamp.isoformat() if stamp is not None else ""


def _mapped(action: str, error: ApiException) -> Exception:
    if error.status == 403:
        return failures.PermissionDenied(action, _api_message(error))
    return error


def _api_message(error: ApiException) -> str:
    """The Status message the API server sent (the RBAC sentence on a 403)."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        return str(error.reason or error)
    return str(body.get("message") or error.reason or error)

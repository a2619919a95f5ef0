"""The operator's calls to the Kubernetes API: few, bounded and async.

kopf watches; this module reads and writes, for the reconciler, the controller's
loops and the spawning of child runs, and asks the API server who the webhook's
callers are. Every call goes through one token bucket (kopf has no client-side
rate limit, kopf #1011) and runs on the event loop
through the official asyncio client, `kubernetes.aio`: its configuration loading,
credentials (refreshed service-account tokens included), TLS and aiohttp
connection pool.

Objects travel as plain JSON dicts, sent and read as they are. The generated
typed methods are not used on purpose: they validate a dict body against strict
models first, which refuse what the API server accepts (a pod template with
`cpu: 1`, or a field newer than the client), and turn every answer into models.

Each call is counted and timed (`metrics.API_REQUESTS`, `metrics.API_DURATION`) by
verb, resource and status class, never by an object's name. Knows nothing of runs
or Postgres. Does not retry: a failed call raises `ApiException`, and the caller's
pass is retried as a whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes.aio import client as kubeclient
from kubernetes.aio import config as kubeconfig
from kubernetes.aio.client.api_client import RequestSerialized

from durakube import resources
from durakube_operator import metrics

logger = logging.getLogger(__name__)

ApiException = kubeclient.ApiException

NotFound = 404
Conflict = 409

# The longest one call may take, connecting included; aiohttp would allow 5 minutes.
REQUEST_TIMEOUT_SECONDS = 30.0

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# The API server's metadata-only answer to a list (as `kubectl get -o name` asks).
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# Objects per page of a list.
LIST_PAGE = 500
# The API server's answer when a list's continue token or a watch's resourceVersion has
# been compacted away: list again from now.
Gone = 410


@dataclass(frozen=True)
class ObjectKey:
    """What a metadata-only list says of one object."""

    namespace: str
    name: str
    uid: str
    resource_version: str


def refusal(error: ApiException) -> str | None:
    """The API server's message when it refused an object for what it is (invalid, or
    against the namespace's Pod Security level or an admission webhook's policy), so
    sending it again would be refused again; None for what may pass later (RBAC, quota,
    conflicts, a server in trouble)."""
    try:
        message = str(json.loads(error.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = str(error.body or "")
    message = message or str(error.reason or "")
    if error.status == 422:
        return message
    if error.status == 403 and ("violates PodSecurity" in message or "denied the request" in message):
        return message
    return None


class RateLimiter:
    """A token bucket: at most `qps` calls per second on average, bursts of `burst`.

    `burst` defaults to twice `qps` (client-go's own defaults are 5 and 10)."""

    def __init__(self, qps: float, burst: int | None = None) -> None:
        self.qps = qps
        self.capacity = float(burst or max(1, int(qps * 2)))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.qps)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.qps)


async def load_client() -> kubeclient.ApiClient:
    """In-cluster config inside a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config).

    The caller owns the client: `KubeApi.close()` (or `ApiClient.close()`) releases it."""
    configuration = kubeclient.Configuration()
    # No cap on connections (aiohttp's limit 0): the token bucket is the one bound on our
    # calls, and a pool cap under it would only queue calls where no limiter or metric sees
    # them. Open connections never outnumber the callers waiting on a response at once.
    configuration.connection_pool_maxsize = 0
    try:
        kubeconfig.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
    except kubeconfig.ConfigException:
        await kubeconfig.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
    # The proxy settings of the environment are read once, here: aiohttp's `trust_env`
    # would read them, and ~/.netrc, in a thread on every request.
    configuration.proxy = configuration.proxy or environment_proxy(configuration.host)
    configuration.client_session_kwargs = {"trust_env": False}
    return JsonApiClient(configuration)


class JsonApiClient(kubeclient.ApiClient):
    """The generated client, less its walk over every request's body.

    `sanitize_for_serialization` turns the client's model objects and datetimes into
    JSON values, recursively, in Python: for an attempt pod's manifest it took several
    times as long as encoding it. KubeApi sends JSON values only (dicts from the API or
    built as manifests), which `json.dumps` takes as they are."""

    def sanitize_for_serialization(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (dict, list, str, int, float)):
            return obj
        return super().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


def environment_proxy(url: str) -> str | None:
    """The proxy that $HTTPS_PROXY / $HTTP_PROXY name for `url`, unless $NO_PROXY exempts
    its host (urllib's reading of them, as client-go's ProxyFromEnvironment)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme or "https")


# The Kubernetes verb of each HTTP method the operator uses.
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def resource_of(path: str) -> str:
    """The resource a call's path names, with its subresource ("taskruns/status"), for
    metrics: never an object's name or namespace."""
    segments = path.strip("/").split("/")
    if "namespaces" in segments:
        segments = segments[segments.index("namespaces") + 2:]
    elif segments[:1] == ["api"]:
        segments = segments[2:]
    else:
        segments = segments[3:]
    if not segments:
        return "unknown"
    return segments[0] + (f"/{segments[2]}" if len(segments) > 2 else "")


def _path(*segments: str) -> str:
    """A URL path of quoted segments: a name read from Postgres cannot reach another path."""
    return "/" + "/".join(urllib.parse.quote(segment, safe="") for segment in segments)


def _custom(namespace: str, plural: str, *rest: str) -> str:
    return _path("apis", resources.GROUP, resources.VERSION, "namespaces", namespace, plural, *rest)


def _core(namespace: str, plural: str, *rest: str) -> str:
    return _path("api", "v1", "namespaces", namespace, plural, *rest)


def _collection(namespace: str | None, plural: str) -> str:
    """The path of all pods or TaskRuns (`plural`) of a namespace, or of the cluster for None."""
    group = ("api", "v1") if plural == "pods" else ("apis", resources.GROUP, resources.VERSION)
    return _path(*group, *(("namespaces", namespace) if namespace else ()), plural)


def _leases(namespace: str, *name: str) -> str:
    return _path("apis", "coordination.k8s.io", "v1", "namespaces", namespace, "leases", *name)


class KubeApi:
    def __init__(self, client: kubeclient.ApiClient, qps: float, burst: int | None = None) -> None:
        self.client = client
        self.limiter = RateLimiter(qps, burst)

    async def close(self) -> None:
        """Closes the client's connections; call it once, when the operator stops."""
        await self.client.close()  # type: ignore[no-untyped-call]

    async def _send(self, request: RequestSerialized, verb: str,
                    path: str) -> tuple[Any, bytes]:
        """Sends a serialized request, timed and counted by verb and resource; the response
        and its whole body."""
        labels = {"verb": verb, "resource": resource_of(path)}
        started = time.monotonic()
        status = None
        try:
            response = await self.client.call_api(*request, _request_timeout=REQUEST_TIMEOUT_SECONDS)
            status = response.status
            # Reading the whole body hands the connection back to the pool.
            data: bytes = await response.read()  # type: ignore[no-untyped-call]
        finally:
            metrics.API_DURATION.labels(**labels).observe(time.monotonic() - started)
            metrics.API_REQUESTS.labels(**labels, code=metrics.status_class(status)).inc()
        return response, data

    async def _request(self, method: str, path: str, body: Any = None,
                       content_type: str = JSON) -> dict[str, Any]:
        """One call, after a token; the answer as a dict, or ApiException when not 2xx."""
        await self.limiter.acquire()
        request = await self.client.param_serialize(
            method=method, resource_path=path,
            header_params={"Accept": JSON, "Content-Type": content_type},
            body=body, auth_settings=["BearerToken"])
        response, data = await self._send(request, _VERBS.get(method, method.lower()), path)
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response, body=data.decode("utf-8", "replace"))
        return dict(json.loads(data)) if data else {}

    async def read_pod_log_tail(self, namespace: str, name: str, container: str, *,
                                tail_lines: int, limit_bytes: int) -> bytes | None:
        """The last `tail_lines` lines of a container's log, at most `limit_bytes` of them
        (from their start: the API's limitBytes cuts the end); None when the pod or its
        log is gone."""
        await self.limiter.acquire()
        path = _core(namespace, "pods", name, "log")
        request = await self.client.param_serialize(
            method="GET", resource_path=path,
            query_params=[("container", container), ("tailLines", tail_lines),
                          ("limitBytes", limit_bytes)],
            header_params={"Accept": "*/*"}, auth_settings=["BearerToken"])
        response, data = await self._send(request, "get", path)
        if response.status in (NotFound, 400):
            return None  # gone, or its container never ran
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response, body=data.decode("utf-8", "replace"))
        return data

    async def _get(self, path: str) -> dict[str, Any] | None:
        """Reads one object; None when it does not exist."""
        try:
            return await self._request("GET", path)
        except ApiException as error:
            if error.status == NotFound:
                return None
            raise

    async def get_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_custom(namespace, "taskruns", name))

    async def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_custom(namespace, "tasks", name))

    async def get_taskqueue(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_custom(namespace, "taskqueues", name))

    async def patch_status(self, plural: str, namespace: str, name: str,
                           status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patches the status of one of our custom resources and returns the object as
        patched; None when it was deleted meanwhile (or is a queue no TaskQueue defines),
        with no status left to keep."""
        try:
            return await self._request("PATCH", _custom(namespace, plural, name, "status"),
                                       {"status": status}, content_type=MERGE_PATCH)
        except ApiException as error:
            if error.status != NotFound:
                raise
        return None

    async def list_taskruns(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The TaskRuns of a namespace that carry the labels of `label_selector`."""
        await self.limiter.acquire()
        path = _custom(namespace, "taskruns")
        request = await self.client.param_serialize(
            method="GET", resource_path=path, query_params=[("labelSelector", label_selector)],
            header_params={"Accept": JSON}, auth_settings=["BearerToken"])
        response, data = await self._send(request, "list", path)
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response, body=data.decode("utf-8", "replace"))
        return list(json.loads(data).get("items") or [])

    async def list_metadata(self, kind: str, namespace: str | None,
                            label_selector: str | None = None) -> list[ObjectKey]:
        """Every pod or TaskRun (`kind`) of a namespace, or of the cluster for None, as
        the API server's metadata-only list (no spec, no status), read 500 at a time:
        what the operator re-lists to catch what its watches missed."""
        path = _collection(namespace, kind)
        found: list[ObjectKey] = []
        async for page in self._pages(path, METADATA_LIST, label_selector):
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                found.append(ObjectKey(meta.get("namespace") or "", meta.get("name") or "",
                                       meta.get("uid") or "", meta.get("resourceVersion") or ""))
        return found

    async def list_pods(self, namespace: str | None,
                        label_selector: str) -> tuple[list[dict[str, Any]], str]:
        """Every pod of a namespace, or of the cluster for None, that carries the labels of
        `label_selector`, whole, read 500 at a time; and the resourceVersion the list was
        read at, to watch from. Raises ApiException (410 when a page's continue token
        expired: list again)."""
        path = _collection(namespace, "pods")
        found: list[dict[str, Any]] = []
        version = ""
        async for page in self._pages(path, JSON, label_selector):
            found.extend(page.get("items") or [])
            version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        return found, version

    async def _pages(self, path: str, accept: str,
                     label_selector: str | None) -> AsyncGenerator[dict[str, Any], None]:
        """The pages of a list (LIST_PAGE objects each, as `accept` asks for them), each
        after a token of the rate limit."""
        token: str | None = None
        while True:
            await self.limiter.acquire()
            query: list[tuple[str, Any]] = [("limit", LIST_PAGE)]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            request = await self.client.param_serialize(
                method="GET", resource_path=path, query_params=query,
                header_params={"Accept": accept}, auth_settings=["BearerToken"])
            response, data = await self._send(request, "list", path)
            if not 200 <= response.status <= 299:
                raise ApiException(http_resp=response, body=data.decode("utf-8", "replace"))
            page: dict[str, Any] = json.loads(data)
            yield page
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    async def watch_pods(self, namespace: str | None, label_selector: str, resource_version: str, *,
                         server_timeout: int, client_timeout: float, connect_timeout: float,
                         inactivity_timeout: float) -> AsyncGenerator[dict[str, Any], None]:
        """The watch events (`{"type": ..., "object": ...}`, bookmarks included) of the pods
        that carry the labels of `label_selector`, from `resource_version` on, until the
        API server ends the stream (after `server_timeout` seconds), the client gives up
        (`client_timeout`), or no byte came for `inactivity_timeout`
        (`asyncio.TimeoutError`). Raises ApiException when the watch is refused. Counted
        as one request of verb "watch"; not timed (a stream's length says nothing)."""
        path = _collection(namespace, "pods")
        await self.limiter.acquire()
        request = await self.client.param_serialize(
            method="GET", resource_path=path,
            query_params=[("watch", "true"), ("labelSelector", label_selector),
                          ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                          ("timeoutSeconds", server_timeout)],
            header_params={"Accept": JSON}, auth_settings=["BearerToken"])
        labels = {"verb": "watch", "resource": resource_of(path)}
        status = None
        try:
            response = await self.client.call_api(*request, _request_timeout=aiohttp.ClientTimeout(
                total=client_timeout, sock_connect=connect_timeout, sock_read=inactivity_timeout))
            status = response.status
        finally:
            metrics.API_REQUESTS.labels(**labels, code=metrics.status_class(status)).inc()
        stream: aiohttp.ClientResponse = response.response
        try:
            if not 200 <= response.status <= 299:
                data = await response.read()  # type: ignore[no-untyped-call]
                raise ApiException(http_resp=response, body=data.decode("utf-8", "replace"))
            # One event a line; a line can span chunks, and a chunk hold several lines.
            partial = b""
            async for chunk in stream.content.iter_any():
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    if line.strip():
                        yield dict(json.loads(line))
        finally:
            stream.release()

    async def create_taskrun(self, namespace: str, body: dict[str, Any]) -> bool:
        """Creates a TaskRun; False when one of that name exists already."""
        return await self._create(_custom(namespace, "taskruns"), body) is not None

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_core(namespace, "pods", name))

    async def create_pod(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any] | None:
        """Creates `pod` and returns it as created; None when a pod of that name already
        exists (adopt it)."""
        return await self._create(_core(namespace, "pods"), pod)

    async def _create(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Creates an object and returns it; None when one of that name exists already (409)."""
        try:
            return await self._request("POST", path, body)
        except ApiException as error:
            if error.status == Conflict:
                return None
            raise

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        try:
            await self._request("DELETE", _core(namespace, "pods", name), options)
        except ApiException as error:
            if error.status != NotFound:
                raise

    async def delete_taskrun(self, namespace: str, name: str, uid: str) -> bool:
        """Deletes the TaskRun `namespace/name` if its uid is still `uid`; its pods and
        Secrets go with it (garbage collection of what it owns). False when it is gone
        already, or the name now belongs to another TaskRun (the precondition failed)."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions",
                   "preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            await self._request("DELETE", _custom(namespace, "taskruns", name), options)
        except ApiException as error:
            if error.status in (NotFound, Conflict):
                return False
            raise
        return True

    async def create_secret(self, namespace: str, secret: dict[str, Any]) -> bool:
        """Creates a Secret; False when one of that name exists already.

        AlreadyExists answers "is it there", so the operator needs no right to read or
        change Secrets anywhere."""
        return await self._create(_core(namespace, "secrets"), secret) is not None

    async def delete_secret(self, namespace: str, name: str) -> None:
        """Deletes a Secret (gone already is fine). The chart lets the operator delete only
        its attempt key rings."""
        try:
            await self._request("DELETE", _core(namespace, "secrets", name))
        except ApiException as error:
            if error.status != NotFound:
                raise

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_leases(namespace, name))

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Creates a Lease; None when one of that name exists already."""
        return await self._create(_leases(namespace), body)

    async def replace_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Writes a Lease whole, guarded by its resourceVersion; None when somebody else
        wrote it since it was read (409 Conflict)."""
        try:
            return await self._request("PUT", _leases(namespace, body["metadata"]["name"]), body)
        except ApiException as error:
            if error.status == Conflict:
                return None
            raise

    async def create_token_review(self, token: str) -> dict[str, Any]:
        """Asks the API server who holds `token` (a TokenReview); its `status` says."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token}}
        return await self._request(
            "POST", _path("apis", "authentication.k8s.io", "v1", "tokenreviews"), review)

    async def create_subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Asks the API server whether a user may do something (a SubjectAccessReview whose
        `spec` names the user and the resource attributes); `status.allowed` says."""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": spec}
        return await self._request(
            "POST", _path("apis", "authorization.k8s.io", "v1", "subjectaccessreviews"), review)

    async def create_event(self, event: dict[str, Any]) -> None:
        """Creates an Event (see `event_body`); a refusal is logged, not raised."""
        meta = event["involvedObject"]
        reason = event["reason"]
        try:
            await self._request("POST", _core(meta["namespace"], "events"), event)
        except ApiException as error:
            # Events are best effort: a namespace being deleted refuses them (403), and a
            # lost Event must never hold back the status it describes.
            logger.warning("could not record event %s on %s/%s: %s", reason, meta["namespace"],
                           meta["name"], error.reason)


def event_body(involved: dict[str, Any], kind: str, reason: str, message: str,
               event_type: str = "Normal") -> dict[str, Any]:
    """A Kubernetes Event on `involved` (a TaskRun or pod as a dict), timed now."""
    meta = involved["metadata"]
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", resources.API_VERSION),
            "kind": kind, "name": meta["name"], "namespace": meta["namespace"],
            "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "source": {"component": "durakube-operator"},
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }

"""The operator's calls to the Kubernetes API: few, bounded and async.

kopf watches; this module reads and writes. Every call goes through one token
bucket (kopf has no client-side rate limit, kopf #1011) and runs the official
client in a worker thread so the event loop never blocks. Objects travel as
plain dicts.

Knows nothing of runs or Postgres.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from durakube import resources

logger = logging.getLogger(__name__)

NotFound = 404
Conflict = 409


class RateLimiter:
    """A token bucket: at most `qps` calls per second on average, bursts of `burst`."""

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


def load_client() -> kubernetes.client.ApiClient:
    """In-cluster config inside a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


class KubeApi:
    def __init__(self, client: kubernetes.client.ApiClient, qps: float) -> None:
        self.client = client
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.limiter = RateLimiter(qps)

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        await self.limiter.acquire()
        return await asyncio.to_thread(function, *args, **kwargs)

    async def _dict(self, function: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Calls a typed-client reader and returns the object as a dict, None on 404."""
        try:
            kwargs["_preload_content"] = False
            response = await self._call(function, *args, **kwargs)
        except ApiException as error:
            if error.status == NotFound:
                return None
            raise
        return dict(json.loads(response.data))

    async def get_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._dict(self.custom.get_namespaced_custom_object,
                                resources.GROUP, resources.VERSION, namespace, "taskruns", name)

    async def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._dict(self.custom.get_namespaced_custom_object,
                                resources.GROUP, resources.VERSION, namespace, "tasks", name)

    async def patch_status(self, plural: str, namespace: str, name: str,
                           status: dict[str, Any]) -> None:
        """Merge-patches the status of one of our custom resources; a resource deleted
        meanwhile (or a queue no TaskQueue defines) has no status left to keep."""
        try:
            await self._call(self.custom.patch_namespaced_custom_object_status,
                             resources.GROUP, resources.VERSION, namespace, plural, name,
                             {"status": status})
        except ApiException as error:
            if error.status != NotFound:
                raise

    async def create_taskrun(self, namespace: str, body: dict[str, Any]) -> bool:
        """Creates a TaskRun; False when one of that name exists already."""
        try:
            await self._call(self.custom.create_namespaced_custom_object, resources.GROUP,
                             resources.VERSION, namespace, "taskruns", body)
        except ApiException as error:
            if error.status == Conflict:
                return False
            raise
        return True

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._dict(self.core.read_namespaced_pod, name, namespace)

    async def create_pod(self, namespace: str, pod: dict[str, Any]) -> bool:
        """Creates `pod`; False when a pod of that name already exists (adopt it)."""
        try:
            await self._call(self.core.create_namespaced_pod, namespace, pod)
        except ApiException as error:
            if error.status == Conflict:
                return False
            raise
        return True

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        body = kubernetes.client.V1DeleteOptions(grace_period_seconds=grace_seconds)
        try:
            await self._call(self.core.delete_namespaced_pod, name, namespace, body=body)
        except ApiException as error:
            if error.status != NotFound:
                raise

    async def ensure_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Creates the Secret when missing; leaves an existing one as its owner made it."""
        try:
            await self._call(self.core.read_namespaced_secret, name, namespace)
            return
        except ApiException as error:
            if error.status != NotFound:
                raise
        secret = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/managed-by": "durakube"}),
            string_data=data, type="Opaque")
        try:
            await self._call(self.core.create_namespaced_secret, namespace, secret)
        except ApiException as error:
            if error.status != Conflict:
                raise

    async def create_event(self, involved: dict[str, Any], kind: str, reason: str,
                           message: str, event_type: str = "Normal") -> None:
        """Records a Kubernetes Event on `involved` (a TaskRun or pod as a dict)."""
        meta = involved["metadata"]
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event = {
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
        try:
            await self._call(self.core.create_namespaced_event, meta["namespace"], event)
        except ApiException as error:
            # Events are best effort: a namespace being deleted refuses them (403), and a
            # lost Event must never hold back the status it describes.
            logger.warning("could not record event %s on %s/%s: %s", reason, meta["namespace"],
                           meta["name"], error.reason)

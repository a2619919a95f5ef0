"""Kubernetes Events the kubelet would emit (Pulled, Created, Started, Killing,
BackOff, Failed, FailedMount), written as core/v1 Events from source "kubelet".

Fire and forget: an Event that cannot be written is dropped, and no more than a
few are in flight at once, so Events never slow down or break pod handling.
Called by `running`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from devcluster.node import apicalls, times

Json = dict[str, Any]
logger = logging.getLogger(__name__)

_MAX_IN_FLIGHT = 8


class EventRecorder:
    def __init__(self, client: apicalls.Client, node_name: str) -> None:
        self._client = client
        self._node_name = node_name
        self._tasks: set[asyncio.Task[None]] = set()

    def record_event(self, pod: Json, reason: str, message: str, *, warning: bool = False,
                     container: str | None = None, init: bool = False) -> None:
        if len(self._tasks) >= _MAX_IN_FLIGHT:
            return
        task = asyncio.create_task(self._post(pod, reason, message, warning, container, init))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, pod: Json, reason: str, message: str, warning: bool,
                    container: str | None, init: bool) -> None:
        metadata = pod["metadata"]
        stamp = times.format_time(times.now())
        involved: Json = {"kind": "Pod", "apiVersion": "v1", "namespace": metadata["namespace"],
                          "name": metadata["name"], "uid": metadata["uid"]}
        if container:
            kind = "initContainers" if init else "containers"
            involved["fieldPath"] = f"spec.{kind}{{{container}}}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}",
                         "namespace": metadata["namespace"]},
            "involvedObject": involved, "reason": reason, "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self._node_name},
            "reportingComponent": "kubelet", "reportingInstance": self._node_name,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            await self._client.call("POST", f"/api/v1/namespaces/{metadata['namespace']}/events",
                                    body)
        except apicalls.ApiError as error:
            logger.debug("event %s for %s dropped: %s", reason, metadata["name"], error)

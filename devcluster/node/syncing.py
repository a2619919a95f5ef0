"""Keeping the node's pod workers in step with the pods bound to it.

A list+watch of pods with `fieldSelector=spec.nodeName=<node>`, resumed from the
last resourceVersion, re-listed after 410 Gone or any broken stream; watches
carry a server timeout and a client read timeout, so a dead stream is noticed.
Every pod seen gets a `running.PodWorker`; updates go to it; a pod that vanished
(DELETED, or missing from a re-list) is stopped without confirmation.

Called by `agent`; it never starts processes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from devcluster.node import apicalls, running

Json = dict[str, Any]
logger = logging.getLogger(__name__)


class PodSyncer:
    def __init__(self, services: running.NodeServices) -> None:
        self.services = services
        self.workers: dict[str, running.PodWorker] = {}
        # UIDs whose worker finished: events for them are ignored until forgotten.
        self._finished: set[str] = set()
        self._stopped = threading.Event()

    @property
    def _selector(self) -> str:
        return f"spec.nodeName={self.services.config.node_name}"

    def handle_pod(self, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._finished:
            return
        worker = self.workers.get(uid)
        if worker is None:
            worker = running.PodWorker(self.services, pod, on_done=self._worker_done)
            self.workers[uid] = worker
            worker.start()
        worker.update(pod)

    def handle_gone(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.forget()

    def _worker_done(self, worker: running.PodWorker) -> None:
        self.workers.pop(worker.uid, None)
        self._finished.add(worker.uid)

    async def sync_forever(self) -> None:
        """List, then watch from the list's resourceVersion; repeat on any break."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                listing = await self.services.client.call(
                    "GET", "/api/v1/pods", query={"fieldSelector": self._selector})
            except apicalls.ApiError as error:
                logger.warning("listing pods failed: %s", error)
                await asyncio.sleep(1)
                continue
            seen = set()
            for pod in listing.get("items", []):
                seen.add(pod["metadata"]["uid"])
                self.handle_pod(pod)
            for uid in list(self.workers):
                if uid not in seen:
                    self.handle_gone(uid)
            self._finished &= seen
            version = listing["metadata"]["resourceVersion"]
            await self._watch_on_thread(loop, version)

    async def _watch_on_thread(self, loop: asyncio.AbstractEventLoop, version: str) -> None:
        # A daemon thread, not the loop's executor: a blocked watch must not keep
        # the agent from exiting.
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        def target() -> None:
            try:
                self._watch(loop, version)
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(finish)

        threading.Thread(target=target, name="pod-watch", daemon=True).start()
        await done

    def _watch(self, loop: asyncio.AbstractEventLoop, version: str) -> None:
        """Runs on a thread of its own; hands events to the loop until the stream
        ends or breaks (the caller then re-lists)."""
        timeout = self.services.config.watch_timeout
        query = {"fieldSelector": self._selector, "watch": "true",
                 "resourceVersion": version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout)}
        while not self._stopped.is_set():
            try:
                for event in self.services.client.open_watch("/api/v1/pods", query,
                                                             read_timeout=timeout + 15):
                    kind, obj = event.get("type"), event.get("object", {})
                    if kind == "ERROR":
                        logger.info("watch ended: %s", obj.get("message"))
                        return  # 410 Gone and friends: re-list
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    query["resourceVersion"] = version
                    if kind in ("ADDED", "MODIFIED"):
                        loop.call_soon_threadsafe(self.handle_pod, obj)
                    elif kind == "DELETED":
                        loop.call_soon_threadsafe(self.handle_gone, obj["metadata"]["uid"])
            except apicalls.ApiError as error:
                logger.info("watch broke, re-listing: %s", error)
                return
            if self._stopped.is_set():
                return

    def stop(self) -> None:
        self._stopped.set()

    async def shut_down(self, grace: float) -> None:
        self.stop()
        await asyncio.gather(*(w.shut_down(grace) for w in list(self.workers.values())))

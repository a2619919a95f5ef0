"""Attempt pods as the operator's own watch delivers them; kopf watches the rest.

kopf watches TaskRuns and the operator's other resources. Attempt pods come the
shorter way, through this module: a pod event only has to reach the cache
(`Controller.attempt_pod_changed`), and through kopf each one went through its
per-object machinery first (a worker task per object, causes, a handler invocation
with its logger), about an eighth of the operator's CPU per started run
(`bench/pod_throughput.py`, node cordoned: the pod's creation and the scheduler's
Unschedulable condition are two events a run).

It works as client-go's reflector does. It lists (`kubeapi.LIST_PAGE` pods a page),
hands over every pod, then watches from the list's resourceVersion with bookmarks, so
a stream that ends (the API server closes it after WATCH_SERVER_TIMEOUT) or breaks
resumes where it stopped, without a re-list. The API server filters by label: other
pods of a shared cluster never reach the operator. A resourceVersion compacted away
(410 Gone) means a new list; a pod held from before that list and absent from it went
away unseen, and is handed over as deleted. A stream silent for
WATCH_INACTIVITY_TIMEOUT (the API server sends a bookmark every minute on a live one)
is taken for dead (kopf #1276), and none lasts longer than WATCH_CLIENT_TIMEOUT. A
failure is logged and retried after a back-off (0.1 s doubling to 30 s). One watch per
namespace the operator serves, or one for the cluster. Decides nothing; what a
deletion missed even so, the re-list of `sweeping` finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

from durakube_operator import caching, kubeapi

logger = logging.getLogger(__name__)

# The bounds of every watch stream, kopf's and this module's (`handlers` gives kopf
# them). Whole seconds for the server's: it goes into the URL, and the API server
# refuses "300.0".
WATCH_SERVER_TIMEOUT = 300
WATCH_CLIENT_TIMEOUT = 330
WATCH_CONNECT_TIMEOUT = 10
WATCH_INACTIVITY_TIMEOUT = 70
# Seconds between a failed list or watch and the next try: doubling, reset by an event.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 30.0

# What the watch hands over: the pod as sent, and whether it was deleted.
Changed = Callable[[caching.Body, bool], None]


class Expired(Exception):
    """The version to watch from was compacted away (410 Gone): list again."""


class WatchError(Exception):
    """The API server ended a watch with an error other than Gone."""


class PodWatch:
    """Lists and watches the pods that carry `selector`, in `namespaces` (none: the
    cluster), handing each change to `changed`; `held` is the cache of pods handed over
    so far, which a re-list compares with what it found."""

    def __init__(self, api: kubeapi.KubeApi, held: caching.ObjectCache, namespaces: tuple[str, ...],
                 selector: str, changed: Changed) -> None:
        self.api, self.held, self.namespaces = api, held, namespaces
        self.selector, self.changed = selector, changed

    async def run(self) -> None:
        """Watches until cancelled, one stream per namespace."""
        scopes: tuple[str | None, ...] = self.namespaces or (None,)
        await asyncio.gather(*(self.watch(scope) for scope in scopes))

    async def watch(self, namespace: str | None) -> None:
        """Lists and watches one namespace (None: the cluster) until cancelled."""
        version: str | None = None
        delay = BACKOFF_FIRST
        where = f" in {namespace}" if namespace else ""
        while True:
            brought = False
            try:
                if version is None:
                    version = await self.relist(namespace)
                    delay = BACKOFF_FIRST
                async for reached in self.stream(namespace, version):
                    version, brought, delay = reached, True, BACKOFF_FIRST
                if brought:
                    continue  # the server ended the stream: resume at once
                # A stream that brought nothing, not even a bookmark: resume, but not in
                # a tight loop if the server keeps ending it at once.
            except asyncio.CancelledError:
                raise
            except Expired:
                logger.info("the pod watch's version %s%s is gone; listing pods again", version, where)
                version = None
                continue
            except TimeoutError:
                logger.info("the pod watch%s was silent for %ss; watching again", where,
                            WATCH_INACTIVITY_TIMEOUT)
            except Exception as error:
                logger.warning("watching attempt pods%s failed (%s: %s); again in %.1fs",
                               where, type(error).__name__, error, delay)
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX, delay * 2)

    async def relist(self, namespace: str | None) -> str:
        """Hands over every pod listed, and as deleted every pod held from before the list
        that it lacks; returns the version to watch from."""
        began = time.monotonic()
        with _gone_is_expired():
            listed, version = await self.api.list_pods(namespace, self.selector)
        present: set[caching.Key] = set()
        for pod in listed:
            meta = pod.get("metadata") or {}
            present.add((meta.get("namespace") or "", meta.get("name") or ""))
            self.changed(pod, False)
        for held in self.held.held():
            in_scope = namespace is None or held.key[0] == namespace
            if in_scope and held.recorded < began and held.key not in present:
                self.changed(held.body, True)
        return version

    async def stream(self, namespace: str | None, version: str) -> AsyncIterator[str]:
        """One watch stream from `version`: hands over its pod events, and yields the
        version reached after each event (bookmarks included)."""
        events = self.api.watch_pods(
            namespace, self.selector, version, server_timeout=WATCH_SERVER_TIMEOUT,
            client_timeout=WATCH_CLIENT_TIMEOUT, connect_timeout=WATCH_CONNECT_TIMEOUT,
            inactivity_timeout=WATCH_INACTIVITY_TIMEOUT)
        # Closed at once when this stops early (an error event): its connection goes with it.
        with _gone_is_expired():
            async with contextlib.aclosing(events):
                async for event in events:
                    kind, body = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if body.get("code") == kubeapi.Gone:
                            raise Expired
                        raise WatchError(f"{body.get('reason')}: {body.get('message')}")
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.changed(body, kind == "DELETED")
                    reached = (body.get("metadata") or {}).get("resourceVersion")
                    if reached:
                        yield str(reached)


@contextlib.contextmanager
def _gone_is_expired() -> Iterator[None]:
    """The API server's 410 Gone, to a list or a watch, as `Expired`."""
    try:
        yield
    except kubeapi.ApiException as error:
        if error.status == kubeapi.Gone:
            raise Expired from error
        raise

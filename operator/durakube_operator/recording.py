"""Kubernetes Events, recorded off the reconciler's path, as client-go's event broadcaster does.

An Event tells people what happened to a run; the status patch is what the
operator's correctness rests on. So a pass never waits for an Event: `record`
builds it at once (its timestamps are when it happened) and hands it to a bounded
buffer, which one task sends through its own client and rate limit
(`DURAKUBE_EVENT_QPS`), apart from the calls that start pods and patch statuses.
A burst of transitions then costs the runs nothing, and a flood of Events cannot
starve the reconciler's budget.

Best effort, as Kubernetes Events are: when the buffer is full, new Events are
dropped and counted (`durakube_events_dropped_total`); a send that fails is logged
and not retried. On stop, what is buffered gets a short time to go out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

from durakube_operator import kubeapi, metrics

logger = logging.getLogger(__name__)

# Events waiting to be sent at most; past it new ones are dropped.
BUFFER = 1000
# How long `stop` waits for the buffered Events to go out.
FLUSH_SECONDS = 2.0


class EventRecorder:
    def __init__(self, api: kubeapi.KubeApi, buffer: int = BUFFER) -> None:
        self.api = api
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._size = buffer
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # nothing buffered, nothing being sent
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._send_all(), name="events")

    def record(self, involved: dict[str, Any], kind: str, reason: str, message: str,
               event_type: str = "Normal") -> None:
        """Queues an Event on `involved` (a TaskRun or pod as a dict); never waits."""
        if len(self._buffer) >= self._size:
            metrics.EVENTS_DROPPED.inc()
            return
        self._buffer.append(kubeapi.event_body(involved, kind, reason, message, event_type))
        self._idle.clear()
        self._ready.set()

    def __len__(self) -> int:
        return len(self._buffer)

    async def _send_all(self) -> None:
        while True:
            await self._ready.wait()
            while self._buffer:
                try:
                    await self.api.create_event(self._buffer.popleft())
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # refused ones are logged by create_event
                    logger.warning("could not record an event: %s", error)
            self._ready.clear()
            self._idle.set()

    async def stop(self) -> None:
        """Sends what is buffered (for at most FLUSH_SECONDS), then closes the client."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), FLUSH_SECONDS)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.api.close()

"""The operator's own background loops: a pass when poked, or every `interval` seconds.

Admission, waking, child submission, retention and schedules each decide across many
objects at once, which kopf cannot (one handler per object, no cross-object lock), so
each runs as one loop started by the controller. A pass that fails is logged and tried again at the next
round (Postgres may be restarting; its data is intact); cancellation ends the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

logger = logging.getLogger(__name__)


class PokedLoop:
    """Subclasses implement `run_pass`, returning seconds until the next pass is due
    (None: `interval`); `poke()` asks for a pass at once."""

    name = "loop"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._wakeup = asyncio.Event()

    def poke(self) -> None:
        self._wakeup.set()

    async def run_pass(self) -> float | None:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            try:
                delay = await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s pass failed; retrying", self.name)
                delay = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.interval if delay is None else delay)
            self._wakeup.clear()

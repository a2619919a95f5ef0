"""Memory freed after a burst goes back to the system.

After a burst (a thousand runs created at once, every TaskRun listed again when a
replica takes the Lease) the operator's resident size stays near its peak although
little of it is in use: glibc keeps the heap pages it freed, hoping for the next
allocation. `malloc_trim(0)` returns every whole free page of its heaps (the pages in
the middle too, by madvise), so a trim once a minute brings the resident size back
to what is in use (bench/suspended_runs.py). A full garbage collection comes first:
with the operator's rare collections (main.GC_YOUNG_THRESHOLD), the cycles a burst
left behind would otherwise hold their pages until the next burst. The collection
walks every object the operator holds (some 25 ms for 200,000 objects here, once a
minute); the trim takes well under a millisecond. Where the C library has no
`malloc_trim` (musl), nothing is trimmed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 60.0


def find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def trim_every(interval: float = INTERVAL_SECONDS) -> None:
    """Trims the heaps every `interval` seconds, for as long as it runs."""
    trim = find_malloc_trim()
    if trim is None:
        logger.info("no malloc_trim in this C library: freed heap pages stay with the process")
        return
    while True:
        await asyncio.sleep(interval)
        gc.collect()
        trim(0)

"""Capturing an attempt's output and shipping it to Postgres, so it outlives the pod.

The worker (`worker._main`) starts an `FdCapture` before it imports the task
modules: file descriptors 1 and 2 become pipes, and a thread per pipe copies
what arrives both to the original stdout or stderr (so `kubectl logs` shows it
as before) and into a `Buffer`. So everything the attempt writes is kept: the
task logger's records, `print`, the output of C extensions and of
subprocesses. While the task runs, a `Shipper` appends the buffer to the
attempt's stored log (`working.append_log`) at most `interval` (1 s) after
it was written, and soon after each step checkpoint; the last flush comes after
the capture is stopped (the pipes drained) and before the outcome is recorded,
since recording it revokes the attempt's secret. A crash loses at most the last
second; the bound of a stored log is Postgres's business (`schema`, "Attempt
logs").

Why a task of its own rather than a write with each checkpoint: the checkpoint
stays one round trip (DESIGN.md, "Performance targets"); shipping runs
beside it on another connection of the pool and only ever holds one call in
flight. A failed append never touches the attempt's outcome: its bytes are lost,
and the worker says so once on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading

from durakube import errors
from durakube.store import pools, working

log = logging.getLogger("durakube.capturing")

SHIP_INTERVAL_SECONDS = 1.0
# What the buffer holds between two flushes; past it, bytes from its middle are dropped.
BUFFER_LIMIT = 1024 * 1024
# The longest stop() waits for the pipes to drain (a subprocess may still hold them).
DRAIN_TIMEOUT_SECONDS = 2.0


# What a failed append may raise: the attempt is over, or Postgres is away.
_SHIPPING_ERRORS: tuple[type[BaseException], ...] = (
    errors.AttemptRevoked, *pools.CONNECTION_LOST_ERRORS, OSError)


class Buffer:
    """Bytes written and not shipped yet, bounded; safe to write from any thread."""

    def __init__(self, limit: int = BUFFER_LIMIT) -> None:
        self.limit = limit
        self._data = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._data += data
            if len(self._data) > self.limit:
                # Keep the start and the end of what waits, as the stored log does.
                half = self.limit // 2
                self._dropped += len(self._data) - 2 * half
                del self._data[half:len(self._data) - half]

    def take(self) -> bytes:
        """What was written since the last take (with a line where bytes were dropped)."""
        with self._lock:
            data, dropped = bytes(self._data), self._dropped
            self._data.clear()
            self._dropped = 0
        if not dropped:
            return data
        half = len(data) // 2
        note = f"\n[durakube: {dropped} bytes dropped here: written faster than shipped]\n"
        return data[:half] + note.encode() + data[half:]


class FdCapture:
    """Sends what this process writes to fds 1 and 2 through pipes into `buffer`, and on
    to the original stdout and stderr. Only the worker process uses it: it changes the
    whole process's fds."""

    def __init__(self, buffer: Buffer) -> None:
        self.buffer = buffer
        self._originals: dict[int, int] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd in (1, 2):
            original = os.dup(fd)
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            self._originals[fd] = original
            thread = threading.Thread(target=self._copy, args=(read_end, original),
                                      name=f"durakube-capture-{fd}", daemon=True)
            thread.start()
            self._threads.append(thread)
        # Python's own streams write through line by line, so a print reaches the buffer
        # at once rather than when its block fills.
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                with contextlib.suppress(Exception):
                    reconfigure(line_buffering=True)

    def stop(self) -> None:
        """Gives fds 1 and 2 back and waits until what was written is in the buffer."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, original in self._originals.items():
            # The pipe's last write end in this process closes: its reader sees the end.
            os.dup2(original, fd)
        for thread, original in zip(self._threads, self._originals.values(), strict=True):
            thread.join(DRAIN_TIMEOUT_SECONDS)
            # Closed only once its copier is done with it: a copier still writing to a
            # closed number could write into whatever file or socket reuses it next.
            if not thread.is_alive():
                os.close(original)
        self._originals.clear()
        self._threads.clear()

    def _copy(self, read_end: int, original: int) -> None:
        try:
            while data := os.read(read_end, 65536):
                self.buffer.write(data)
                with contextlib.suppress(OSError):
                    _write_all(original, data)
        finally:
            os.close(read_end)


class Output:
    """What the worker captures of one process: a buffer, and the capture filling it
    (None when something else writes into the buffer, as in tests)."""

    def __init__(self, buffer: Buffer | None = None, fds: FdCapture | None = None) -> None:
        self.buffer = buffer if buffer is not None else Buffer()
        self.fds = fds

    @classmethod
    def capturing_fds(cls) -> Output:
        """Starts capturing this process's fds 1 and 2."""
        buffer = Buffer()
        fds = FdCapture(buffer)
        fds.start()
        return cls(buffer, fds)

    async def stop(self) -> None:
        """Stops the capture, once what was written is in the buffer (idempotent)."""
        fds, self.fds = self.fds, None
        if fds is not None:
            await asyncio.to_thread(fds.stop)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Shipper:
    """Appends what `buffer` holds to the attempt's stored log: every `interval`, soon
    after `nudge()`, and once more at `close()`."""

    def __init__(self, db: pools.Database, credential: working.Credential, buffer: Buffer, *,
                 interval: float = SHIP_INTERVAL_SECONDS) -> None:
        self.db, self.credential, self.buffer, self.interval = db, credential, buffer, interval
        self.shipped = 0
        self._nudged = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._revoked = False
        self._warned = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="durakube-log-shipper")

    def nudge(self) -> None:
        """Asks for a flush soon (after a checkpoint); returns at once."""
        self._nudged.set()

    async def close(self) -> None:
        """Stops the periodic flushes and ships what is left."""
        task, self._task = self._task, None
        if task is not None:
            # Asked to stop rather than cancelled: an append in flight finishes with its
            # bytes, and no cancellation can be lost in a wait that ends at that moment.
            self._stopping = True
            self._nudged.set()
            await task
        await self.flush()

    async def flush(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        async with self._lock:
            data = self.buffer.take()
            if not data or self._revoked:
                return
            try:
                await working.append_log(self.db, self.credential, data)
                self.shipped += len(data)
            except _SHIPPING_ERRORS as error:
                # The attempt is over (nothing more can be stored), or Postgres is away for
                # now (these bytes are lost, later ones are tried): either way they stay in
                # the pod's own log. Said once.
                self._revoked = isinstance(error, errors.AttemptRevoked)
                if not self._warned:
                    self._warned = True
                    log.warning("part of the attempt's output was not stored: %s: %s",
                                type(error).__name__, error)

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._nudged.wait()
            self._nudged.clear()
            if not self._stopping:
                await self.flush()

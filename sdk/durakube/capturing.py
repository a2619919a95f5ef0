"""Capturing an attempt's output and shipping it to Postgres, so it outlives the pod.

The worker (`worker.main`) starts a `StreamCapture` before it imports the task
modules: `sys.stdout` and `sys.stderr` become `Tee`s that write to the real
streams first (so the pod's log, `kubectl logs`, has every line at once, even
just before a crash) and copy into a `Buffer`. So all the attempt's Python-level
output is kept: the task logger's records and every other logger's, `print`,
tracebacks. Output written below Python (a C extension writing to fd 1, a
subprocess) reaches the pod's log only; when a pod ends without an outcome, the
operator keeps the end of that log too (`store.logs`, "pod_tail").

While the task runs, a `Shipper` appends the buffer to the attempt's stored log
(`working.append_log`) at most `interval` (1 s) after it was written, and soon
after each step checkpoint; the last flush comes after the capture is stopped and
before the outcome is recorded, since recording it revokes the attempt's secret.
A crash loses at most the last second of the stored copy; the bound of a stored
log is Postgres's business (`schema`, "Attempt logs").

Why a copy in the process rather than its file descriptors through a pipe: a
reader of that pipe in the same process dies with it, and what the pipe held
would be lost from the pod's log too, exactly when it matters (a SIGKILL, a
fatal error's message).

Why a task of its own rather than a write with each checkpoint: the checkpoint
stays one round trip (DESIGN.md, "Performance targets"); shipping runs beside it
on another connection of the pool and only ever holds one call in flight. A
failed append never touches the attempt's outcome: its bytes stay in the pod's
log only, and the worker says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterable
from typing import TextIO

from durakube import errors
from durakube.store import pools, working

log = logging.getLogger("durakube.capturing")

SHIP_INTERVAL_SECONDS = 1.0
# What the buffer holds between two flushes; past it, bytes from its middle are dropped.
BUFFER_LIMIT = 1024 * 1024


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


class Tee(io.TextIOBase):
    """A text stream that writes to `original` first (the pod's log, as if nothing were
    captured), then copies what it wrote into `buffer`."""

    def __init__(self, original: TextIO, buffer: Buffer) -> None:
        self.original, self.buffer = original, buffer

    def write(self, text: str) -> int:
        written = self.original.write(text)
        self.buffer.write(text.encode("utf-8", errors="replace"))
        return written

    def writelines(self, lines: Iterable[str]) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.original.flush()

    def fileno(self) -> int:
        return self.original.fileno()

    def isatty(self) -> bool:
        return self.original.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.original.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.original.errors


class StreamCapture:
    """Puts a `Tee` in place of `sys.stdout` and `sys.stderr` (line-buffered, so each line
    reaches the pod's log at once), and takes it away again."""

    def __init__(self, buffer: Buffer) -> None:
        self.buffer = buffer
        self._originals: tuple[TextIO, TextIO] | None = None

    def start(self) -> None:
        originals = (sys.stdout, sys.stderr)
        for stream in originals:
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                with contextlib.suppress(Exception):
                    reconfigure(line_buffering=True)
        self._originals = originals
        sys.stdout = Tee(originals[0], self.buffer)
        sys.stderr = Tee(originals[1], self.buffer)

    def stop(self) -> None:
        originals, self._originals = self._originals, None
        if originals is not None:
            sys.stdout, sys.stderr = originals
            for stream in originals:
                with contextlib.suppress(Exception):
                    stream.flush()


class Output:
    """What the worker captures of one process: a buffer, and the capture filling it
    (None when something else writes into the buffer, as in tests)."""

    def __init__(self, buffer: Buffer | None = None,
                 streams: StreamCapture | None = None) -> None:
        self.buffer = buffer if buffer is not None else Buffer()
        self.streams = streams

    @classmethod
    def capturing_streams(cls) -> Output:
        """Starts capturing this process's `sys.stdout` and `sys.stderr`."""
        buffer = Buffer()
        streams = StreamCapture(buffer)
        streams.start()
        return cls(buffer, streams)

    async def stop(self) -> None:
        """Stops the capture (idempotent); what was written is in the buffer."""
        streams, self.streams = self.streams, None
        if streams is not None:
            streams.stop()


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

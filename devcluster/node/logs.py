"""Container log files: where they live, how they are written, how they are read.

One file per container instance (per restart) under the node's state folder, in
the CRI log format the kubelet reads (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`),
so that timestamps, sinceSeconds and stream selection are answered truthfully.

Written by `spawning` (the output copiers), read by `serving` (the kubelet
endpoint behind `kubectl logs`), `running` (FallbackToLogsOnError) and tests
through `read`. It starts no processes and makes no API calls.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devcluster.node import times

# A line longer than this is split into partial ("P") records, as CRI runtimes do.
MAX_LINE = 16 * 1024


def pod_dir(pods_dir: Path, namespace: str, name: str, uid: str) -> Path:
    return pods_dir / f"{namespace}_{name}_{uid}"


def container_dir(pod_folder: Path, container: str) -> Path:
    return pod_folder / "containers" / container


def log_path(container_folder: Path, restart: int) -> Path:
    return container_folder / f"{restart}.log"


def find_pod_dir(pods_dir: Path, namespace: str, name: str) -> Path | None:
    """The newest folder of a pod with this namespace and name (pods are
    recreated with the same name by StatefulSets and tests alike)."""
    # Names and namespaces are DNS labels (no "_"), so the prefix is unambiguous.
    candidates = [p for p in pods_dir.glob(f"{namespace}_{name}_*")
                  if p.name.rsplit("_", 1)[0] == f"{namespace}_{name}"]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime)


def find_log(pods_dir: Path, namespace: str, pod: str, container: str, *,
             previous: bool = False) -> Path | None:
    """The current (or previous) instance's log file, or None."""
    folder = find_pod_dir(pods_dir, namespace, pod)
    if folder is None:
        return None
    restarts = sorted(int(p.stem) for p in container_dir(folder, container).glob("*.log"))
    if not restarts:
        return None
    if previous:
        if len(restarts) < 2:
            return None
        return log_path(container_dir(folder, container), restarts[-2])
    return log_path(container_dir(folder, container), restarts[-1])


class LogWriter:
    """Appends one stream's output to a CRI log file, line by line."""

    def __init__(self, handle: IO[bytes], stream: str) -> None:
        self._handle = handle
        self._stream = stream.encode()
        self._pending = b""

    def write(self, chunk: bytes) -> None:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._record(line, b"F")
        while len(self._pending) >= MAX_LINE:
            self._record(self._pending[:MAX_LINE], b"P")
            self._pending = self._pending[MAX_LINE:]
        self._handle.flush()

    def close(self) -> None:
        if self._pending:
            self._record(self._pending, b"F")
            self._pending = b""
        self._handle.flush()

    def _record(self, line: bytes, tag: bytes) -> None:
        self._handle.write(times.format_nano_time().encode() + b" " + self._stream + b" "
                           + tag + b" " + line + b"\n")


@dataclass(frozen=True)
class Record:
    stamp: str
    stream: str
    partial: bool
    text: bytes

    def render(self, *, timestamps: bool) -> bytes:
        body = self.text if self.partial else self.text + b"\n"
        return (self.stamp.encode() + b" " + body) if timestamps else body


def parse_record(line: bytes) -> Record | None:
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    text = parts[3] if len(parts) == 4 else b""
    return Record(parts[0].decode(), parts[1].decode(), parts[2] == b"P", text)


def read_records(path: Path) -> list[Record]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    records = [parse_record(line) for line in raw.splitlines()]
    return [r for r in records if r is not None]


def select_records(records: Iterable[Record], *, since: datetime.datetime | None = None,
                   stream: str = "All") -> list[Record]:
    chosen = []
    for record in records:
        if stream not in ("All", "", None) and record.stream != stream.lower():
            continue
        if since is not None and times.parse_time(record.stamp) < since:
            continue
        chosen.append(record)
    return chosen


def render(records: list[Record], *, tail_lines: int | None = None,
           limit_bytes: int | None = None, timestamps: bool = False) -> bytes:
    """The bytes `kubectl logs` would show for these records."""
    if tail_lines is not None:
        # A line is complete at its "F" record; count from the end in whole lines.
        complete = [i for i, r in enumerate(records) if not r.partial]
        if tail_lines == 0:
            records = []
        elif len(complete) > tail_lines:
            records = records[complete[-tail_lines - 1] + 1:]
    out = b"".join(r.render(timestamps=timestamps) for r in records)
    if limit_bytes is not None:
        out = out[:limit_bytes]
    return out


def read(state_dir: Path, namespace: str, pod: str, container: str,
         previous: bool = False) -> str:
    """A container's log text (the current or previous instance), "" if none;
    `state_dir` is the node's state folder (the `--state-dir` of the agent)."""
    path = find_log(state_dir / "pods", namespace, pod, container, previous=previous)
    if path is None:
        return ""
    return render(read_records(path)).decode(errors="replace")


def read_fallback_message(path: Path) -> str:
    """FallbackToLogsOnError: the last 80 lines, at most 2048 bytes, of a log."""
    text = render(read_records(path), tail_lines=80)
    return text[-2048:].decode(errors="replace")

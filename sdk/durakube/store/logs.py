"""Attempt logs: what each attempt's process wrote, kept after its pod is gone.

The worker appends through its own function (`working.append_log`, which checks the
attempt's secret and enforces the bound, see `schema`, "Attempt logs"); this module
reads the logs back for the client (`durakube logs`, `Client.logs`, the
dashboard), with a table-reading login (the operator's or the owner's).

A stored log is bytes: the head (the first `schema.LOG_HEAD_BYTES`), then, if more
was written, the tail (the last `schema.LOG_TAIL_BYTES`), with `dropped` bytes
between them that were never kept. `text` decodes it (invalid UTF-8, as where a cut
fell inside a character, becomes U+FFFD) and marks the gap.

When a pod ended without an outcome (crashed, OOM-killed, past its deadline), the
operator keeps the end of the pod's own log (`save_pod_tail`): its worker stores
its output about every second, so its last second may be missing. `text` then
adds what the pod's log has after the last bytes the worker stored (found by
matching them), or the whole tail under a line saying where it comes from.

Commits nothing on behalf of a caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from durakube.store import pools, schema


@dataclass(frozen=True)
class StoredLog:
    """The stored log of one attempt."""

    attempt: int
    pod_name: str | None
    head: bytes
    tail: bytes
    total_bytes: int
    pod_tail: bytes = b""

    @property
    def dropped(self) -> int:
        """Bytes written between the head and the tail that were not kept."""
        return max(0, self.total_bytes - len(self.head) - len(self.tail))

    @property
    def text(self) -> str:
        """The log as text, with a line marking where bytes were dropped, and the end of
        the pod's log that the worker did not store."""
        head = self.head.decode("utf-8", errors="replace")
        text = head
        if self.dropped:
            text += (f"{_newline_after(head)}"
                     f"[durakube: {self.dropped} bytes of this attempt's log were dropped here;"
                     f" an attempt keeps its first {schema.LOG_HEAD_BYTES // 1024} KiB and its"
                     f" last {schema.LOG_TAIL_BYTES // 1024} KiB]\n")
        text += self.tail.decode("utf-8", errors="replace")
        return text + unstored_end(self.head + self.tail, self.pod_tail)


# How many of the last stored bytes are looked for in the pod's log to join the two.
_JOIN_PROBE_BYTES = 256
# How many places of the pod tail's first line in the stored bytes are tried.
_JOIN_TRIES = 16


def unstored_end(stored: bytes, pod_tail: bytes) -> str:
    """What the end of the pod's log has that the worker did not store, as text."""
    if not pod_tail:
        return ""
    probe = stored[-_JOIN_PROBE_BYTES:]
    found = pod_tail.rfind(probe) if probe else -1
    if found >= 0:
        return pod_tail[found + len(probe):].decode("utf-8", errors="replace")
    # The pod's tail may begin inside the last stored bytes: find where, by its first line.
    first_line = pod_tail[:pod_tail.find(b"\n") + 1 or len(pod_tail)]
    at = stored.rfind(first_line) if first_line else -1
    for _ in range(_JOIN_TRIES):
        if at < 0:
            break
        if pod_tail.startswith(stored[at:]):
            return pod_tail[len(stored) - at:].decode("utf-8", errors="replace")
        at = stored.rfind(first_line, 0, at + len(first_line) - 1)
    stored_text = stored.decode("utf-8", errors="replace")
    return (f"{_newline_after(stored_text)}[durakube: the pod ended without an outcome; the"
            f" last {len(pod_tail)} bytes of its own log follow]\n"
            + pod_tail.decode("utf-8", errors="replace"))


def _newline_after(text: str) -> str:
    return "" if not text or text.endswith("\n") else "\n"


async def read_logs(db: pools.Database, run_id: str) -> list[StoredLog]:
    """The stored logs of the run's attempts that wrote any, first attempt first."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT l.attempt, a.pod_name, l.total_bytes, l.pod_tail,
                   coalesce((SELECT string_agg(c.data, ''::bytea ORDER BY c.chunk)
                             FROM durakube.attempt_log_chunks c
                             WHERE c.run_id = l.run_id AND c.attempt = l.attempt
                               AND c.part = 'head'), ''::bytea) AS head,
                   coalesce((SELECT string_agg(c.data, ''::bytea ORDER BY c.chunk)
                             FROM durakube.attempt_log_chunks c
                             WHERE c.run_id = l.run_id AND c.attempt = l.attempt
                               AND c.part = 'tail'), ''::bytea) AS tail
            FROM durakube.attempt_logs l
            JOIN durakube.attempts a ON a.run_id = l.run_id AND a.attempt = l.attempt
            WHERE l.run_id = $1
            ORDER BY l.attempt""", run_id)
    return [StoredLog(attempt=record["attempt"], pod_name=record["pod_name"],
                      head=bytes(record["head"]), tail=bytes(record["tail"]),
                      total_bytes=int(record["total_bytes"]),
                      pod_tail=bytes(record["pod_tail"] or b"")) for record in records]


async def save_pod_tail(db: pools.Database, run_id: str, attempt: int, data: bytes) -> None:
    """Keeps the end of the attempt pod's own log (its last `schema.LOG_POD_TAIL_BYTES`)
    with the attempt's stored log; the operator's call, for a pod that ended without an
    outcome. Sets, not appends: calling it again with the same tail changes nothing."""
    async with pools.connection(db) as conn:
        await conn.execute("""
            INSERT INTO durakube.attempt_logs (run_id, attempt, pod_tail) VALUES ($1, $2, $3)
            ON CONFLICT (run_id, attempt) DO UPDATE
            SET pod_tail = EXCLUDED.pod_tail, updated_at = now()""",
            run_id, attempt, data[-schema.LOG_POD_TAIL_BYTES:])

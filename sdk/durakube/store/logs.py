"""Attempt logs: what each attempt's process wrote, kept after its pod is gone.

The worker appends through its own function (`working.append_log`, which checks the
attempt's secret and enforces the bound, see `schema`, "Attempt logs"); this module
reads the logs back for the client (`durakube logs`, `Client.logs`, the
dashboard), with a table-reading login (the operator's or the owner's).

A stored log is bytes: the head (the first `schema.LOG_HEAD_BYTES`), then, if more
was written, the tail (the last `schema.LOG_TAIL_BYTES`), with `dropped` bytes
between them that were never kept. `text` decodes it (invalid UTF-8, as where a cut
fell inside a character, becomes U+FFFD) and marks the gap.

Reads only; commits nothing on behalf of a caller's transaction.
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

    @property
    def dropped(self) -> int:
        """Bytes written between the head and the tail that were not kept."""
        return max(0, self.total_bytes - len(self.head) - len(self.tail))

    @property
    def text(self) -> str:
        """The log as text, with a line marking where bytes were dropped."""
        head = self.head.decode("utf-8", errors="replace")
        if not self.tail and not self.dropped:
            return head
        marker = ""
        if self.dropped:
            marker = (f"{'' if head.endswith(chr(10)) or not head else chr(10)}"
                      f"[durakube: {self.dropped} bytes of this attempt's log were dropped here;"
                      f" an attempt keeps its first {schema.LOG_HEAD_BYTES // 1024} KiB and its"
                      f" last {schema.LOG_TAIL_BYTES // 1024} KiB]\n")
        return head + marker + self.tail.decode("utf-8", errors="replace")


async def read_logs(db: pools.Database, run_id: str) -> list[StoredLog]:
    """The stored logs of the run's attempts that wrote any, first attempt first."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT l.attempt, a.pod_name, l.total_bytes,
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
                      total_bytes=int(record["total_bytes"])) for record in records]

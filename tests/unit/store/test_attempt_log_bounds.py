"""An attempt's stored log keeps its first and last bytes, 1 MiB in all, against real
Postgres: whatever the sizes of the appends, the head is the first bytes written, the
tail the last ones, and the bytes between are counted, never kept."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from durakube.store import attempts, logs, runs, schema, working

HEAD, TAIL = schema.LOG_HEAD_BYTES, schema.LOG_TAIL_BYTES




async def start_attempt(owner: Any) -> working.Credential:
    run_id = str(uuid.uuid4())
    await runs.register_run(owner, run_id=run_id, namespace="ns", name=run_id[:8], task_id="t",
                            payload={})
    secret = attempts.new_secret()
    await attempts.start_attempt(owner, run_id, 1, f"{run_id[:8]}-1", secret=secret)
    return working.Credential(run_id, 1, secret)


def numbered(total: int) -> bytes:
    """`total` bytes in which every position can be told apart: lines of their offsets."""
    out = bytearray()
    while len(out) < total:
        out += f"{len(out):09d}\n".encode()
    return bytes(out[:total])


@pytest.mark.parametrize("sizes", [
    [100, 200],
    [HEAD],
    [HEAD - 10, 30, 40],
    [HEAD + TAIL],
    [3 * 1024 * 1024],
    [70_000] * 30,
    [HEAD + 5, 100, TAIL - 3, 64 * 1024 + 1, 17],
    [1] * 50 + [HEAD + TAIL + 999],
], ids=["small", "exactly-the-head", "across-the-head", "exactly-the-bound", "one-huge",
        "many-chunks", "mixed", "tiny-then-huge"])
async def test_a_log_keeps_its_first_and_last_bytes_within_the_bound(
        owner: Any, worker: Any, sizes: list[int]) -> None:
    credential = await start_attempt(owner)
    written = numbered(sum(sizes))
    offset = 0
    for size in sizes:
        total = await working.append_log(worker, credential, written[offset:offset + size])
        offset += size
        assert total == offset
    (log,) = await logs.read_logs(owner, credential.run_id)
    assert log.total_bytes == len(written)
    assert len(log.head) + len(log.tail) <= HEAD + TAIL
    assert log.head == written[:HEAD]
    kept_tail = max(0, min(TAIL, len(written) - HEAD))
    assert log.tail == (written[len(written) - kept_tail:] if kept_tail else b"")
    assert log.dropped == max(0, len(written) - HEAD - TAIL)
    if log.dropped:
        assert f"[durakube: {log.dropped} bytes of this attempt's log were dropped here" in log.text
    else:
        assert log.text == written.decode()
    async with owner.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT sum(length(data)) FROM durakube.attempt_log_chunks WHERE run_id = $1",
            credential.run_id)
    assert stored == len(log.head) + len(log.tail)


async def test_an_empty_append_stores_nothing_and_a_log_goes_with_its_run(
        owner: Any, worker: Any) -> None:
    credential = await start_attempt(owner)
    assert await working.append_log(worker, credential, b"") == 0
    assert await working.append_log(worker, credential, "é\n".encode()) == 3
    (log,) = await logs.read_logs(owner, credential.run_id)
    assert log.text == "é\n"
    async with owner.acquire() as conn:
        await conn.execute("DELETE FROM durakube.runs WHERE run_id = $1", credential.run_id)
        assert await conn.fetchval("SELECT count(*) FROM durakube.attempt_log_chunks"
                                   " WHERE run_id = $1", credential.run_id) == 0
    assert await logs.read_logs(owner, credential.run_id) == []


@pytest.mark.parametrize(("stored", "pod_log", "expected"), [
    (b"", b"", ""),
    (b"one\ntwo\n", b"", "one\ntwo\n"),
    (b"one\ntwo\n", b"one\ntwo\nthree\n", "one\ntwo\nthree\n"),
    (b"one\ntwo\n", b"two\nthree\n", "one\ntwo\nthree\n"),
    (b"one\ntwo\n", b"one\ntwo\n", "one\ntwo\n"),
    (b"one\ntwo", b"nine\n",
     "one\ntwo\n[durakube: the pod ended without an outcome; the last 5 bytes of its own log"
     " follow]\nnine\n"),
    (b"", b"nine\n",
     "[durakube: the pod ended without an outcome; the last 5 bytes of its own log follow]"
     "\nnine\n"),
], ids=["nothing", "no-pod-tail", "pod-log-goes-on", "pod-tail-overlaps", "nothing-unstored",
        "no-overlap", "worker-stored-nothing"])
async def test_the_end_of_a_failed_pods_log_completes_what_the_worker_stored(
        owner: Any, worker: Any, stored: bytes, pod_log: bytes, expected: str) -> None:
    credential = await start_attempt(owner)
    if stored:
        await working.append_log(worker, credential, stored)
    await logs.save_pod_tail(owner, credential.run_id, 1, pod_log)
    # Saved again (a pass of the operator repeated): the same.
    await logs.save_pod_tail(owner, credential.run_id, 1, pod_log)
    (log,) = await logs.read_logs(owner, credential.run_id)
    assert log.text == expected
    assert log.total_bytes == len(stored)


async def test_a_pod_tail_is_kept_to_its_bound(owner: Any) -> None:
    credential = await start_attempt(owner)
    await logs.save_pod_tail(owner, credential.run_id, 1, b"x" * 10 + numbered(200_000))
    (log,) = await logs.read_logs(owner, credential.run_id)
    assert log.pod_tail == numbered(200_000)[-schema.LOG_POD_TAIL_BYTES:]

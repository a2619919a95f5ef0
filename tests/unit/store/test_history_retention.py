"""Retention in real Postgres: expired TaskRuns are found in bounded batches, and the
history of runs whose TaskRun is gone leaves every table, and nothing else does.

The clean-up runs as the operator's login (a member of durakube_operator), as in a real
install, so it also proves that login may delete what the loop deletes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durakube.store import retention, runs

DAY = 86400.0



@pytest.fixture
def db(operator: Any) -> Any:
    """The operator's login, which runs the retention loop's SQL."""
    return operator


async def run_with_rows(owner: Any, namespace: str = "team") -> str:
    """A run with a row in every table that holds rows of a run (as the worker, the
    operator and the admission loop write them)."""
    run_id = str(uuid.uuid4())
    await runs.register_run(owner, run_id=run_id, namespace=namespace, name=run_id[:8],
                            task_id="t", payload={"n": 1}, queue=f"{namespace}/default")
    async with owner.acquire() as conn:
        await conn.execute("""
            INSERT INTO durakube.attempts (run_id, attempt, outcome)
            VALUES ($1, 1, 'succeeded')""", run_id)
        await conn.execute("""
            INSERT INTO durakube.steps (run_id, seq, name, status, attempt, started_at,
                                        finished_at, duration_ms)
            VALUES ($1, 1, 'fetch', 'succeeded', 1, now(), now(), 1.0)""", run_id)
        await conn.execute("""
            INSERT INTO durakube.waitpoints (run_id, seq, kind, wake_at)
            VALUES ($1, 2, 'sleep', now())""", run_id)
        await conn.execute("""
            INSERT INTO durakube.child_runs (parent_run_id, seq, namespace, name, task, payload)
            VALUES ($1, 3, $2, 'child', 't', '{}')""", run_id, namespace)
        await conn.execute("""
            INSERT INTO durakube.queue_waiting (run_id, queue, namespace, name, created_at)
            VALUES ($1, 'team/default', $2, 'x', now())""", run_id, namespace)
        await conn.execute("""
            INSERT INTO durakube.queue_slots (run_id, queue, namespace, name)
            VALUES ($1, 'team/default', $2, 'x')""", run_id, namespace)
    return run_id


async def rows_of(owner: Any, run_id: str) -> dict[str, int]:
    """How many rows each table holds for the run, `runs` included."""
    counts = {}
    async with owner.acquire() as conn:
        for table, column in [*await retention.per_run_tables(conn), ("runs", "run_id")]:
            counts[table] = await conn.fetchval(
                f'SELECT count(*) FROM durakube."{table}" WHERE "{column}" = $1', run_id)
    return counts


async def finish(db: Any, run_id: str, *, ttl: float | None, history: float | None) -> None:
    await retention.record_finish(db, run_id=run_id, namespace="team", name=run_id[:8],
                                  ttl_seconds=ttl, history_seconds=history)


def gone(run_id: str) -> retention.DueTaskRun:
    return retention.DueTaskRun(run_id, "team", run_id[:8])


async def test_every_table_holding_rows_of_a_run_is_found(owner: Any) -> None:
    # Later migrations add tables (the attempts' logs, keyed by run_id): found the same way.
    tables = dict(await retention.per_run_tables(owner))
    assert tables.items() >= {"attempts": "run_id", "child_runs": "parent_run_id",
                      "queue_slots": "run_id", "queue_waiting": "run_id",
                      "run_retention": "run_id", "steps": "run_id", "waitpoints": "run_id"}.items()


async def test_only_expired_taskruns_are_due_soonest_first_in_bounded_batches(
        owner: Any, db: Any) -> None:
    expired = [await run_with_rows(owner) for _ in range(5)]
    for run_id in expired:
        await finish(db, run_id, ttl=0, history=DAY)
    later = await run_with_rows(owner)
    await finish(db, later, ttl=DAY, history=DAY)
    kept = await run_with_rows(owner)
    await finish(db, kept, ttl=None, history=DAY)

    first = await retention.taskruns_due(db, limit=3)
    assert len(first) == 3 and {due.run_id for due in first} <= set(expired)
    await retention.mark_taskruns_gone(db, first, history_seconds=DAY)
    rest = await retention.taskruns_due(db, limit=3)
    assert {due.run_id for due in rest} == set(expired) - {due.run_id for due in first}
    await retention.mark_taskruns_gone(db, rest, history_seconds=DAY)
    assert await retention.taskruns_due(db, limit=3) == []
    # The next one due is the run whose TTL is a day.
    soonest = await retention.next_expiry(db)
    assert soonest is not None and soonest > datetime.now(UTC) + timedelta(hours=23)


async def test_a_repeated_finish_keeps_the_first_expiry(owner: Any, db: Any) -> None:
    run_id = await run_with_rows(owner)
    await finish(db, run_id, ttl=DAY, history=DAY)
    await finish(db, run_id, ttl=0, history=0)
    assert await retention.taskruns_due(db, limit=10) == []


async def test_history_goes_only_when_expired_and_the_taskrun_is_gone(owner: Any, db: Any) -> None:
    doomed = [await run_with_rows(owner) for _ in range(3)]
    for run_id in doomed:
        await finish(db, run_id, ttl=0, history=0)
    await retention.mark_taskruns_gone(db, [gone(run_id) for run_id in doomed], history_seconds=0)
    # Expired history whose TaskRun is still there; a gone TaskRun whose history is young;
    # a run that never finished; history kept for ever.
    taskrun_kept = await run_with_rows(owner)
    await finish(db, taskrun_kept, ttl=None, history=0)
    young = await run_with_rows(owner)
    await finish(db, young, ttl=0, history=DAY)
    await retention.mark_taskruns_gone(db, [gone(young)], history_seconds=0)
    running = await run_with_rows(owner)
    forever = await run_with_rows(owner)
    await finish(db, forever, ttl=0, history=None)
    await retention.mark_taskruns_gone(db, [gone(forever)], history_seconds=0)
    others = [taskrun_kept, young, running, forever]
    before = {run_id: await rows_of(owner, run_id) for run_id in others}

    first = await retention.purge_history(db, limit=2)
    assert len(first) == 2 and set(first) <= set(doomed)
    second = await retention.purge_history(db, limit=2)
    assert set(first + second) == set(doomed)
    assert await retention.purge_history(db, limit=2) == []

    for run_id in doomed:
        assert set((await rows_of(owner, run_id)).values()) == {0}, run_id
    for run_id in others:
        assert await rows_of(owner, run_id) == before[run_id], run_id
    assert before[running]["steps"] == 1


async def test_a_taskrun_deleted_before_its_run_finished_gets_the_retention_from_then(
        owner: Any, db: Any) -> None:
    deleted_now = await run_with_rows(owner)
    await retention.mark_taskruns_gone(db, [gone(deleted_now)], history_seconds=0)
    deleted_later = await run_with_rows(owner)
    await retention.mark_taskruns_gone(db, [gone(deleted_later)], history_seconds=DAY)
    assert await retention.purge_history(db, limit=10) == [deleted_now]
    assert (await rows_of(owner, deleted_later))["runs"] == 1


async def test_events_payloads_and_queue_keys_go_by_age_in_bounded_batches(
        owner: Any, db: Any) -> None:
    async with owner.acquire() as conn:
        await conn.execute("""
            INSERT INTO durakube.events (event_id, namespace, key, expires_at)
            SELECT 'old-' || i, 'team', 'k', now() - interval '40 days'
            FROM generate_series(1, 3) i;
            INSERT INTO durakube.events (event_id, namespace, key, expires_at)
            VALUES ('buffered', 'team', 'k', now() + interval '1 day');
            INSERT INTO durakube.payloads (ref, data, bytes, created_at)
            VALUES ('old', '{}', 2, now() - interval '40 days'), ('new', '{}', 2, now());
            INSERT INTO durakube.queue_keys (queue, concurrency_key, last_admitted_at)
            VALUES ('team/q', 'a', now() - interval '40 days'), ('team/q', 'b', now());""")
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert await retention.purge_events(db, cutoff, limit=2) == 2
    assert await retention.purge_events(db, cutoff, limit=2) == 1
    assert await retention.purge_events(db, cutoff, limit=2) == 0
    assert await retention.purge_payloads(db, cutoff, limit=10) == 1
    assert await retention.purge_queue_keys(db, cutoff, limit=10) == 1
    async with owner.acquire() as conn:
        assert await conn.fetchval("SELECT array_agg(event_id) FROM durakube.events") == ["buffered"]
        assert await conn.fetchval("SELECT array_agg(ref) FROM durakube.payloads") == ["new"]
        assert await conn.fetchval(
            "SELECT array_agg(concurrency_key) FROM durakube.queue_keys") == ["b"]


async def explain(conn: Any, query: str) -> str:
    return "\n".join(row[0] for row in await conn.fetch(query))


async def test_the_scans_of_the_loop_use_their_indexes(owner: Any) -> None:
    async with owner.acquire() as conn:
        # Planner statistics of an empty table favour a sequential scan; ask for the plan
        # the index gives once tables are large.
        await conn.execute("SET enable_seqscan = off")
        due = await explain(conn, """
            EXPLAIN SELECT run_id FROM durakube.run_retention
            WHERE taskrun_expires_at <= now() AND taskrun_gone_at IS NULL
            ORDER BY taskrun_expires_at LIMIT 100""")
        history = await explain(conn, """
            EXPLAIN SELECT run_id FROM durakube.run_retention
            WHERE history_expires_at <= now() AND taskrun_gone_at IS NOT NULL
            ORDER BY history_expires_at LIMIT 100""")
    assert "run_retention_taskrun_due_idx" in due
    assert "run_retention_history_due_idx" in history


async def test_a_finish_recorded_late_counts_from_when_the_run_finished(owner: Any, db: Any) -> None:
    long_ago = await run_with_rows(owner)
    await retention.record_finish(db, run_id=long_ago, namespace="team", name="old", ttl_seconds=3600,
                                  history_seconds=DAY,
                                  finished_at=datetime.now(UTC) - timedelta(hours=2))
    recent = await run_with_rows(owner)
    await retention.record_finish(db, run_id=recent, namespace="team", name="new", ttl_seconds=3600,
                                  history_seconds=DAY,
                                  finished_at=datetime.now(UTC) - timedelta(minutes=2))
    assert [due.run_id for due in await retention.taskruns_due(db, limit=10)] == [long_ago]


async def test_last_attempts_pods_are_due_after_their_time_once(owner: Any, db: Any) -> None:
    due_now, later, kept = [await run_with_rows(owner) for _ in range(3)]
    for run_id, seconds in ((due_now, 0), (later, 3600), (kept, None)):
        await retention.record_finish(db, run_id=run_id, namespace="team", name=run_id[:8],
                                      ttl_seconds=None, history_seconds=None,
                                      pod_name=f"{run_id[:8]}-1", pod_seconds=seconds)
    assert await retention.pods_due(db, limit=10) == [
        retention.DuePod(due_now, "team", f"{due_now[:8]}-1")]
    await retention.mark_pods_gone(db, [due_now])
    assert await retention.pods_due(db, limit=10) == []
    soonest = await retention.next_expiry(db)
    assert soonest is not None and soonest > datetime.now(UTC) + timedelta(minutes=59)

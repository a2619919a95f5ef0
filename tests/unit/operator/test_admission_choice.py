"""Which waiting runs get slots: limits, per-key limits, priority, fairness, FIFO."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durakube.store import queues
from durakube_operator import admitting

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def waiting(name: str, key: str = "", priority: int = 0, age: int = 0) -> queues.Waiting:
    created = T0 + timedelta(seconds=age)
    return queues.Waiting(run_id=name, namespace="ns", name=name, concurrency_key=key,
                          priority=priority, created_at=created, enqueued_at=created)


def ordered(runs: list[queues.Waiting]) -> list[queues.Waiting]:
    # The store hands runs over highest priority first, then oldest first.
    return sorted(runs, key=lambda r: (-r.priority, r.created_at, r.run_id))


def choose(runs: list[queues.Waiting], limit: int, per_key: int | None = None,
           running: dict[str, int] | None = None,
           served: dict[str, datetime] | None = None) -> list[str]:
    return [r.name for r in admitting.select_runs(ordered(runs), limit=limit, per_key_limit=per_key,
                                                  running=running or {}, last_served=served or {})]


def test_fifo_within_the_limit() -> None:
    runs = [waiting(f"r{i}", age=i) for i in range(8)]
    assert choose(runs, limit=3) == ["r0", "r1", "r2"]


def test_slots_in_use_count_against_the_limit() -> None:
    runs = [waiting(f"r{i}", age=i) for i in range(8)]
    assert choose(runs, limit=3, running={"": 2}) == ["r0"]
    assert choose(runs, limit=3, running={"": 3}) == []
    assert choose(runs, limit=3, running={"": 5}) == []  # a lowered limit admits nothing


def test_priority_beats_age() -> None:
    runs = [waiting("old", age=0), waiting("older", age=-5), waiting("urgent", priority=10, age=99)]
    assert choose(runs, limit=2) == ["urgent", "older"]


def test_keys_are_served_round_robin_not_fifo() -> None:
    runs = [waiting(f"big-{i}", "big", age=i) for i in range(10)]
    runs += [waiting(f"small-{i}", "small", age=100 + i) for i in range(2)]
    assert choose(runs, limit=4) == ["big-0", "small-0", "big-1", "small-1"]


def test_the_key_served_longest_ago_goes_first() -> None:
    runs = [waiting("a-1", "a", age=0), waiting("b-1", "b", age=5)]
    served = {"a": T0 + timedelta(minutes=5), "b": T0}
    assert choose(runs, limit=1, served=served) == ["b-1"]


@pytest.mark.parametrize(("running", "expected"), [
    ({}, ["big-0", "small-0"]),
    ({"big": 1}, ["small-0"]),
    ({"big": 1, "small": 1}, []),
], ids=["idle", "big-busy", "both-busy"])
def test_per_key_limit(running: dict[str, int], expected: list[str]) -> None:
    runs = [waiting(f"big-{i}", "big", age=i) for i in range(5)] + [waiting("small-0", "small", age=9)]
    assert choose(runs, limit=5, per_key=1, running=running) == expected


def test_runs_without_a_key_share_the_queue_limit_only() -> None:
    runs = [waiting(f"r{i}", age=i) for i in range(4)]
    assert choose(runs, limit=3, per_key=1) == ["r0", "r1", "r2"]


def test_a_rate_limit_admits_no_more_than_its_window_leaves() -> None:
    runs = [waiting(f"r{i}", age=i) for i in range(8)]
    chosen = admitting.select_runs(ordered(runs), limit=10, per_key_limit=None, running={},
                                   last_served={}, rate=queues.RateRoom(queue=2))
    assert [r.name for r in chosen] == ["r0", "r1"]


def test_a_per_key_rate_limit_holds_back_a_busy_key_only() -> None:
    runs = [waiting("a1", "a", age=1), waiting("a2", "a", age=2), waiting("a3", "a", age=3),
            waiting("b1", "b", age=4), waiting("free", "", age=5)]
    # Key a was admitted twice in its window already, b never; keyless runs have no key limit.
    room = queues.RateRoom(key_starts=3, per_key={"a": 2})
    chosen = admitting.select_runs(ordered(runs), limit=10, per_key_limit=None, running={},
                                   last_served={}, rate=room)
    assert sorted(r.name for r in chosen) == ["a1", "b1", "free"]

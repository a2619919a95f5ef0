"""The work queue: deduplicated keys, one worker per key, earliest deadline wins, failed keys back off."""

from __future__ import annotations

import asyncio

from durakube_operator import workqueue


async def test_a_key_added_twice_is_handed_out_once() -> None:
    queue = workqueue.WorkQueue()
    queue.add(("ns", "a"))
    queue.add(("ns", "a"))
    queue.add(("ns", "b"))
    assert await queue.get() == ("ns", "a")
    assert await queue.get() == ("ns", "b")
    assert len(queue) == 0


async def test_a_key_re_added_while_active_comes_back_after_done() -> None:
    queue = workqueue.WorkQueue()
    queue.add(("ns", "a"))
    key = await queue.get()
    queue.add(key)  # an event while a worker holds the key
    assert len(queue) == 0  # not handed to a second worker meanwhile
    queue.done(key)
    assert await asyncio.wait_for(queue.get(), 1) == key


async def test_delayed_keys_keep_only_their_earliest_deadline() -> None:
    queue = workqueue.WorkQueue()
    runner = asyncio.create_task(queue.run_delays())
    try:
        queue.add_after(("ns", "a"), 60)
        queue.add_after(("ns", "a"), 0.05)
        queue.add_after(("ns", "a"), 30)
        assert len(queue) == 1
        assert await asyncio.wait_for(queue.get(), 2) == ("ns", "a")
    finally:
        runner.cancel()


async def test_urgent_keys_go_ahead_of_routine_ones() -> None:
    queue = workqueue.WorkQueue()
    for name in ("a", "b", "c"):
        queue.add(("ns", name))
    queue.add(("ns", "c"), urgent=True)  # already queued: promoted, not doubled
    queue.add(("ns", "d"), urgent=True)
    order = [await queue.get() for _ in range(4)]
    assert order == [("ns", "c"), ("ns", "d"), ("ns", "a"), ("ns", "b")]
    assert len(queue) == 0


def test_failure_delays_double_per_key_up_to_the_cap() -> None:
    queue = workqueue.WorkQueue()
    delays = [queue.add_rate_limited(("ns", "a")) for _ in range(9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert queue.add_rate_limited(("ns", "b")) == workqueue.FAILURE_DELAY_START  # counted per key
    assert queue.requeues(("ns", "a")) == 9
    assert len(queue) == 2  # each failed key is waiting for its next pass


def test_forget_restarts_the_delays_of_that_key_only() -> None:
    queue = workqueue.WorkQueue()
    for _ in range(3):
        queue.add_rate_limited(("ns", "a"))
        queue.add_rate_limited(("ns", "b"))
    queue.forget(("ns", "a"))
    assert queue.requeues(("ns", "a")) == 0
    assert queue.add_rate_limited(("ns", "a")) == workqueue.FAILURE_DELAY_START
    assert queue.add_rate_limited(("ns", "b")) == 8.0


def test_a_key_failing_for_days_stays_at_the_cap() -> None:
    queue = workqueue.WorkQueue()
    for _ in range(5000):
        delay = queue.add_rate_limited(("ns", "a"))
    assert delay == workqueue.FAILURE_DELAY_MAX

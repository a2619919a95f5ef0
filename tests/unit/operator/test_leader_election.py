"""Leader election on a Lease: who may take it, when, and when a leader must stop.

The Lease store below is a few lines standing in for the API server's optimistic
concurrency (a write must carry the resourceVersion it read); the end-to-end tests
run the same elector against a real kube-apiserver.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from durakube_operator import kubeapi, leading

NAMESPACE, NAME = "durakube-system", "durakube-operator"


class Leases:
    """An in-memory Lease API: create, read, and replace guarded by resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.failing = False
        self.hanging = False

    def _check(self) -> None:
        if self.failing:
            raise OSError("connection refused")

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        if self.hanging:
            await asyncio.Event().wait()
        return copy.deepcopy(self.lease)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self._check()
        if self.lease is not None:
            return None
        return self._store(body)

    async def replace_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self._check()
        assert self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            return None
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str | None:
        return None if self.lease is None else self.lease["spec"].get("holderIdentity")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(leases: Leases, identity: str, clock: Clock | None = None) -> leading.LeaderElector:
    api: kubeapi.KubeApi = leases  # type: ignore[assignment]
    return leading.LeaderElector(api, NAMESPACE, NAME, identity, clock=clock or Clock())


async def test_the_first_replica_creates_the_lease_and_leads() -> None:
    leases = Leases()
    assert await elector(leases, "a")._try_acquire_or_renew()
    assert leases.lease is not None
    spec = leases.lease["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]


async def test_a_standby_waits_while_the_leader_renews() -> None:
    leases, clock = Leases(), Clock()
    leader, standby = elector(leases, "a", clock), elector(leases, "b", clock)
    assert await leader._try_acquire_or_renew()
    for _ in range(20):  # a minute of renewals every 3 s
        clock.now += 3
        assert await leader._try_acquire_or_renew()
        assert not await standby._try_acquire_or_renew()
    assert leases.holder == "a"


async def test_a_silent_lease_is_taken_over_one_lease_duration_after_it_was_seen() -> None:
    leases, clock = Leases(), Clock()
    assert await elector(leases, "a", clock)._try_acquire_or_renew()
    assert leases.lease is not None
    # The record's own times say nothing to the standby (its clock may disagree).
    leases.lease["spec"]["renewTime"] = "2001-01-01T00:00:00.000000Z"
    standby = elector(leases, "b", clock)
    assert not await standby._try_acquire_or_renew()
    clock.now += 14.9
    assert not await standby._try_acquire_or_renew()
    clock.now += 0.2
    assert await standby._try_acquire_or_renew()
    spec = leases.lease["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert spec["acquireTime"] == spec["renewTime"] != "2001-01-01T00:00:00.000000Z"


async def test_renewing_keeps_the_acquire_time_and_the_transition_count() -> None:
    leases, clock = Leases(), Clock()
    leader = elector(leases, "a", clock)
    assert await leader._try_acquire_or_renew()
    assert leases.lease is not None
    first = dict(leases.lease["spec"])
    clock.now += 2
    assert await leader._try_acquire_or_renew()
    spec = leases.lease["spec"]
    assert (spec["acquireTime"], spec["leaseTransitions"]) == (first["acquireTime"], 0)


async def test_two_standbys_racing_for_an_expired_lease_cannot_both_win() -> None:
    leases, clock = Leases(), Clock()
    assert await elector(leases, "a", clock)._try_acquire_or_renew()
    b, c = elector(leases, "b", clock), elector(leases, "c", clock)
    assert not await b._try_acquire_or_renew()
    assert not await c._try_acquire_or_renew()
    clock.now += 16
    won = await asyncio.gather(b._try_acquire_or_renew(), c._try_acquire_or_renew())
    assert sorted(won) == [False, True]
    assert leases.holder == ("b" if won[0] else "c")


async def test_a_released_lease_is_taken_at_once() -> None:
    leases, clock = Leases(), Clock()
    leader, standby = elector(leases, "a", clock), elector(leases, "b", clock)
    await leader.acquire()
    assert not await standby._try_acquire_or_renew()
    await leader.release()
    assert leases.holder == "" and not leader.leading
    assert await standby._try_acquire_or_renew()  # no lease duration to wait out


async def test_a_leader_that_cannot_renew_stops_within_the_renew_deadline() -> None:
    leases = Leases()
    timings = leading.Timings(lease_duration=0.6, renew_deadline=0.3, retry_period=0.05)
    leader = leading.LeaderElector(leases, NAMESPACE, NAME, "a", timings)  # type: ignore[arg-type]
    await leader.acquire()
    leases.failing = True
    with pytest.raises(leading.LeadershipLost, match="not renewed"):
        await asyncio.wait_for(leader.keep(), timeout=5)
    # That the renew deadline comes before a standby may take over is Timings' rule
    # (test_timings_that_could_make_two_leaders_are_refused), not a stopwatch's.
    assert not leader.leading


async def test_a_renewal_that_gets_no_answer_is_logged_as_a_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    leases = Leases()
    timings = leading.Timings(lease_duration=0.6, renew_deadline=0.3, retry_period=0.05)
    leader = leading.LeaderElector(leases, NAMESPACE, NAME, "a", timings)  # type: ignore[arg-type]
    await leader.acquire()
    leases.hanging = True
    with pytest.raises(leading.LeadershipLost):
        await asyncio.wait_for(leader.keep(), timeout=5)
    renewals = [r.getMessage() for r in caplog.records if "could not renew" in r.getMessage()]
    assert renewals and renewals[0].endswith(": TimeoutError")


async def test_a_leader_that_sees_another_holder_stops_at_once() -> None:
    leases = Leases()
    timings = leading.Timings(lease_duration=3, renew_deadline=2, retry_period=0.05)
    leader = leading.LeaderElector(leases, NAMESPACE, NAME, "a", timings)  # type: ignore[arg-type]
    await leader.acquire()
    assert leases.lease is not None
    leases.lease["spec"]["holderIdentity"] = "b"  # e.g. this replica was frozen past its lease
    with pytest.raises(leading.LeadershipLost, match="held by b"):
        await asyncio.wait_for(leader.keep(), timeout=1)


async def test_a_standby_keeps_standing_through_api_errors() -> None:
    leases = Leases()
    timings = leading.Timings(lease_duration=0.3, renew_deadline=0.2, retry_period=0.02)
    standby = leading.LeaderElector(leases, NAMESPACE, NAME, "b", timings)  # type: ignore[arg-type]
    leases.failing = True
    acquiring = asyncio.create_task(standby.acquire())
    await asyncio.sleep(0.1)
    assert not acquiring.done()
    leases.failing = False
    await asyncio.wait_for(acquiring, timeout=2)
    assert standby.leading and leases.holder == "b"


def test_timings_that_could_make_two_leaders_are_refused() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        leading.Timings(lease_duration=10, renew_deadline=10, retry_period=2)

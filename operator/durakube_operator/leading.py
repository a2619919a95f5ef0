"""Leader election on a coordination.k8s.io Lease, the way client-go's leaderelection does it.

Every replica stands: `acquire()` returns once this replica holds the Lease, then
`keep()` renews it every retry period and raises `LeadershipLost` when no renewal
succeeded for the renew deadline. `release()` gives it up on a clean stop, so a
standby takes over at once rather than when the lease expires.

Whether another holder's lease has expired is judged by this replica's own
monotonic clock, from the moment it last saw the record change (client-go's rule),
never by comparing the renew time written on the Lease with local wall time: clocks
that disagree between nodes cannot make two leaders. A write is a PUT guarded by
the resourceVersion read, so two standbys racing for an expired lease cannot both
win. The times written on the Lease are for people and other tools.

The renew deadline is shorter than the lease duration: a leader that could not
renew stops before any standby may take over. Talks to the API only through the
Lease calls of `kubeapi.KubeApi`; knows nothing of runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from durakube_operator import kubeapi

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timings:
    """controller-runtime's defaults: a standby waits out 15 s of silence; a leader gives
    up after 10 s without a renewal; both try every 2 s."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration, "
                             f"got {self.retry_period} s, {self.renew_deadline} s, "
                             f"{self.lease_duration} s")


class LeadershipLost(Exception):
    """The Lease could not be renewed within the renew deadline: stop leading now."""


def micro_time(moment: datetime) -> str:
    """A Lease's MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: kubeapi.KubeApi, namespace: str, name: str, identity: str,
                 timings: Timings = Timings(),
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.timings = timings
        self.clock, self.now = clock, now
        self.leading = False
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0

    async def acquire(self) -> None:
        """Returns once this replica holds the Lease; until then tries every retry period,
        and right when the current holder's lease runs out."""
        while True:
            if await self._try_quietly():
                break
            await asyncio.sleep(min(self.timings.retry_period,
                                    max(0.05, self._expires_at() - self.clock())))
        self.leading = True
        logger.info("leading: acquired lease %s/%s as %s", self.namespace, self.name, self.identity)

    async def keep(self) -> None:
        """Renews the Lease every retry period, forever; raises LeadershipLost when none
        succeeded for the renew deadline."""
        renewed_at = self.clock()
        while True:
            await asyncio.sleep(self.timings.retry_period)
            left = self.timings.renew_deadline - (self.clock() - renewed_at)
            try:
                renewed = await asyncio.wait_for(self._try_acquire_or_renew(), timeout=max(0.1, left))
            except (TimeoutError, kubeapi.ApiException, OSError) as error:
                logger.warning("could not renew lease %s/%s: %s", self.namespace, self.name,
                               str(error) or type(error).__name__)
                renewed = False
            holder = (self._observed or {}).get("holderIdentity")
            if renewed:
                renewed_at = self.clock()
            elif holder and holder != self.identity:
                self.leading = False
                raise LeadershipLost(f"lease {self.namespace}/{self.name} is held by {holder} now")
            elif self.clock() - renewed_at >= self.timings.renew_deadline:
                self.leading = False
                raise LeadershipLost(
                    f"lease {self.namespace}/{self.name} not renewed for "
                    f"{self.timings.renew_deadline:.0f} s")

    async def release(self) -> None:
        """Gives the Lease up when this replica holds it: empty holder, one-second lease."""
        if not self.leading:
            return
        self.leading = False
        lease = await self.api.get_lease(self.namespace, self.name)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        stamp = micro_time(self.now())
        spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1,
                "acquireTime": stamp, "renewTime": stamp}
        if await self.api.replace_lease(self.namespace, {**lease, "spec": spec}) is not None:
            logger.info("released lease %s/%s", self.namespace, self.name)

    async def _try_quietly(self) -> bool:
        """One try at the Lease; a failed call (API down, forbidden) is logged, not raised:
        a standby keeps standing."""
        try:
            return await self._try_acquire_or_renew()
        except (kubeapi.ApiException, OSError, TimeoutError) as error:
            logger.warning("could not read or take lease %s/%s: %s", self.namespace, self.name,
                           str(error).strip() or type(error).__name__)
            return False

    async def _try_acquire_or_renew(self) -> bool:
        stamp = micro_time(self.now())
        lease = await self.api.get_lease(self.namespace, self.name)
        if lease is None:
            created = await self.api.create_lease(self.namespace, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec({}, stamp)})
            if created is None:
                return False  # another replica created it first
            self._observe(created["spec"])
            return True
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and self.clock() < self._expires_at():
            return False
        written = await self.api.replace_lease(self.namespace, {**lease, "spec": self._spec(spec, stamp)})
        if written is None:
            return False  # somebody wrote the Lease since we read it: look again next round
        self._observe(written["spec"])
        return True

    def _spec(self, old: dict[str, Any], stamp: str) -> dict[str, Any]:
        """The record this replica writes: renewing keeps acquireTime and the transition
        count; taking over from another holder sets both anew."""
        renewing = old.get("holderIdentity") == self.identity
        return {**old,
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.timings.lease_duration),
                "acquireTime": old.get("acquireTime", stamp) if renewing else stamp,
                "renewTime": stamp,
                "leaseTransitions": (old.get("leaseTransitions") or 0) + (
                    0 if renewing or not old else 1)}

    def _observe(self, spec: dict[str, Any]) -> None:
        self._observed, self._observed_at = spec, self.clock()

    def _expires_at(self) -> float:
        """When the lease last seen runs out, on this replica's clock."""
        duration = (self._observed or {}).get("leaseDurationSeconds") or self.timings.lease_duration
        return self._observed_at + float(duration)

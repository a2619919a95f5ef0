"""Delivering events and completing tokens, for the TaskEvent resource and the webhooks.

Both paths end in the same store calls (`waitpoints.send_event`,
`waitpoints.complete_token`) as the Python client's, then poke the waking loop so
the runs they released resume at once instead of at its next round.

An event is sent in a namespace: a TaskEvent's own, or the one the webhook's caller
was authorized for. Keys under `durakube.io/` (children's results) are refused
here as in the store: only the operator's `children` sends on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from durakube import errors, resources
from durakube.store import pools, waitpoints


@dataclass(frozen=True)
class Deliverer:
    db: pools.Database
    poke: Callable[[], None]

    async def send_event(self, namespace: str, key: str, data: Any,
                         event_id: str | None = None) -> waitpoints.Delivery:
        """Raises `waitpoints.ReservedEventKey` for a key only the operator may send on."""
        delivery = await waitpoints.send_event(self.db, key, data, namespace=namespace,
                                               event_id=event_id)
        if delivery.run_ids:
            self.poke()
        return delivery

    async def complete_token(self, token: str, data: Any) -> str:
        run_id = await waitpoints.complete_token(self.db, token, data)
        self.poke()
        return run_id

    async def deliver_task_event(self, namespace: str, spec: resources.TaskEventSpec,
                                 uid: str) -> resources.TaskEventStatus:
        """Delivers a TaskEvent to the runs of its namespace, once (its uid makes a repeat a
        no-op), and says how it went."""
        now = datetime.now(UTC).replace(microsecond=0)
        if spec.token is not None:
            try:
                await self.complete_token(spec.token, spec.data)
            except (waitpoints.TokenNotFound, waitpoints.TokenAlreadyCompleted,
                    errors.ValueRefused) as error:
                return resources.TaskEventStatus(phase=resources.DeliveryPhase.FAILED,
                                                 message=str(error), delivered_at=now)
            return resources.TaskEventStatus(phase=resources.DeliveryPhase.DELIVERED, delivered_to=1,
                                             delivered_at=now, message="token completed")
        assert spec.key is not None  # the CRD's validation rule requires one of the two
        try:
            delivery = await self.send_event(namespace, spec.key, spec.data, event_id=uid)
        except (waitpoints.ReservedEventKey, errors.ValueRefused) as error:
            return resources.TaskEventStatus(phase=resources.DeliveryPhase.FAILED,
                                             message=str(error), delivered_at=now)
        if delivery.buffered:
            return resources.TaskEventStatus(
                phase=resources.DeliveryPhase.BUFFERED, delivered_at=now,
                message=f"no run waits on {spec.key!r} yet: kept for the next wait on it")
        return resources.TaskEventStatus(phase=resources.DeliveryPhase.DELIVERED,
                                         delivered_to=len(delivery.run_ids), delivered_at=now,
                                         message=f"delivered to {len(delivery.run_ids)} run(s)")

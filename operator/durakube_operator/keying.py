"""The attempt key rings of each namespace: made when none has a free key, deleted when spent.

An attempt's pod reads its secret from a ring (`durakube.store.keyrings`): one Secret
per `DURAKUBE_KEY_RING_SIZE` attempts of a namespace instead of one per attempt, so starting a pod
costs the pod's creation and the run's status patch, as a Job's does. The reconciler
claims keys while starting attempts; this module makes a ring when a namespace has
none free (one at a time per namespace, so a burst of starts makes one ring, not one
per worker), and deletes the Secrets of spent rings from the retention loop.

A ring is recorded in Postgres first, then its Secret is created, then it is marked
ready: a crash in between leaves a ring that is never handed out and is removed
after `UNREADY_SECONDS` (its Secret with it, if it was created).

Deleting Secrets is the operator's one right on them besides creating; the chart's
ValidatingAdmissionPolicy lets it delete only Secrets labelled as key rings.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from durakube.store import attempts, keyrings, pools
from durakube_operator import kubeapi, metrics, pods
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

# A ring not made ready this long after it was recorded is removed.
UNREADY_SECONDS = 300.0
# Spent rings removed by one pass of the retention loop.
_RETIRE_PER_PASS = 50


def ring_name() -> str:
    return f"durakube-keys-{secrets.token_hex(5)}"


class KeyRings:
    def __init__(self, api: kubeapi.KubeApi, db: pools.Database,
                 settings: settings_module.Settings) -> None:
        self.api, self.db = api, db
        self.database_url = settings.attempt_database_url
        self.size = settings.key_ring_size
        self.dsn = keyrings.dsn_hash(self.database_url)
        self._locks: dict[str, asyncio.Lock] = {}

    async def add(self, namespace: str) -> None:
        """Makes a ring in `namespace` unless one has a free key by the time it is its turn."""
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            if await keyrings.has_free_key(self.db, namespace, self.dsn):
                return
            name = ring_name()
            keys = [attempts.new_secret() for _ in range(self.size)]
            await keyrings.add_ring(self.db, namespace=namespace, name=name, dsn=self.dsn,
                                    secret_hashes=[attempts.hash_secret(key) for key in keys])
            await self.api.create_secret(namespace,
                                         pods.build_key_ring(namespace, name, self.database_url, keys))
            await keyrings.ring_ready(self.db, namespace, name)
            metrics.KEY_RINGS_CREATED.inc()

    async def retire_spent(self) -> int:
        """Deletes the Secrets of spent rings (and forgets the rings); how many went."""
        spent = await keyrings.spent_rings(self.db, dsn=self.dsn, unready_seconds=UNREADY_SECONDS,
                                           limit=_RETIRE_PER_PASS)
        for namespace, name in spent:
            await self.api.delete_secret(namespace, name)
            await keyrings.drop_ring(self.db, namespace, name)
        if spent:
            metrics.KEY_RINGS_DELETED.inc(len(spent))
            logger.info("deleted %d spent attempt key rings", len(spent))
        return len(spent)

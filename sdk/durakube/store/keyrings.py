"""Attempt key rings: the attempts' secrets, minted in batches (migration 16).

Each attempt pod proves to Postgres that it is its run's current attempt with a
secret only that pod is given (see `schema`). Minting one Secret object per attempt
cost an API call on the path that starts every pod; a ring mints many at
once (the operator's DURAKUBE_KEY_RING_SIZE, 64 by default). A ring is one Secret
in a namespace holding that many random keys and the
workers' DSN; each attempt claims one free key (in the statement that starts the
attempt, `attempts.start_attempt_with_key`, migration 24), its pod reads only that
key (a `secretKeyRef` names it), and Postgres keeps the key's hash as the attempt's
credential. Keys are single-use: a claimed key is never handed out again, and the
attempt's end revokes it as before.

A ring is written here before its Secret exists and becomes claimable (ready) once
it does, so a crash in between leaves a ring that `spent_rings` names for removal,
never a key whose Secret is missing. A ring is spent when no key is left to claim
and every attempt that claimed one is over (its credential revoked, or the run's
history gone); its Secret is then deleted. Rings for another DSN than the current
one (the worker login changed) stop being handed out and are retired the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from durakube.store import pools


@dataclass(frozen=True)
class AttemptKey:
    """The key an attempt holds: the ring (its Secret's name) and the key's slot in it;
    `claimed_now` when this call claimed it (not an earlier one)."""

    ring: str
    slot: int
    claimed_now: bool = field(default=False, compare=False)


def dsn_hash(database_url: str) -> bytes:
    """What a ring records of the DSN its Secret holds."""
    return hashlib.sha256(database_url.encode()).digest()


async def has_free_key(db: pools.Database, namespace: str, dsn: bytes) -> bool:
    async with pools.connection(db) as conn:
        return bool(await conn.fetchval("""
            SELECT EXISTS (
                SELECT 1 FROM durakube.attempt_keys k
                JOIN durakube.attempt_key_rings r ON (r.namespace, r.name) = (k.namespace, k.ring)
                WHERE k.namespace = $1 AND k.run_id IS NULL AND r.ready AND r.dsn_hash = $2)""",
            namespace, dsn))


async def add_ring(db: pools.Database, *, namespace: str, name: str, dsn: bytes,
                   secret_hashes: list[bytes]) -> None:
    """Records a ring and its keys' hashes, not claimable yet (`ring_ready` once its Secret
    exists)."""
    async with pools.transaction(db) as conn:
        await conn.execute("""
            INSERT INTO durakube.attempt_key_rings (namespace, name, dsn_hash) VALUES ($1, $2, $3)""",
            namespace, name, dsn)
        await conn.execute("""
            INSERT INTO durakube.attempt_keys (namespace, ring, slot, secret_hash)
            SELECT $1, $2, slot - 1, secret_hash
            FROM unnest($3::bytea[]) WITH ORDINALITY AS keys (secret_hash, slot)""",
            namespace, name, secret_hashes)


async def ring_ready(db: pools.Database, namespace: str, name: str) -> None:
    async with pools.connection(db) as conn:
        await conn.execute("""
            UPDATE durakube.attempt_key_rings SET ready = true
            WHERE namespace = $1 AND name = $2""", namespace, name)


async def spent_rings(db: pools.Database, *, dsn: bytes, unready_seconds: float,
                      limit: int) -> list[tuple[str, str]]:
    """Rings whose Secret may go, as (namespace, name): nothing left to hand out (every key
    claimed, or the ring is for another DSN) and no attempt holding one of its keys still
    live; and rings never made ready within `unready_seconds` (their Secret may exist)."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT r.namespace, r.name FROM durakube.attempt_key_rings r
            WHERE (NOT r.ready AND r.created_at < now() - make_interval(secs => $2))
               OR (r.ready
                   AND (r.dsn_hash <> $1 OR NOT EXISTS (
                        SELECT 1 FROM durakube.attempt_keys k
                        WHERE (k.namespace, k.ring) = (r.namespace, r.name) AND k.run_id IS NULL))
                   AND NOT EXISTS (
                        SELECT 1 FROM durakube.attempt_keys k
                        JOIN durakube.attempts a ON (a.run_id, a.attempt) = (k.run_id, k.attempt)
                        WHERE (k.namespace, k.ring) = (r.namespace, r.name)
                          AND a.secret_hash IS NOT NULL))
            ORDER BY r.created_at
            LIMIT $3""", dsn, unready_seconds, limit)
    return [(record["namespace"], record["name"]) for record in records]


async def drop_ring(db: pools.Database, namespace: str, name: str) -> None:
    """Forgets a ring whose Secret is gone (its keys' rows go with it)."""
    async with pools.connection(db) as conn:
        await conn.execute("DELETE FROM durakube.attempt_key_rings WHERE namespace = $1 AND name = $2",
                           namespace, name)

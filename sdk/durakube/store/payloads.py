"""Payloads too large for a Kubernetes object, kept in Postgres and named by reference.

etcd refuses objects over about 1.5 MB, so a client puts a large payload here
(`put_payload`) and the TaskRun carries only `spec.payloadRef`; the operator
resolves the reference when it registers the run (`get_payload`). The reference is
the payload's SHA-256, so storing the same payload twice stores it once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from durakube.store import pools

# Payloads whose JSON is larger than this go by reference (well under etcd's limit,
# leaving room for the rest of the object and its status).
INLINE_LIMIT_BYTES = 256 * 1024


def encoded_size(payload: Any) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())


def reference_of(payload: Any) -> str:
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


async def put_payload(db: pools.Database, payload: Any) -> str:
    """Stores `payload` (idempotent) and returns its reference."""
    ref = reference_of(payload)
    async with pools.connection(db) as conn:
        await conn.execute("""
            INSERT INTO durakube.payloads (ref, data, bytes) VALUES ($1, $2, $3)
            ON CONFLICT (ref) DO NOTHING""", ref, payload, encoded_size(payload))
    return ref


async def get_payload(db: pools.Database, ref: str) -> Any | None:
    """The payload stored under `ref`, or None when there is none."""
    async with pools.connection(db) as conn:
        return await conn.fetchval("SELECT data FROM durakube.payloads WHERE ref = $1", ref)

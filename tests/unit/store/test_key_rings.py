"""Attempt key rings: each attempt claims one key, once, and only the claimed key opens the
worker functions; spent rings are named for removal, live ones never."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from durakube import errors
from durakube.store import attempts, keyrings, runs, working

DSN = keyrings.dsn_hash("postgresql://worker@db/durakube")


async def new_ring(db: Any, namespace: str = "ns", size: int = 3, dsn: bytes = DSN,
                   ready: bool = True) -> tuple[str, list[str]]:
    name = f"durakube-keys-{uuid.uuid4().hex[:10]}"
    keys = [attempts.new_secret() for _ in range(size)]
    await keyrings.add_ring(db, namespace=namespace, name=name, dsn=dsn,
                            secret_hashes=[attempts.hash_secret(key) for key in keys])
    if ready:
        await keyrings.ring_ready(db, namespace, name)
    return name, keys


async def new_run(db: Any, namespace: str = "ns") -> str:
    run_id = str(uuid.uuid4())
    await runs.register_run(db, run_id=run_id, namespace=namespace, name=run_id[:8], task_id="t",
                            payload={})
    return run_id


async def start(db: Any, run_id: str, attempt: int = 1, namespace: str = "ns",
                dsn: bytes = DSN) -> keyrings.AttemptKey | None:
    return await attempts.start_attempt_with_key(db, run_id, attempt, f"{run_id[:8]}-{attempt}",
                                                 namespace=namespace, dsn=dsn)


async def test_each_attempt_claims_its_own_key_and_the_same_one_again(operator: Any) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    ring, _ = await new_ring(operator, namespace)
    first, second = await new_run(operator, namespace), await new_run(operator, namespace)
    key = await start(operator, first, namespace=namespace)
    assert key == keyrings.AttemptKey(ring, 0)
    # A pass repeated after a crash gets the same key, not a second one.
    assert await start(operator, first, namespace=namespace) == key
    assert await start(operator, second, namespace=namespace) == keyrings.AttemptKey(ring, 1)
    assert await start(operator, first, attempt=2, namespace=namespace) == keyrings.AttemptKey(ring, 2)
    # The ring is used up: the next attempt waits for a new one, and holds no credential.
    third = await new_run(operator, namespace)
    assert await start(operator, third, namespace=namespace) is None
    assert not await keyrings.has_free_key(operator, namespace, DSN)
    [attempt] = await attempts.load_attempts(operator, third)
    assert attempt.attempt == 1


async def test_only_the_claimed_key_opens_the_worker_functions(operator: Any, worker: Any) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    _, keys = await new_ring(operator, namespace)
    run_id = await new_run(operator, namespace)
    key = await start(operator, run_id, namespace=namespace)
    assert key is not None
    claimed = working.Credential(run_id, 1, keys[key.slot])
    assert (await working.start_attempt(worker, claimed)).run_id == run_id
    for other in (keys[slot] for slot in range(len(keys)) if slot != key.slot):
        with pytest.raises(errors.AttemptRevoked):
            await working.start_attempt(worker, working.Credential(run_id, 1, other))


async def test_rings_of_another_namespace_dsn_or_not_ready_are_not_handed_out(operator: Any) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    await new_ring(operator, "elsewhere")
    await new_ring(operator, namespace, dsn=keyrings.dsn_hash("postgresql://old@db/durakube"))
    await new_ring(operator, namespace, ready=False)
    assert await start(operator, await new_run(operator, namespace), namespace=namespace) is None
    ring, _ = await new_ring(operator, namespace)
    assert await start(operator, await new_run(operator, namespace), namespace=namespace) == \
        keyrings.AttemptKey(ring, 0)


async def test_a_ring_is_spent_once_every_key_is_claimed_and_every_claimer_is_over(
        operator: Any) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    ring, _ = await new_ring(operator, namespace, size=2)

    async def spent() -> bool:
        return (namespace, ring) in await keyrings.spent_rings(
            operator, dsn=DSN, unready_seconds=300, limit=1000)

    first, second = await new_run(operator, namespace), await new_run(operator, namespace)
    await start(operator, first, namespace=namespace)
    assert not await spent()  # a key is left to hand out
    await start(operator, second, namespace=namespace)
    assert not await spent()  # both claimed, both attempts live
    await attempts.revoke_secrets(operator, first)
    assert not await spent()
    await attempts.revoke_secrets(operator, second)
    assert await spent()
    await keyrings.drop_ring(operator, namespace, ring)
    assert not await spent()


async def test_a_ring_for_an_old_dsn_is_spent_when_its_claimers_are_over(operator: Any) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    old = keyrings.dsn_hash("postgresql://old@db/durakube")
    ring, _ = await new_ring(operator, namespace, dsn=old)
    run_id = await new_run(operator, namespace)
    await start(operator, run_id, namespace=namespace, dsn=old)
    current = await keyrings.spent_rings(operator, dsn=DSN, unready_seconds=300, limit=1000)
    assert (namespace, ring) not in current  # its one claimer is live
    await attempts.revoke_secrets(operator, run_id)
    current = await keyrings.spent_rings(operator, dsn=DSN, unready_seconds=300, limit=1000)
    assert (namespace, ring) in current  # keys left, but for a login no longer handed out


async def test_a_ring_never_made_ready_is_removed_after_a_while(operator: Any) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    ring, _ = await new_ring(operator, namespace, ready=False)
    assert (namespace, ring) not in await keyrings.spent_rings(
        operator, dsn=DSN, unready_seconds=300, limit=1000)
    assert (namespace, ring) in await keyrings.spent_rings(
        operator, dsn=DSN, unready_seconds=0, limit=1000)

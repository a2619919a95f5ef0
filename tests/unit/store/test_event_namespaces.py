"""Events in real Postgres are scoped to a namespace, and children's results to the operator."""

from __future__ import annotations

import pytest
from started_runs import create_waitpoint, new_run, wait_for_event

from durakube.store import children, pools, schema, waitpoints


@pytest.fixture
async def db(database_dsn: str) -> pools.Database:
    pool = await pools.connect(database_dsn, max_size=4)
    await schema.migrate(pool)
    yield pool
    await pool.close()


async def test_an_event_never_reaches_a_wait_in_another_namespace(db: pools.Database) -> None:
    in_a, in_b = await new_run(db, "team-a"), await new_run(db, "team-b")
    for run_id in (in_a, in_b):
        await wait_for_event(db, run_id, seq=1, key="order-1", wake_at=None)
    delivery = await waitpoints.send_event(db, "order-1", {"paid": True}, namespace="team-a")
    assert delivery.run_ids == [in_a]
    assert (await waitpoints.load_waitpoint(db, in_b, 1)).completed_at is None
    assert [run_id for run_id, _, _ in await waitpoints.runs_to_resume(db)] == [in_a]


async def test_an_event_is_never_buffered_for_another_namespace(db: pools.Database) -> None:
    sent = await waitpoints.send_event(db, "order-2", {"paid": True}, namespace="team-a")
    assert sent.buffered
    in_b = await new_run(db, "team-b")
    waiting = await wait_for_event(db, in_b, seq=1, key="order-2", wake_at=None)
    assert waiting.completed_at is None
    # The event still waits for a run of its own namespace.
    in_a = await new_run(db, "team-a")
    taken = await wait_for_event(db, in_a, seq=1, key="order-2", wake_at=None)
    assert taken.data == {"paid": True}


async def test_an_event_id_is_scoped_to_its_namespace_and_key(db: pools.Database) -> None:
    in_a, in_b = await new_run(db, "team-a"), await new_run(db, "team-b")
    await wait_for_event(db, in_a, seq=1, key="k", wake_at=None)
    await wait_for_event(db, in_b, seq=1, key="k", wake_at=None)
    first = await waitpoints.send_event(db, "k", 1, namespace="team-a", event_id="1")
    second = await waitpoints.send_event(db, "k", 2, namespace="team-b", event_id="1")
    assert (first.run_ids, second.run_ids) == ([in_a], [in_b])
    assert (first.event_id, second.event_id) == ("1", "1")


@pytest.mark.parametrize("namespace", ["team-a", "team-b"])
async def test_no_sender_naming_a_namespace_may_use_a_reserved_key(
        db: pools.Database, namespace: str) -> None:
    key = children.result_key("team-a", "parent-c1")
    with pytest.raises(waitpoints.ReservedEventKey, match=r"reserved.*only the operator sends"):
        await waitpoints.send_event(db, key, {"phase": "Succeeded"}, namespace=namespace)


async def test_a_child_result_cannot_be_forged_or_pre_sent(db: pools.Database) -> None:
    parent = await new_run(db, "team-a")
    key = children.result_key("team-a", "parent-c1")
    # What an outsider could try: the result's key, or the operator's id on a key of its own.
    with pytest.raises(waitpoints.ReservedEventKey):
        await waitpoints.send_event(db, key, {"phase": "Succeeded", "output": "forged"},
                                    namespace="team-a")
    await waitpoints.send_event(db, "anything", "forged", namespace="team-a",
                                event_id="run-ended:child-uid")
    # The operator's report (as children.report_child_end sends it) is delivered all the same.
    real = await waitpoints.send_event(db, key, {"phase": "Succeeded", "output": 42},
                                       event_id="run-ended:child-uid")
    assert real.buffered
    waitpoint = await wait_for_event(db, parent, seq=1, key=key, wake_at=None)
    assert waitpoint.data == {"phase": "Succeeded", "output": 42}


async def test_a_child_result_reaches_only_its_own_namespace(db: pools.Database) -> None:
    key = children.result_key("team-a", "parent-c1")
    other = await new_run(db, "team-b")
    await wait_for_event(db, other, seq=1, key=key, wake_at=None)
    delivery = await waitpoints.send_event(db, key, {"phase": "Succeeded"}, event_id="run-ended:x")
    assert delivery.run_ids == [] and delivery.buffered


@pytest.mark.parametrize("key", ["order-1", "durakube.io/other/x", "durakube.io/run/only-ns"])
async def test_an_event_without_a_namespace_is_refused(db: pools.Database, key: str) -> None:
    with pytest.raises(ValueError, match="needs the namespace"):
        await waitpoints.send_event(db, key, 1)


async def test_status_never_shows_a_token(db: pools.Database) -> None:
    run_id = await new_run(db, "team-a")
    token = waitpoints.new_token()
    waitpoint = await create_waitpoint(db, run_id, seq=1, kind="token",
                                                  wake_at=None, token=token)
    assert waitpoint.describe() == {"kind": "token", "step": 1}
    assert token not in repr(waitpoint.describe())


def test_tokens_carry_192_random_bits() -> None:
    token = waitpoints.new_token()
    assert token.startswith("wpt_") and len(token) == 4 + 32  # 24 bytes, base64url
    assert len({waitpoints.new_token() for _ in range(1000)}) == 1000

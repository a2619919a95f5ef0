"""Runs whose first attempt the operator started, and their waits as their workers make them.

A worker records its waits through its own functions (`durakube.store.working`), with
the secret of its attempt; `new_run` starts attempt 1 and keeps that secret, so a test
reads as "this run waits for that key".
"""

from __future__ import annotations

import uuid
from datetime import datetime

from durakube.store import attempts, pools, runs, waitpoints, working

# The secret of each run's attempt 1, by run id (run ids are random).
_credentials: dict[str, working.Credential] = {}


async def new_run(db: pools.Database, namespace: str = "ns") -> str:
    """A registered run with attempt 1 started; its id."""
    run_id = str(uuid.uuid4())
    await runs.register_run(db, run_id=run_id, namespace=namespace, name=run_id[:8], task_id="t",
                            payload={})
    secret = attempts.new_secret()
    await attempts.start_attempt(db, run_id, 1, secret=secret)
    _credentials[run_id] = working.Credential(run_id, 1, secret)
    return run_id


async def wait_for_event(db: pools.Database, run_id: str, *, seq: int, key: str,
                         wake_at: datetime | None = None) -> waitpoints.Waitpoint:
    return await working.wait_for_event(db, _credentials[run_id], seq=seq, key=key,
                                        wake_at=wake_at)


async def create_waitpoint(db: pools.Database, run_id: str, *, seq: int, kind: waitpoints.Kind,
                           wake_at: datetime | None = None,
                           token: str | None = None) -> waitpoints.Waitpoint:
    return await working.create_waitpoint(db, _credentials[run_id], seq=seq, kind=kind,
                                          wake_at=wake_at, token=token)

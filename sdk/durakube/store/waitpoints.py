"""Waitpoints: what a suspended run waits for, and the events and tokens that end a wait.

A task that waits longer than a few seconds records a waitpoint (its step's seq, a
kind — sleep, event or token — and a deadline `wake_at`) and its pod exits. The
wait ends in one of three ways, each a single UPDATE that sets `completed_at`:

- its deadline passes (`fire_due_timers`, the operator's one timer loop over the
  indexed `wake_at`; `fire_timer` brings one forward, for the local runner): a sleep
  completes, an event or token wait times out;
- an event is sent to its key in its run's namespace (`send_event`);
- its token is completed (`complete_token`).

The operator then resumes the run (`runs_to_resume` / `mark_resumed`). Events sent
to a key nobody waits on are buffered for a retention period, and the next wait on
that key takes the oldest one; a per-key advisory lock makes "check the buffer,
else start waiting" and "deliver, else buffer" exclusive, so no event is lost
between the two. Waits are recorded by the waiting worker, through its own
functions (`working.wait_for_event`, `working.create_waitpoint`, which call the
`worker_*` SQL functions of `schema`); what is here serves the operator and the
client.

Events are scoped to a namespace: an event sent in namespace A completes only the
waits of A's runs and is buffered only for them. Keys under `durakube.io/` are
reserved for the operator, which sends a child run's result on one
(`children.result_key`, naming the child's namespace): every other sender names a
namespace and is refused such a key, so no one can forge or pre-send a child's
result. A caller's event id makes sending idempotent within (namespace, key) only,
so one sender's id never swallows another's event.

A token is a secret: `Waitpoint.describe()` (what a TaskRun's status shows) leaves
it out, and errors carry its first characters only. A fork gets the token waitpoints
its run created before its step under new tokens (`copy_tokens_txn`), never the
original's token.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from durakube import errors, limits
from durakube.store import pools

Kind = Literal["sleep", "event", "token"]
DEFAULT_EVENT_RETENTION = timedelta(days=1)
# Keys only the operator sends on (a child run's result: `children.result_key`).
RESERVED_KEY_PREFIX = "durakube.io/"


@dataclass(frozen=True)
class Waitpoint:
    run_id: str
    seq: int
    kind: Kind
    key: str | None
    token: str | None
    wake_at: datetime | None
    data: Any
    completed_at: datetime | None
    timed_out: bool

    @classmethod
    def from_record(cls, record: Any) -> Waitpoint:
        return cls(run_id=record["run_id"], seq=record["seq"], kind=record["kind"],
                   key=record["key"], token=record["token"], wake_at=record["wake_at"],
                   data=record["data"], completed_at=record["completed_at"],
                   timed_out=record["timed_out"])

    def describe(self) -> dict[str, Any]:
        """What `status.waitingFor` shows: never the token, which completes the wait."""
        shown: dict[str, Any] = {"kind": self.kind, "step": self.seq}
        if self.key is not None:
            shown["key"] = self.key
        if self.wake_at is not None:
            shown["until"] = self.wake_at.isoformat()
        return shown


class TokenNotFound(errors.DurakubeError):
    """No waitpoint has this token.

    A token is a secret: the error carries its first characters only (`shown_token`),
    since its fields are recorded and shown like its message.
    """

    def __init__(self, token_prefix: str) -> None:
        super().__init__(
            f"no waitpoint has token {token_prefix}…: check the token, it is case-sensitive")
        self.token_prefix = token_prefix


class TokenAlreadyCompleted(errors.DurakubeError):
    """The token's wait has ended already (completed or timed out); carries its prefix only."""

    def __init__(self, token_prefix: str) -> None:
        super().__init__(f"the waitpoint of token {token_prefix}… was completed already")
        self.token_prefix = token_prefix


class ReservedEventKey(errors.DurakubeError):
    """An event key under `durakube.io/`, which only the operator may send on."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"event key {key!r} is reserved: keys under {RESERVED_KEY_PREFIX!r} carry the results "
            "of child runs, which only the operator sends; choose a key without that prefix")
        self.key = key


def is_reserved_key(key: str) -> bool:
    return key.startswith(RESERVED_KEY_PREFIX)


def check_event_key(key: str) -> None:
    """Raises `ReservedEventKey` for a key no one but the operator may send on."""
    if is_reserved_key(key):
        raise ReservedEventKey(key)


def shown_token(token: str) -> str:
    """What errors and logs may show of a token: its "wpt_" and two characters."""
    return token[:6]


def new_token() -> str:
    """An unguessable token (192 bits), safe in a URL."""
    return "wpt_" + secrets.token_urlsafe(24)


_COLUMNS = "run_id, seq, kind, key, token, wake_at, data, completed_at, timed_out"


async def load_waitpoint(db: pools.Database, run_id: str, seq: int) -> Waitpoint | None:
    async with pools.connection(db) as conn:
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM durakube.waitpoints WHERE run_id = $1 AND seq = $2", run_id, seq)
    return None if record is None else Waitpoint.from_record(record)


async def pending_waitpoint(db: pools.Database, run_id: str) -> Waitpoint | None:
    """The run's wait still open, if any (a suspended run with none is ready to resume)."""
    async with pools.connection(db) as conn:
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM durakube.waitpoints WHERE run_id = $1 AND completed_at IS NULL"
            " ORDER BY seq DESC LIMIT 1", run_id)
    return None if record is None else Waitpoint.from_record(record)


async def _lock_key_txn(conn: Any, key: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('durakube-event:' || $1, 0))", key)



@dataclass(frozen=True)
class Delivery:
    """What sending an event did: the runs it completed a wait of, or that it was buffered."""

    event_id: str
    run_ids: list[str]
    buffered: bool


def _check_data(data: Any, what: str) -> None:
    """Refuses event data past the limits of stored values, before anything is written."""
    refused = limits.problem(data)
    if refused is not None:
        raise errors.ValueRefused(what, refused)


async def send_event(db: pools.Database, key: str, data: Any = None, *,
                     namespace: str | None = None, event_id: str | None = None,
                     retention: timedelta = DEFAULT_EVENT_RETENTION) -> Delivery:
    """Delivers an event to every run of `namespace` waiting on `key`, or buffers it for
    the next one there.

    Every sender names the namespace it sends in (a TaskEvent's, the webhook's path, the
    client's), and may not use a reserved key (`ReservedEventKey`). The operator sends
    a child's result with no namespace: its reserved key names the child's.

    With an `event_id` (say, a TaskEvent's uid) sending is idempotent within
    (namespace, key): the same id sent twice is delivered once, and the second call
    reports the first delivery.
    """
    _check_data(data, f"the data of event {key!r}")
    namespace = _namespace_of_event(key, namespace)
    given_id = event_id or secrets.token_hex(16)
    stored_id = _stored_event_id(namespace, key, event_id) if event_id else given_id
    async with pools.transaction(db) as conn:
        await _lock_key_txn(conn, key)
        inserted = await conn.fetchval("""
            INSERT INTO durakube.events (event_id, namespace, key, data, expires_at)
            VALUES ($1, $2, $3, $4, now() + $5::interval) ON CONFLICT (event_id) DO NOTHING
            RETURNING event_id""", stored_id, namespace, key, data, retention)
        if inserted is None:
            record = await conn.fetchrow(
                "SELECT delivered_runs, delivered_to FROM durakube.events WHERE event_id = $1",
                stored_id)
            runs = list(record["delivered_runs"] or [])
            return Delivery(given_id, runs, buffered=record["delivered_to"] == 0)
        rows = await conn.fetch("""
            UPDATE durakube.waitpoints w SET data = $3, completed_at = now()
            FROM durakube.runs r
            WHERE w.kind = 'event' AND w.key = $2 AND w.completed_at IS NULL
              AND r.run_id = w.run_id AND r.namespace = $1
            RETURNING w.run_id""", namespace, key, data)
        runs = [row["run_id"] for row in rows]
        await conn.execute("""
            UPDATE durakube.events SET delivered_to = $2, delivered_runs = $3 WHERE event_id = $1""",
            stored_id, len(runs), runs)
    return Delivery(given_id, runs, buffered=not runs)


def _namespace_of_event(key: str, namespace: str | None) -> str:
    """The namespace an event is sent in: the sender's, or for a child's result (sent by
    the operator, naming none) the one its key names."""
    if namespace is not None:
        check_event_key(key)
        if not namespace:
            raise ValueError("an event needs the namespace it is sent in")
        return namespace
    parts = key.split("/")
    if is_reserved_key(key) and len(parts) == 4 and parts[1] == "run" and parts[2] and parts[3]:
        return parts[2]
    raise ValueError(f"sending an event on {key!r} needs the namespace it is sent in")


def _stored_event_id(namespace: str, key: str, event_id: str) -> str:
    """The stored id of a caller's event id: unique within (namespace, key) only."""
    return "id-" + hashlib.sha256(json.dumps([namespace, key, event_id]).encode()).hexdigest()


async def complete_token(db: pools.Database, token: str, data: Any = None) -> str:
    """Completes the wait of `token` with `data`; returns its run id.

    Raises `TokenNotFound` for an unknown token and `TokenAlreadyCompleted` when the
    wait has ended already, so a webhook can answer 404 or 409.
    """
    _check_data(data, "the data completing a token")
    async with pools.transaction(db) as conn:
        run_id = await conn.fetchval("""
            UPDATE durakube.waitpoints SET data = $2, completed_at = now()
            WHERE token = $1 AND completed_at IS NULL RETURNING run_id""", token, data)
        if run_id is not None:
            return str(run_id)
        if await conn.fetchval("SELECT 1 FROM durakube.waitpoints WHERE token = $1", token):
            raise TokenAlreadyCompleted(shown_token(token))
        raise TokenNotFound(shown_token(token))


async def fire_due_timers(db: pools.Database, limit: int = 1000) -> int:
    """Ends the waits whose deadline has passed: sleeps complete, other waits time out.
    Returns how many ended (the caller loops while it is `limit`)."""
    async with pools.connection(db) as conn:
        status = await conn.execute("""
            UPDATE durakube.waitpoints w SET completed_at = now(), timed_out = (w.kind <> 'sleep')
            FROM (SELECT run_id, seq FROM durakube.waitpoints
                  WHERE completed_at IS NULL AND wake_at <= now()
                  ORDER BY wake_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
            WHERE w.run_id = due.run_id AND w.seq = due.seq""", limit)
    return int(status.split()[-1])


async def fire_timer(db: pools.Database, run_id: str, seq: int) -> bool:
    """Ends one open wait as if its deadline were now: a sleep completes, a wait for an
    event or a token times out. The local runner's jump of one run's clock (no timer of
    the operator's is involved); False when the wait had ended already."""
    async with pools.connection(db) as conn:
        status = await conn.execute("""
            UPDATE durakube.waitpoints SET wake_at = now(), completed_at = now(),
                                           timed_out = (kind <> 'sleep')
            WHERE run_id = $1 AND seq = $2 AND completed_at IS NULL""", run_id, seq)
    return bool(status.split()[-1] == "1")


async def next_wake_at(db: pools.Database) -> datetime | None:
    async with pools.connection(db) as conn:
        value: datetime | None = await conn.fetchval(
            "SELECT min(wake_at) FROM durakube.waitpoints WHERE completed_at IS NULL")
        return value


async def runs_to_resume(db: pools.Database, limit: int = 1000) -> list[tuple[str, str, str]]:
    """(run id, namespace, name) of runs whose wait ended and that were not resumed yet."""
    async with pools.connection(db) as conn:
        records = await conn.fetch("""
            SELECT w.run_id, r.namespace, r.name FROM durakube.waitpoints w
            JOIN durakube.runs r USING (run_id)
            WHERE w.completed_at IS NOT NULL AND w.resumed_at IS NULL
            ORDER BY w.completed_at LIMIT $1""", limit)
    return [(r["run_id"], r["namespace"], r["name"]) for r in records]


async def mark_resumed(db: pools.Database, run_ids: list[str]) -> None:
    async with pools.connection(db) as conn:
        await conn.execute("""
            UPDATE durakube.waitpoints SET resumed_at = now()
            WHERE run_id = ANY($1::text[]) AND completed_at IS NOT NULL AND resumed_at IS NULL""",
            run_ids)


async def copy_tokens_txn(conn: pools.Database, source_run_id: str, run_id: str, namespace: str,
                          before_seq: int) -> int:
    """Gives a fork the token waitpoints its run created before `before_seq`, each under a
    new token (a token completes one wait of one run), completed as the original was, so
    the fork's replay of `create-token` finds its waitpoint; returns how many.

    From a run of the same `namespace` only; idempotent; does not commit (the caller
    registers the fork in the same transaction: see `steps.copy_steps_txn`)."""
    records = await conn.fetch("""
        SELECT w.seq FROM durakube.waitpoints w JOIN durakube.runs r ON r.run_id = w.run_id
        WHERE w.run_id = $1 AND r.namespace = $2 AND w.seq < $3 AND w.kind = 'token'
        ORDER BY w.seq""", source_run_id, namespace, before_seq)
    copied = 0
    for record in records:
        inserted = await conn.fetchval("""
            INSERT INTO durakube.waitpoints (run_id, seq, kind, key, token, wake_at, data,
                                             completed_at, timed_out, resumed_at)
            SELECT $2, seq, kind, key, $4, wake_at, data, completed_at, timed_out,
                   CASE WHEN completed_at IS NOT NULL THEN now() END
            FROM durakube.waitpoints WHERE run_id = $1 AND seq = $3
            ON CONFLICT (run_id, seq) DO NOTHING
            RETURNING seq""", source_run_id, run_id, record["seq"], new_token())
        copied += inserted is not None
    return copied

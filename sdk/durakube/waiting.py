"""Durable waits: sleep, wait for an event, wait for a token, each a checkpoint.

A wait is a step: its result (the event's or token's data, or None after a sleep)
is recorded like any other step's, so a replay returns it without waiting again.
The first time a wait longer than `suspend_threshold` seconds is reached, it
records a waitpoint in Postgres and raises `Suspend`: the worker records the
outcome "suspended" and exits, so the run holds no pod and no slot while it
waits. When the wait ends (deadline, event, token), the operator starts a new
attempt; the wait's step then finds its waitpoint completed and returns.

A wait whose timeout passes raises `WaitTimedOut`, which the task may catch; it
is recorded as the step's error, so the replay raises it again.

Called through `TaskContext.sleep`, `wait_for_event`, `create_token` and
`wait_for_token`. Finds its step through `current`; never imports the step
engine (`context`), which imports this module.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from durakube import current, durations, errors
from durakube.store import waitpoints, working

if TYPE_CHECKING:
    from durakube.context import TaskContext

# Waits shorter than this sleep in the pod: suspending costs a pod start.
DEFAULT_SUSPEND_THRESHOLD = 2.0


def suspend_threshold() -> float:
    return durations.parse_duration(os.environ.get("DURAKUBE_SUSPEND_THRESHOLD", "") or
                                    DEFAULT_SUSPEND_THRESHOLD)


class Suspend(BaseException):
    """Unwinds the task to the worker, which records the outcome "suspended".

    A BaseException, as asyncio.CancelledError is, so that neither the step
    machinery nor task code's `except Exception` mistakes it for a failure.
    """

    def __init__(self, waitpoint: waitpoints.Waitpoint) -> None:
        super().__init__(f"suspended at step {waitpoint.seq} ({waitpoint.kind})")
        self.waitpoint = waitpoint


class WaitTimedOut(errors.DurakubeError):
    """The event or token did not arrive before the wait's timeout."""

    def __init__(self, kind: str, what: str, timeout: str = "") -> None:
        super().__init__(f"no {kind} {what} arrived before the timeout{timeout}")
        self.kind, self.what, self.timeout = kind, what, timeout


def _now() -> datetime:
    return datetime.now(UTC)


def _deadline(timeout: durations.Duration | None) -> datetime | None:
    return None if timeout is None else _now() + timedelta(seconds=durations.parse_duration(timeout))


async def sleep_until(ctx: TaskContext, when: datetime, name: str = "sleep") -> None:
    if when.tzinfo is None:
        raise ValueError("sleep_until needs an aware datetime (with a timezone)")

    async def wait() -> None:
        seq = current.current_seq()
        waitpoint = await ctx.store(working.load_waitpoint(ctx.pool, ctx.credential, seq))
        if waitpoint is None:
            remaining = (when - _now()).total_seconds()
            if remaining < suspend_threshold():
                await asyncio.sleep(max(0.0, remaining))
                return
            waitpoint = await ctx.store(working.create_waitpoint(
                ctx.pool, ctx.credential, seq=seq, kind="sleep", wake_at=when))
        if waitpoint.completed_at is None and (waitpoint.wake_at or when) > _now():
            raise Suspend(waitpoint)

    await ctx.step(name, wait)


async def sleep(ctx: TaskContext, duration: durations.Duration, name: str = "sleep") -> None:
    # The deadline is fixed the first time: a replay must not push it further out.
    deadline = _now() + timedelta(seconds=durations.parse_duration(duration))
    await sleep_until(ctx, deadline, name)


async def wait_for_event(ctx: TaskContext, key: str, timeout: durations.Duration | None = None,
                         name: str | None = None) -> Any:
    async def wait() -> Any:
        seq = current.current_seq()
        waitpoint = await ctx.store(working.wait_for_event(
            ctx.pool, ctx.credential, seq=seq, key=key, wake_at=_deadline(timeout)))
        return _outcome(waitpoint, "event", repr(key), timeout)

    return await ctx.step(name or f"wait-for-event:{key}", wait)


async def create_token(ctx: TaskContext, timeout: durations.Duration | None = None,
                       name: str = "create-token") -> str:
    """A new waitpoint token, for an approval link or a callback; a checkpoint itself,
    so a replay returns the same token.

    The token completes the wait, so it is a secret: the step records the waitpoint's
    seq, not the token (step results are what `durakube steps` and the dashboard
    show), and the token is read back from the run's own waitpoint."""

    async def create() -> int:
        seq = current.current_seq()
        # Idempotent per seq: after a crash between this and the step's record, the
        # next attempt gets the token created first.
        await ctx.store(working.create_waitpoint(
            ctx.pool, ctx.credential, seq=seq, kind="token", wake_at=_deadline(timeout),
            token=waitpoints.new_token()))
        return seq

    seq: int = await ctx.step(name, create)
    waitpoint = await ctx.store(working.load_waitpoint(ctx.pool, ctx.credential, seq))
    assert waitpoint is not None and waitpoint.token is not None
    return waitpoint.token


async def wait_for_token(ctx: TaskContext, token: str, name: str = "wait-for-token") -> Any:
    async def wait() -> Any:
        waitpoint = await ctx.store(working.load_waitpoint_by_token(ctx.pool, ctx.credential,
                                                                    token))
        if waitpoint is None or waitpoint.run_id != ctx.run_id:
            raise errors.PermanentError(f"token {token[:10]}… was not created by this run")
        return _outcome(waitpoint, "completion of token", token[:10] + "…", None)

    return await ctx.step(name, wait)


def _outcome(waitpoint: waitpoints.Waitpoint, kind: str, what: str,
             timeout: durations.Duration | None) -> Any:
    if waitpoint.completed_at is None:
        if waitpoint.wake_at is not None and waitpoint.wake_at <= _now():
            raise WaitTimedOut(kind, what, f" of {timeout}" if timeout else "")
        raise Suspend(waitpoint)
    if waitpoint.timed_out:
        raise WaitTimedOut(kind, what, f" of {timeout}" if timeout else "")
    return waitpoint.data

"""The task context: what a running task sees as `ctx`, and where steps are checkpointed.

The worker builds one `TaskContext` per attempt, with the run's recorded steps
loaded from Postgres and the registry its tasks come from, and activates it
(`current.activated`) while the task runs, so that `@step` functions find it.
`ctx.step(name, fn, ...)` is check -> run -> record, keyed by (run id, seq), seq
being the step's 1-based position in execution order:

- check: a step recorded under this seq is replayed, never run again: its result
  is returned (re-validated into the function's pydantic return type, if any) or
  its error re-raised; a different name is `NonDeterministicReplay`;
- run: the function is awaited, or, a plain `def`, run in a thread of its own
  (`blocking`), so that it never blocks the event loop; steps it calls in turn are
  part of it (not checkpointed on their own, since a replay never enters it);
- record: the result and `ctx.state` are written in one round trip.

A step that raises a user exception raises `StepFailed` (the same exception its
replay raises). Its record is held back until the task goes on (the next step
records it first) or ends (the worker records it in the outcome's transaction);
a retryable error is never recorded, so the next attempt runs the step again.
`NonDeterministicReplay` and `NonSerializableState` are fatal: kept in `fatal`,
they fail the run even if the task code catches them. A checkpoint that loses its
connection to Postgres is tried again on a fresh one, with back-off, for up to
`store_retry_seconds` (a restart or a failover is a pause); past that, the error
is kept in `store_lost` and the worker records nothing: the platform failed, not
the task, and the run resumes from its last checkpoint. So is a refused credential
(`AttemptRevoked`: the attempt is no longer live). Store calls of waits and child
runs go through `ctx.store(...)` for the same reason. Every call presents the
attempt's credential (`store.working`).

Each step gets a span when the attempt is traced (`tracing.step_span`), a replayed
one too, marked so.

`ctx.logger` is the task's logger: its records carry the run id, the attempt and
the running step (`durakube.logs`), and like all the attempt's output they are
kept in Postgres after the pod is gone.

Does not decide outcomes; that is the worker's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from durakube import (
    blocking,
    compensating,
    current,
    durations,
    errors,
    logs,
    retry,
    serializing,
    tasks,
    tracing,
    triggering,
    waiting,
)
from durakube.store import pools, schema, steps, working

T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a checkpoint is tried again while Postgres is unreachable, and the pauses.
STORE_RETRY_SECONDS = 60.0
STORE_RETRY_FIRST_DELAY = 0.2
STORE_RETRY_MAX_DELAY = 5.0

CheckpointHook = Callable[[steps.Step], None]


async def patiently(call: Callable[[], Awaitable[T]], what: str, seconds: float, *,
                    on_lost: Callable[[], Awaitable[None]] | None = None) -> T:
    """`call()`, made again while Postgres is unreachable or the connection was lost
    (after `on_lost`, which may replace the connection), at once and then with back-off,
    for up to `seconds`; then `StoreUnavailable`, naming `what`."""
    delay, deadline = 0.0, time.monotonic() + seconds
    while True:
        try:
            return await call()
        except pools.CONNECTION_LOST_ERRORS as error:
            if on_lost is not None:
                await on_lost()
            if time.monotonic() + delay > deadline:
                raise errors.StoreUnavailable(f"{what}: {type(error).__name__}: {error}") from error
            if delay:
                log.warning("%s: Postgres unreachable (%s: %s); trying again in %.1fs",
                            what, type(error).__name__, error, delay)
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, STORE_RETRY_FIRST_DELAY), STORE_RETRY_MAX_DELAY)


class TaskContext:
    """One attempt of one run, as the task sees it."""

    def __init__(self, *, pool: pools.Database, run_id: str, attempt: int, secret: str,
                 namespace: str, payload: Any, recorded: Iterable[steps.Step] = (),
                 retry_policy: retry.Retry | None = None,
                 on_checkpoint: CheckpointHook | None = None,
                 registry: tasks.Registry | None = None,
                 store_retry_seconds: float = STORE_RETRY_SECONDS,
                 task_id: str | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.pool = pool
        self.store_retry_seconds = store_retry_seconds
        self.run_id = run_id
        self.attempt = attempt
        # Records carry the run, the attempt and the running step (`durakube.logs`).
        self.logger = logs.task_logger(task_id or "unnamed", run_id, attempt)
        # What every store call presents; Postgres accepts it while this attempt is live.
        self.credential = working.Credential(run_id, attempt, secret)
        self.namespace = namespace
        self.payload = payload
        # Plain JSON saved with every checkpoint; on replay, restored step by step.
        self.state: dict[str, Any] = {}
        # The run's metadata as this attempt knows it: what earlier attempts left (the
        # worker loads it), then each `update_metadata`'s result.
        self._metadata: dict[str, Any] = dict(metadata or {})
        self.retry_policy = retry_policy or retry.Retry()
        # Where a child given as a function finds its task id: the worker's registry.
        self.registry = registry if registry is not None else tasks.registry
        self.on_checkpoint = on_checkpoint
        self.checkpoints = 0
        self.replayed = 0
        self.fatal: errors.DurakubeError | None = None
        self.store_lost: errors.StoreUnavailable | None = None
        self.pending_step: steps.Step | None = None
        self._recorded = {step.seq: step for step in recorded}
        self._next_seq = 1
        # Compensations: the newest step completed (or replayed) so far, and how many
        # undos each step has registered in this attempt (their positions).
        self._last_completed_seq = 0
        self._undos: dict[int, int] = {}
        # One connection held for the attempt's checkpoints: the pool's acquire and
        # release cost about as much as the checkpoint itself.
        self._connection: Any = None
        self._connection_lock = asyncio.Lock()

    async def close(self) -> None:
        """Returns the checkpoint connection to the pool; the worker calls it at the end."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*pools.CONNECTION_LOST_ERRORS):
                await self.pool.release(connection)

    async def store(self, call: Awaitable[T]) -> T:
        """Awaits a store call made for this attempt; a lost connection to Postgres becomes
        `StoreUnavailable`, kept in `store_lost`, so it can never pass for the task's error."""
        try:
            return await call
        except errors.AttemptRevoked as revoked:
            self.store_lost = revoked
            raise
        except pools.CONNECTION_LOST_ERRORS as error:
            self.store_lost = errors.StoreUnavailable(f"{type(error).__name__}: {error}")
            raise self.store_lost from error

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The run's metadata (read-only): a small JSON object the task keeps up to date
        as it runs (`update_metadata`), shown in the TaskRun's status and by the client."""
        return types.MappingProxyType(self._metadata)

    async def update_metadata(self, values: Mapping[str, Any] | None = None, /,
                              **more: Any) -> Mapping[str, Any]:
        """Merges `values` and `more` into the run's metadata now (a key set to None is
        removed) and returns the result. Not a step: it is written at once, and a replay
        that updates again writes the same values. At most 4 KiB of JSON in all
        (`ValueRefused` beyond)."""
        patch = serializing.encode({**(values or {}), **more}, "ctx.update_metadata",
                                   max_bytes=schema.METADATA_BYTES)
        assert isinstance(patch, dict)
        self._metadata = await self.store(working.update_metadata(self.pool, self.credential, patch))
        return self.metadata

    async def trigger(self, task: str | Callable[..., Any], payload: Any, **options: Any) -> str:
        """Starts a child run (fire and forget); returns its TaskRun name."""
        return await triggering.trigger(self, task, payload, **options)

    async def trigger_and_wait(self, task: str | Callable[..., Any], payload: Any,
                               **options: Any) -> Any:
        """Runs a child and returns its output; this run holds no pod meanwhile."""
        return await triggering.trigger_and_wait(self, task, payload, **options)

    async def batch_trigger_and_wait(self, task: str | Callable[..., Any], payloads: list[Any],
                                     **options: Any) -> list[Any]:
        """Fans out one child per payload and returns their outputs in order."""
        return await triggering.batch_trigger_and_wait(self, task, payloads, **options)

    async def sleep(self, duration: durations.Duration) -> None:
        """Waits `duration` ("30s", "3d", seconds); a long one suspends the run (no pod)."""
        await waiting.sleep(self, duration)

    async def sleep_until(self, when: datetime) -> None:
        await waiting.sleep_until(self, when)

    async def wait_for_event(self, key: str, timeout: durations.Duration | None = None) -> Any:
        """The data of the next event sent to `key` (or one sent before and buffered);
        raises `WaitTimedOut` when none arrives within `timeout`."""
        return await waiting.wait_for_event(self, key, timeout)

    async def create_token(self, timeout: durations.Duration | None = None) -> str:
        """A waitpoint token to hand out (an approval link, a callback)."""
        return await waiting.create_token(self, timeout)

    async def wait_for_token(self, token: str) -> Any:
        """The data the token was completed with; raises `WaitTimedOut` after its timeout."""
        return await waiting.wait_for_token(self, token)

    def idempotency_key(self, step: str | None = None) -> str:
        """A key stable across attempts for the running step (or, outside one, the next).

        Pass it to external APIs so that a step re-run after a crash (at-least-once)
        does not repeat its side effect: "<run_id>:<seq>[:<step name>]".
        """
        active = current.active_step()
        seq, name = active if active is not None else (self._next_seq, None)
        name = step or name
        return f"{self.run_id}:{seq}:{name}" if name else f"{self.run_id}:{seq}"

    async def step(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs `fn(*args, **kwargs)` as the checkpointed step `name`, or replays it."""
        return await self.step_with_compensation(name, fn, None, args, kwargs)

    async def compensate(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Registers `fn(*args, **kwargs)` as an undo of the newest step completed so far,
        recorded at once: if the run fails for good, the operator runs the recorded undos
        newest first (`compensating`). `fn` is a module-level function; the arguments are
        JSON. With concurrent steps, prefer `@step(compensate=...)`, which names its step."""
        if self._last_completed_seq == 0:
            raise RuntimeError("ctx.compensate registers the undo of a completed step: "
                               "call it after the step it undoes")
        await self._record_undo(self._last_completed_seq, fn, args, kwargs)

    async def _record_undo(self, seq: int, fn: Callable[..., Any], args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> None:
        name = compensating.import_name(fn)
        position = self._undos.get(seq, 0)
        self._undos[seq] = position + 1
        encoded = self._encode_arguments(name, args, kwargs, f"for step {seq}")
        await self.store(working.record_compensation(self.pool, self.credential, step_seq=seq,
                                                     position=position, name=name, args=encoded))

    def _encode_arguments(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                          where: str) -> dict[str, Any]:
        try:
            return compensating.encode_arguments(name, args, kwargs, where)
        except (errors.NonSerializableState, errors.ValueRefused) as error:
            self._fatal(error)

    async def step_with_compensation(self, name: str, fn: Callable[..., Any],
                                     undo: Callable[..., Any] | None, args: tuple[Any, ...],
                                     kwargs: dict[str, Any]) -> Any:
        """`step`, registering `undo(result, *args, **kwargs)` once the step has completed
        (or is replayed as completed); what `@step(compensate=undo)` calls."""
        value, seq = await self._step(name, fn, args, kwargs)
        if undo is not None and seq:
            result = self._recorded[seq].result if seq in self._recorded else \
                serializing.encode(value, f"step {seq} {name!r} result")
            await self._record_undo(seq, undo, (result, *args), kwargs)
        return value

    async def _step(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> tuple[Any, int]:
        """The step's value and its seq (0 inside another step: part of that one)."""
        if self.fatal is not None:
            # The task swallowed a fatal error: no further step may run.
            raise self.fatal
        if self.store_lost is not None:
            raise self.store_lost
        if current.active_step() is not None:
            # Inside another step: part of it, since replay never enters that step.
            return await _call(fn, args, kwargs), 0
        # The seq is taken before any await, so concurrent steps number deterministically.
        seq = self._next_seq
        self._next_seq += 1
        await self._flush_pending()
        recorded = self._recorded.get(seq)
        with tracing.step_span(seq, name, replayed=recorded is not None):
            if recorded is not None:
                value = self._replay(recorded, name, fn)
                self._last_completed_seq = max(self._last_completed_seq, seq)
                return value, seq

            started_at = datetime.now(UTC)
            started = time.perf_counter()
            with current.entered_step(seq, name):
                try:
                    value = await _call(fn, args, kwargs)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self._fail(seq, name, error, started_at, started)
            value = await self._record(seq, name, fn, value, started_at, started)
            self._last_completed_seq = max(self._last_completed_seq, seq)
            return value, seq

    async def _record(self, seq: int, name: str, fn: Callable[..., Any], value: Any,
                      started_at: datetime, started: float) -> Any:
        result = self._encode(value, f"step {seq} {name!r} result")
        step = steps.Step(
            run_id=self.run_id, seq=seq, name=name, status="succeeded", result=result,
            error=None, state=self._encode_state(seq, name), attempt=self.attempt,
            started_at=started_at, finished_at=datetime.now(UTC),
            duration_ms=(time.perf_counter() - started) * 1000)
        if not await self._write(step):
            # Another writer recorded this seq first (a zombie attempt): its record stands.
            existing = await self.store(working.load_step(self.pool, self.credential, seq))
            if existing is not None:
                return self._replay(existing, name, fn)
        self._count_checkpoint(step)
        annotation = serializing.return_annotation(fn)
        if isinstance(annotation, type) and annotation is not Any and isinstance(value, annotation):
            return value
        # Otherwise the JSON form: what a replay returns, so both paths behave alike.
        return serializing.decode(result, annotation)

    def _fail(self, seq: int, name: str, error: Exception, started_at: datetime,
              started: float) -> NoReturn:
        retryable = retry.is_retryable(self.retry_policy, error)
        raised: errors.DurakubeError
        if isinstance(error, errors.DurakubeError):
            raised = error
        else:
            raised = errors.StepFailed(name, seq, errors.qualified_name(type(error)),
                                       str(error) or repr(error), retryable)
        raised.traceback = errors.traceback_tail(error)
        if not retryable:
            self.pending_step = steps.Step(
                run_id=self.run_id, seq=seq, name=name, status="failed", result=None,
                error=raised.to_json(), state=self._encode_state(seq, name),
                attempt=self.attempt, started_at=started_at, finished_at=datetime.now(UTC),
                duration_ms=(time.perf_counter() - started) * 1000)
        if raised is error:
            raise error
        raise raised from error

    def _replay(self, recorded: steps.Step, name: str, fn: Callable[..., Any]) -> Any:
        if recorded.name != name:
            mismatch = errors.NonDeterministicReplay(recorded.seq, recorded.name, name)
            self.fatal = mismatch
            raise mismatch
        self.state = _sync_in_place(self.state, copy.deepcopy(recorded.state))
        self.replayed += 1
        if recorded.status == "failed":
            raise errors.rebuild_exception(recorded.error or {})
        return serializing.decode(recorded.result, serializing.return_annotation(fn))

    async def _flush_pending(self) -> None:
        """Records a failed step the task caught and went on from."""
        pending, self.pending_step = self.pending_step, None
        if pending is not None and await self._write(pending):
            self._count_checkpoint(pending)

    async def _write(self, step: steps.Step) -> bool:
        """Records the step. A lost connection (Postgres restarting or failing over, the
        session ended) is replaced and the write tried again (`patiently`): the write is
        idempotent per run and seq, so an outage costs the task a pause, not its attempt.
        Past that, the store is lost (`StoreUnavailable`): the attempt ends without an
        outcome and the operator resumes the run from its checkpoints."""
        async def replace_connection() -> None:
            connection, self._connection = self._connection, None
            if connection is not None:
                await pools.discard(self.pool, connection)

        try:
            return await patiently(lambda: self._write_once(step), f"step {step.seq} {step.name!r}",
                                   self.store_retry_seconds, on_lost=replace_connection)
        except errors.StoreUnavailable as lost:
            # Fenced off (AttemptRevoked: a newer attempt runs, or the run ended), or
            # Postgres gone for too long: nothing more is written.
            self.store_lost = lost
            raise

    async def _write_once(self, step: steps.Step) -> bool:
        if pools.is_pool(self.pool) and self._connection_lock.locked():
            # Concurrent steps: the held connection is busy, take another from the pool.
            return await working.record_step(self.pool, self.credential, step)
        async with self._connection_lock:
            if not pools.is_pool(self.pool):
                return await working.record_step(self.pool, self.credential, step)
            if self._connection is None:
                self._connection = await self.pool.acquire()
            return await working.record_step(self._connection, self.credential, step)

    def _count_checkpoint(self, step: steps.Step) -> None:
        self.checkpoints += 1
        if self.on_checkpoint is not None:
            self.on_checkpoint(step)

    def _encode_state(self, seq: int, name: str) -> dict[str, Any]:
        where = f"ctx.state after step {seq} {name!r}"
        if not isinstance(self.state, dict):
            self._fatal(errors.NonSerializableState(where, errors.qualified_name_of(self.state)))
        encoded: dict[str, Any] = self._encode(self.state, where)
        return encoded

    def _encode(self, value: Any, where: str) -> Any:
        try:
            return serializing.encode(value, where)
        except (errors.NonSerializableState, errors.ValueRefused) as error:
            self._fatal(error)

    def _fatal(self, error: errors.DurakubeError) -> NoReturn:
        self.fatal = error
        raise error


def _sync_in_place(live: Any, recorded: Any) -> Any:
    """Makes `live` equal `recorded`, keeping its containers' identity where both agree.

    Task code may hold references into ctx.state taken before a step (a list it
    appends to): restoring by replacement would detach them, so containers are
    updated in place. Returns the value to keep at this position.
    """
    if isinstance(live, dict) and isinstance(recorded, dict):
        for key in [key for key in live if key not in recorded]:
            del live[key]
        for key, value in recorded.items():
            live[key] = _sync_in_place(live.get(key), value)
        return live
    if isinstance(live, list) and isinstance(recorded, list):
        kept = [_sync_in_place(live[index] if index < len(live) else None, value)
                for index, value in enumerate(recorded)]
        live[:] = kept
        return live
    return recorded


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        result = fn(*args, **kwargs)
    else:
        # A plain function may block: it runs in a thread of its own, never on the loop
        # (what it returns may still be awaitable: a lambda calling an async function).
        result = await blocking.in_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result

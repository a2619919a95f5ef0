"""Plain `def` tasks and steps: they run in threads of their own, never on the event loop.

The worker's event loop keeps an attempt alive: checkpoints, the shipping of its log,
the task's timeout, cancellation. Code that blocks (a `def` step calling a blocking
library, a whole `def` task) must not run on it, so:

- `in_thread(fn, ...)` runs a plain function in a fresh daemon thread, with a copy of
  the caller's context variables (the running task and step, which `@step`,
  `ctx.idempotency_key()` and the log records read), and awaits its result without
  blocking the loop. `TaskContext.step` runs every plain function through it.
- `run_sync_task` runs a `def` task in such a thread and hands it a `SyncTaskContext`:
  the attempt's own `TaskContext` with blocking methods. Each call gives the
  coroutine to the worker's loop (`Portal.call`) and waits for its result, so steps,
  waits and child runs go through the very same step engine and checkpoint rules as
  in an async task: a completed step never runs again.

Why daemon threads and not the loop's default executor: `asyncio.run` joins that
executor's threads before it returns, so one user thread stuck in a blocking call
would keep a worker from exiting after it recorded its outcome. A daemon thread is
left behind instead, and `worker.main` ends the process at once when one still
runs (`running_threads`).

A thread cannot be interrupted. When the side awaiting it is cancelled (the attempt's
timeout, the worker stopping), its result is dropped, the portal closes and cancels
the calls in flight, and the thread's next call into its context raises
`asyncio.CancelledError` (a BaseException: task code's `except Exception` lets it pass).

Imports nothing of the step engine (`context` imports this module); `TaskContext`
only for type checking.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from durakube import durations

if TYPE_CHECKING:
    import logging

    from durakube.context import TaskContext

T = TypeVar("T")

# The portal of the `def` task running in this thread (and in the steps it calls).
_portal: contextvars.ContextVar[Portal | None] = contextvars.ContextVar(
    "durakube_portal", default=None)
# Threads started here that have not finished yet.
_threads: set[threading.Thread] = set()
_threads_lock = threading.Lock()


def running_threads() -> list[threading.Thread]:
    """The task and step threads still running (stuck, or abandoned after a timeout)."""
    with _threads_lock:
        return [thread for thread in _threads if thread.is_alive()]


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Runs `fn(*args, **kwargs)` in a new daemon thread with the caller's context
    variables; awaits its result (or exception) without blocking the event loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(error: BaseException | None, result: Any) -> None:
        # On the loop: the awaiting side may have been cancelled meanwhile.
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            try:
                result = context.run(fn, *args, **kwargs)
            except StopIteration as raised:
                # A future refuses StopIteration (it would end the awaiting coroutine).
                error = RuntimeError(f"{fn!r} raised StopIteration")
                error.__cause__ = raised
            except BaseException as raised:  # handed to the awaiting side, whatever it is
                error = raised
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, error, result)
        finally:
            with _threads_lock:
                _threads.discard(threading.current_thread())

    thread = threading.Thread(target=target, daemon=True,
                              name=f"durakube:{getattr(fn, '__qualname__', 'call')}")
    with _threads_lock:
        _threads.add(thread)
    thread.start()
    return await future


class Portal:
    """Lets a thread run coroutines on the worker's event loop and wait for them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs `coroutine` on the loop, in a copy of this thread's context (so it sees the
        running task and step), and blocks this thread until it is done."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            coroutine.close()
            raise RuntimeError("a blocking Durakube call was made on the event loop, which it "
                               "would block for good: await the TaskContext's method instead")
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            if self.closed:
                coroutine.close()
                done.set_exception(asyncio.CancelledError("the attempt ended"))
                return
            task = self.loop.create_task(coroutine, context=context)
            self._tasks.add(task)
            task.add_done_callback(lambda finished: self._settle(finished, done))

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:
            coroutine.close()
            raise asyncio.CancelledError("the attempt ended") from None
        return done.result()

    def _settle(self, task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            done.set_exception(asyncio.CancelledError("the attempt ended"))
        elif (error := task.exception()) is not None:
            done.set_exception(error)
        else:
            done.set_result(task.result())

    def close(self) -> None:
        """On the loop: refuses further calls and cancels those in flight."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()


def call(coroutine: Coroutine[Any, Any, T], what: str) -> T:
    """Runs a step engine coroutine from the thread of a `def` task (or of a step it
    runs), blocking that thread; `what` names the call in the error given elsewhere."""
    portal = _portal.get()
    if portal is None:
        coroutine.close()
        raise TypeError(
            f"{what} is a plain function called from an async task, where it would block the "
            f"event loop: `await ctx.step({what!r}, fn, ...)` runs it in a thread of its own")
    return portal.call(coroutine)


async def run_sync_task(fn: Callable[[SyncTaskContext, Any], Any], ctx: TaskContext,
                        payload: Any) -> Any:
    """Runs the `def` task `fn` in a thread of its own with a `SyncTaskContext` of `ctx`;
    returns its output. Whatever ends the wait (cancellation included) closes the portal."""
    portal = Portal(asyncio.get_running_loop())

    def body() -> Any:
        _portal.set(portal)
        return fn(SyncTaskContext(ctx, portal), payload)

    try:
        return await in_thread(body)
    finally:
        portal.close()


class SyncTaskContext:
    """What a `def` task receives as `ctx`: its attempt's `TaskContext`, with methods that
    block the task's thread instead of returning coroutines.

    `ctx.step("name", fn, ...)` is the same checkpoint as `await ctx.step(...)` in an
    async task (`fn` may be a plain function, run in a thread of its own, or an async
    one, awaited on the worker's loop); so are the waits and the child runs.
    """

    def __init__(self, ctx: TaskContext, portal: Portal) -> None:
        self._ctx = ctx
        self._portal = portal

    @property
    def run_id(self) -> str:
        return self._ctx.run_id

    @property
    def attempt(self) -> int:
        return self._ctx.attempt

    @property
    def namespace(self) -> str:
        return self._ctx.namespace

    @property
    def payload(self) -> Any:
        return self._ctx.payload

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._ctx.logger

    @property
    def state(self) -> dict[str, Any]:
        """Plain JSON saved with every checkpoint (the same dict as the async context's)."""
        return self._ctx.state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._ctx.state = value

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The run's metadata (read-only; see `TaskContext.metadata`)."""
        return self._ctx.metadata

    def update_metadata(self, values: Mapping[str, Any] | None = None, /,
                        **more: Any) -> Mapping[str, Any]:
        """Merges into the run's metadata now and returns the result (as the async one)."""
        return self._portal.call(self._ctx.update_metadata(values, **more))

    @property
    def async_context(self) -> TaskContext:
        """The attempt's `TaskContext`, for code that runs on the worker's loop."""
        return self._ctx

    def idempotency_key(self, step: str | None = None) -> str:
        return self._ctx.idempotency_key(step)

    def step(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs `fn(*args, **kwargs)` as the checkpointed step `name`, or replays it."""
        return self._portal.call(self._ctx.step(name, fn, *args, **kwargs))

    def compensate(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Registers `fn(*args, **kwargs)` as an undo of the newest completed step
        (`TaskContext.compensate`)."""
        self._portal.call(self._ctx.compensate(fn, *args, **kwargs))

    def sleep(self, duration: durations.Duration) -> None:
        """Waits `duration`; a long one suspends the run (no pod), as in an async task."""
        self._portal.call(self._ctx.sleep(duration))

    def sleep_until(self, when: datetime) -> None:
        self._portal.call(self._ctx.sleep_until(when))

    def wait_for_event(self, key: str, timeout: durations.Duration | None = None) -> Any:
        return self._portal.call(self._ctx.wait_for_event(key, timeout))

    def create_token(self, timeout: durations.Duration | None = None) -> str:
        return self._portal.call(self._ctx.create_token(timeout))

    def wait_for_token(self, token: str) -> Any:
        return self._portal.call(self._ctx.wait_for_token(token))

    def trigger(self, task: str | Callable[..., Any], payload: Any, **options: Any) -> str:
        return self._portal.call(self._ctx.trigger(task, payload, **options))

    def trigger_and_wait(self, task: str | Callable[..., Any], payload: Any,
                         **options: Any) -> Any:
        return self._portal.call(self._ctx.trigger_and_wait(task, payload, **options))

    def batch_trigger_and_wait(self, task: str | Callable[..., Any], payloads: list[Any],
                               **options: Any) -> list[Any]:
        return self._portal.call(self._ctx.batch_trigger_and_wait(task, payloads, **options))

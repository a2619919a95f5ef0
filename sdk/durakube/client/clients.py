"""`AsyncClient` and its sync twin `Client`: submit runs, wait for them, manage them.

    async with AsyncClient(database_url=dsn) as client:
        handle = await client.trigger(process_document, {"documentId": "q3"})
        summary = await client.wait(handle, timeout=60)

The public face of the client, and nothing else: each method delegates to the
module that does that job (`submitting`, `watching`, `managing`) with the client's
`sessions.Session` (the Kubernetes API through `kubernetes.aio`, the namespace, the
Postgres pool opened on first use). `Client` runs the same coroutines to
completion on a private event loop; see its docstring for why that way.

Runs are named by a `RunHandle`, a `RunSummary`, a TaskRun name, "namespace/name",
or (for history) a run id.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, TypeVar, overload

from durakube import durations, tasks
from durakube.client import handles, managing, sessions, submitting, watching

T = TypeVar("T")
R = TypeVar("R")

RunRef = sessions.RunRef
BatchItem = submitting.BatchItem
ProgressCallback = watching.ProgressCallback


class AsyncClient:
    """Submits and manages TaskRuns of one namespace, on the caller's event loop.

    `max_concurrency` bounds the open API connections (and so `batch_trigger`'s
    creates in flight). The namespace is the argument, else the kubeconfig
    context's, else the pod's, else "default"; `database_url` defaults to
    $DURAKUBE_DATABASE_URL.
    """

    def __init__(self, *, kubeconfig: str | os.PathLike[str] | None = None,
                 context: str | None = None, namespace: str | None = None,
                 database_url: str | None = None, max_concurrency: int = 32,
                 registry: tasks.Registry | None = None) -> None:
        self._session = sessions.Session(
            kubeconfig=kubeconfig, context=context, namespace=namespace,
            database_url=database_url, max_concurrency=max_concurrency, registry=registry)
        self.namespace = self._session.namespace
        self.database_url = self._session.database_url
        self.registry = self._session.registry

    @property
    def session(self) -> sessions.Session:
        """What every call of this client shares (API, namespace, database): for tools
        built on the client, such as `durakube dashboard`, that read more than it offers."""
        return self._session

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.close()

    # Submitting.

    async def trigger(self, task: handles.TaskLike, payload: Any = None, *,
                      queue: str | None = None, concurrency_key: str | None = None,
                      priority: int | None = None, idempotency_key: str | None = None,
                      idempotency_ttl: durations.Duration | None = None,
                      delay: durations.Duration | None = None,
                      ttl: durations.Duration | None = None,
                      tags: Iterable[str] | None = None,
                      debounce: tuple[str, durations.Duration] | None = None) -> handles.RunHandle:
        """Creates a TaskRun of `task` (a task id, or the @task function) with `payload`.

        Raises `UnknownTask` when no Task of that name exists, `InvalidPayload` when
        the payload fails the task's input model (function given) or the Task's input
        schema, `PermissionDenied` on a 403. Payloads over
        `payloads.INLINE_LIMIT_BYTES` are stored in Postgres and referenced. With an
        `idempotency_key`, every trigger with that key returns the one run
        (`RunHandle.created` False but for the first), for as long as its TaskRun
        exists or for `idempotency_ttl` after its creation. With `debounce=(key, delay)`
        the run waits `delay` and starts only if no newer run of the task came with the
        same key meanwhile (else it ends Canceled, reason Debounced): of a burst, the last
        runs, once.
        """
        return await submitting.trigger(
            self._session, task, payload, queue=queue, concurrency_key=concurrency_key,
            priority=priority, idempotency_key=idempotency_key, idempotency_ttl=idempotency_ttl,
            delay=delay, ttl=ttl, tags=tags, debounce=debounce)

    async def batch_trigger(self, items: Iterable[BatchItem], *,
                            concurrency: int = 16) -> list[handles.RunHandle]:
        """Creates many runs with up to `concurrency` creates in flight; handles in order.

        Every item is attempted; if some fail, the first error is raised after the
        rest are done (runs created meanwhile stay).
        """
        return await submitting.batch_trigger(self._session, items, concurrency=concurrency)

    @overload
    async def trigger_and_wait(self, task: Callable[..., Awaitable[R]], payload: Any = None, *,
                               timeout: float | None = None,
                               on_progress: ProgressCallback | None = None,
                               **options: Any) -> R: ...

    @overload
    async def trigger_and_wait(self, task: str, payload: Any = None, *,
                               timeout: float | None = None,
                               on_progress: ProgressCallback | None = None,
                               **options: Any) -> Any: ...

    async def trigger_and_wait(self, task: handles.TaskLike, payload: Any = None, *,
                               timeout: float | None = None,
                               on_progress: ProgressCallback | None = None,
                               **options: Any) -> Any:
        """Triggers a run, waits for it and returns its full output.

        With the @task function given, an output annotated as a pydantic model comes
        back as that model. Raises `RunFailed` (phase, reason, last error) unless the
        run succeeded, `RunWaitTimedOut` (a TimeoutError) after `timeout` seconds.
        `options` are those of `trigger`.
        """
        handle = await self.trigger(task, payload, **options)
        output = await self.result(handle, timeout=timeout, on_progress=on_progress)
        return submitting.typed_output(task, output)

    # Waiting.

    async def wait(self, run: RunRef, *, timeout: float | None = None,
                   on_progress: ProgressCallback | None = None) -> handles.RunSummary:
        """Waits until the run is in a final phase and returns it (whatever the phase).

        `on_progress` is called with each distinct state seen (phase, attempt, step).
        Raises `RunWaitTimedOut` (a TimeoutError) after `timeout` seconds, and
        `TaskRunNotFound` if the TaskRun does not exist or is deleted meanwhile.
        """
        return await watching.wait(self._session, run, timeout=timeout, on_progress=on_progress)

    async def result(self, run: RunRef, *, timeout: float | None = None,
                     on_progress: ProgressCallback | None = None) -> Any:
        """Waits for the run; its full output, or `RunFailed` unless it succeeded."""
        summary = await self.wait(run, timeout=timeout, on_progress=on_progress)
        managing.raise_unless_succeeded(summary)
        return await managing.output_of(self._session, summary)

    # Managing.

    async def get(self, run: RunRef) -> handles.RunSummary:
        """The run from the API, or from the history once its TaskRun is gone."""
        return await managing.get(self._session, run)

    async def list(self, *, task: str | None = None, queue: str | None = None,
                   phase: str | None = None, tags: Iterable[str] | None = None,
                   limit: int | None = 100) -> builtins.list[handles.RunSummary]:
        """Runs of the namespace, newest first: live TaskRuns, then history from Postgres.

        History (runs whose TaskRun is gone) needs the database and carries no tags,
        so a `tags` filter lists live runs only.
        """
        return await managing.list_runs(self._session, task=task, queue=queue, phase=phase,
                                        tags=tags, limit=limit)

    async def schedules(self) -> builtins.list[handles.ScheduleSummary]:
        """The TaskSchedules of the namespace with their last and next times."""
        return await managing.list_schedules(self._session)

    async def cancel(self, run: RunRef) -> handles.RunSummary:
        """Asks the operator to cancel the run (spec.cancel=true); returns it as patched."""
        return await managing.cancel(self._session, run)

    async def replay(self, run: RunRef, *, latest: bool = False,
                     from_step: int | None = None) -> handles.RunHandle:
        """A new run of the same task with the same payload (and queue, key, priority, tags).

        It runs the code the replayed run was pinned to (its image, digest, modules, retry
        policy, timeout and pod template), unless `latest` asks for the Task as it is now.
        With `from_step`, a fork: the steps the run recorded before that one (results and
        `ctx.state`) are copied into the new run, which runs step `from_step` onwards again
        (`CannotFork` if the run did not record that step; needs the database)."""
        return await managing.replay(self._session, run, latest=latest, from_step=from_step)

    async def steps(self, run: RunRef) -> builtins.list[handles.StepSummary]:
        """The run's recorded steps, in order (from Postgres)."""
        return await managing.list_steps(self._session, run)

    async def output(self, run: RunRef) -> Any:
        """The run's full output (from Postgres); `RunFailed` unless it succeeded."""
        return await managing.output(self._session, run)

    async def logs(self, run: RunRef) -> builtins.list[handles.AttemptLog]:
        """The log of every attempt, first attempt first: from its pod while the pod
        exists, else as its worker stored it in Postgres (after the pod is gone)."""
        return await managing.logs(self._session, run)

    async def send_event(self, key: str, data: Any = None, *,
                         event_id: str | None = None) -> handles.EventDelivery:
        """Sends an event to the runs of the client's namespace waiting on `key` (or buffers
        it for the next one there); `waitpoints.ReservedEventKey` for a key under
        `durakube.io/`, which only the operator sends on (children's results)."""
        return await managing.send_event(self._session, key, data, event_id=event_id)

    async def complete_token(self, token: str, data: Any = None) -> str:
        """Completes the wait holding `token` with `data`; returns the waiting run's id."""
        return await managing.complete_token(self._session, token, data)


class Client:
    """The blocking twin of `AsyncClient`: the same methods, each run to its end.

    Each call runs the `AsyncClient` coroutine on a private event loop, on the
    calling thread, with `asyncio.Runner`. Why this bridge rather than a loop in a
    background thread (or anyio's BlockingPortal, which is one): the client's work
    is all asyncio I/O, so the calling thread has nothing else to do while it
    waits; no thread means no hand-over, progress callbacks run on the caller's
    thread, and Ctrl-C cancels the call in flight (the Runner turns SIGINT into a
    cancellation). The loop lives as long as the client, because the connection
    pools belong to it.

    The limits that follow: a `Client` belongs to the thread that uses it, and it
    cannot be called from a thread that is already running an event loop (blocking
    there would stall that loop): inside async code, use `AsyncClient`.
    """

    def __init__(self, *, kubeconfig: str | os.PathLike[str] | None = None,
                 context: str | None = None, namespace: str | None = None,
                 database_url: str | None = None, max_concurrency: int = 32,
                 registry: tasks.Registry | None = None) -> None:
        # A loop of its own, not installed as the thread's current loop.
        self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self._client = AsyncClient(
            kubeconfig=kubeconfig, context=context, namespace=namespace,
            database_url=database_url, max_concurrency=max_concurrency, registry=registry)
        self.namespace = self._client.namespace
        self.database_url = self._client.database_url
        self._closed = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._client.aclose())
        finally:
            self._runner.close()

    def trigger(self, task: handles.TaskLike, payload: Any = None, *,
                queue: str | None = None, concurrency_key: str | None = None,
                priority: int | None = None, idempotency_key: str | None = None,
                idempotency_ttl: durations.Duration | None = None,
                delay: durations.Duration | None = None, ttl: durations.Duration | None = None,
                tags: Iterable[str] | None = None,
                debounce: tuple[str, durations.Duration] | None = None) -> handles.RunHandle:
        """See `AsyncClient.trigger`."""
        return self._call(self._client.trigger(
            task, payload, queue=queue, concurrency_key=concurrency_key, priority=priority,
            idempotency_key=idempotency_key, idempotency_ttl=idempotency_ttl, delay=delay,
            ttl=ttl, tags=tags, debounce=debounce))

    def batch_trigger(self, items: Iterable[BatchItem], *,
                      concurrency: int = 16) -> list[handles.RunHandle]:
        """See `AsyncClient.batch_trigger`."""
        return self._call(self._client.batch_trigger(list(items), concurrency=concurrency))

    @overload
    def trigger_and_wait(self, task: Callable[..., Awaitable[R]], payload: Any = None, *,
                         timeout: float | None = None, on_progress: ProgressCallback | None = None,
                         **options: Any) -> R: ...

    @overload
    def trigger_and_wait(self, task: str, payload: Any = None, *, timeout: float | None = None,
                         on_progress: ProgressCallback | None = None, **options: Any) -> Any: ...

    def trigger_and_wait(self, task: handles.TaskLike, payload: Any = None, *,
                         timeout: float | None = None, on_progress: ProgressCallback | None = None,
                         **options: Any) -> Any:
        """See `AsyncClient.trigger_and_wait`."""
        return self._call(self._client.trigger_and_wait(
            task, payload, timeout=timeout, on_progress=on_progress, **options))

    def wait(self, run: RunRef, *, timeout: float | None = None,
             on_progress: ProgressCallback | None = None) -> handles.RunSummary:
        """See `AsyncClient.wait`."""
        return self._call(self._client.wait(run, timeout=timeout, on_progress=on_progress))

    def result(self, run: RunRef, *, timeout: float | None = None,
               on_progress: ProgressCallback | None = None) -> Any:
        """See `AsyncClient.result`."""
        return self._call(self._client.result(run, timeout=timeout, on_progress=on_progress))

    def get(self, run: RunRef) -> handles.RunSummary:
        """See `AsyncClient.get`."""
        return self._call(self._client.get(run))

    def list(self, *, task: str | None = None, queue: str | None = None,
             phase: str | None = None, tags: Iterable[str] | None = None,
             limit: int | None = 100) -> list[handles.RunSummary]:
        """See `AsyncClient.list`."""
        return self._call(self._client.list(task=task, queue=queue, phase=phase, tags=tags,
                                            limit=limit))

    def schedules(self) -> builtins.list[handles.ScheduleSummary]:
        """See `AsyncClient.schedules`."""
        return self._call(self._client.schedules())

    def cancel(self, run: RunRef) -> handles.RunSummary:
        """See `AsyncClient.cancel`."""
        return self._call(self._client.cancel(run))

    def replay(self, run: RunRef, *, latest: bool = False,
               from_step: int | None = None) -> handles.RunHandle:
        """See `AsyncClient.replay`."""
        return self._call(self._client.replay(run, latest=latest, from_step=from_step))

    def steps(self, run: RunRef) -> builtins.list[handles.StepSummary]:
        """See `AsyncClient.steps`."""
        return self._call(self._client.steps(run))

    def output(self, run: RunRef) -> Any:
        """See `AsyncClient.output`."""
        return self._call(self._client.output(run))

    def logs(self, run: RunRef) -> builtins.list[handles.AttemptLog]:
        """See `AsyncClient.logs`."""
        return self._call(self._client.logs(run))

    def send_event(self, key: str, data: Any = None, *,
                   event_id: str | None = None) -> handles.EventDelivery:
        """See `AsyncClient.send_event`."""
        return self._call(self._client.send_event(key, data, event_id=event_id))

    def complete_token(self, token: str, data: Any = None) -> str:
        """See `AsyncClient.complete_token`."""
        return self._call(self._client.complete_token(token, data))

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop runs on this thread: the usual case
        else:
            coroutine.close()
            raise RuntimeError("durakube.client.Client blocks, so it cannot be called from a "
                               "running event loop: use durakube.client.AsyncClient there")
        if self._closed:
            coroutine.close()
            raise RuntimeError("this durakube.client.Client is closed")
        # In the caller's context as it is at this call (the Runner's own is a copy taken at
        # its first call): a span active around `trigger` is the new run's parent.
        return self._runner.run(coroutine, context=contextvars.copy_context())

"""`AsyncClient` and its sync twin `Client`: submit runs, wait for them, manage them.

    async with AsyncClient(database_url=dsn) as client:
        handle = await client.trigger(process_document, {"documentId": "q3"})
        summary = await client.wait(handle, timeout=60)

Kubernetes calls use the official (blocking) client in a bounded thread pool of the
client's own, so `batch_trigger` keeps up to `concurrency` creates in flight at once;
Postgres (outputs, steps, history, large payloads) is read with asyncpg, opened on
first use. `Client` runs an `AsyncClient` on a private event loop in a daemon
thread, so it works in scripts and inside other event loops alike.

Design notes:
- Idempotency: a key makes the TaskRun's name deterministic (see `manifests`); the
  API server lets exactly one create of a name succeed, the others read and return
  that run (`RunHandle.created` is False for them). The key holds while that TaskRun
  exists, or for `idempotency_ttl` after its creation when one is given: an older
  run with the key is then deleted and a fresh one created.
- Waiting watches the one TaskRun (field selector `metadata.name`) in chunks of
  `kubeapi.WATCH_CHUNK_SECONDS`, resuming from the last resourceVersion; no polling.
- Runs are named by a `RunHandle`, a `RunSummary`, a TaskRun name, "namespace/name",
  or (for history) a run id.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import math
import os
import threading
import time
import typing
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar, overload

import pydantic

from durakube import durations, errors, resources, schemas, tasks
from durakube.client import failures, handles, history, kubeapi, manifests
from durakube.store import payloads, steps

T = TypeVar("T")
R = TypeVar("R")

RunRef = str | handles.RunHandle | handles.RunSummary
BatchItem = handles.TriggerRequest | tuple[handles.TaskLike, Any]
ProgressCallback = Callable[[handles.RunSummary], None]

# How long a fetched Task object is trusted (existence and input schema).
TASK_CACHE_SECONDS = 30.0
REPLAY_OF_ANNOTATION = "durakube.io/replay-of"


class AsyncClient:
    """Submits and manages TaskRuns of one namespace; see the module notes."""

    def __init__(self, *, kubeconfig: str | os.PathLike[str] | None = None,
                 context: str | None = None, namespace: str | None = None,
                 database_url: str | None = None, max_concurrency: int = 32,
                 registry: tasks.Registry | None = None) -> None:
        settings = kubeapi.load_settings(kubeconfig, context=context, namespace=namespace,
                                         connections=max_concurrency)
        self.namespace = settings.namespace
        self.database_url = database_url or os.environ.get("DURAKUBE_DATABASE_URL") or None
        self.registry = registry if registry is not None else tasks.registry
        self._api = kubeapi.KubeApi(settings)
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="durakube-client")
        self._max_concurrency = max_concurrency
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._tasks: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    # Submitting.

    async def trigger(self, task: handles.TaskLike, payload: Any = None, *,
                      queue: str | None = None, concurrency_key: str | None = None,
                      priority: int | None = None, idempotency_key: str | None = None,
                      idempotency_ttl: durations.Duration | None = None,
                      delay: durations.Duration | None = None,
                      ttl: durations.Duration | None = None,
                      tags: Iterable[str] | None = None) -> handles.RunHandle:
        """Creates a TaskRun of `task` (a task id, or the @task function) with `payload`.

        Raises `UnknownTask` when no Task of that name exists, `InvalidPayload` when
        the payload fails the task's input model (function given) or the Task's input
        schema, `PermissionDenied` on a 403. Payloads over
        `payloads.INLINE_LIMIT_BYTES` are stored in Postgres and referenced.
        """
        task_id, data = self._prepare(task, payload)
        namespace = self.namespace
        task_body = await self._read_task(namespace, task_id)
        self._check_schema(task_id, task_body, data)
        inline = manifests.fits_inline(data)
        payload_ref = None
        if not inline:
            db = await self._database(f"a payload of {payloads.encoded_size(data)} bytes "
                                      f"(over {payloads.INLINE_LIMIT_BYTES})")
            payload_ref = await payloads.put_payload(db, data)
        options: dict[str, Any] = {
            "payload": data if inline else None, "payload_ref": payload_ref, "queue": queue,
            "concurrency_key": concurrency_key, "priority": priority,
            "idempotency_key": idempotency_key, "delay": delay, "ttl": ttl,
            "tags": tuple(tags or ())}
        return await self._create(namespace, task_id, options, idempotency_ttl)

    async def batch_trigger(self, items: Iterable[BatchItem], *,
                            concurrency: int = 16) -> list[handles.RunHandle]:
        """Creates many runs with up to `concurrency` creates in flight; handles in order.

        Every item is attempted; if some fail, the first error is raised after the
        rest are done (runs created meanwhile stay).
        """
        requests = [item if isinstance(item, handles.TriggerRequest)
                    else handles.TriggerRequest(task=item[0], payload=item[1]) for item in items]
        gate = asyncio.Semaphore(max(1, min(concurrency, self._max_concurrency)))

        async def trigger_one(request: handles.TriggerRequest) -> handles.RunHandle:
            async with gate:
                return await self.trigger(
                    request.task, request.payload, queue=request.queue,
                    concurrency_key=request.concurrency_key, priority=request.priority,
                    idempotency_key=request.idempotency_key, delay=request.delay,
                    ttl=request.ttl, tags=request.tags)

        results = await asyncio.gather(*(trigger_one(r) for r in requests), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            first = failed[0]
            first.add_note(f"{len(failed)} of {len(requests)} runs of the batch were not created")
            raise first
        return [r for r in results if isinstance(r, handles.RunHandle)]

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
        return _typed_output(task, output)

    # Waiting.

    async def wait(self, run: RunRef, *, timeout: float | None = None,
                   on_progress: ProgressCallback | None = None) -> handles.RunSummary:
        """Waits until the run is in a final phase and returns it (whatever the phase).

        `on_progress` is called with each distinct state seen (phase, attempt, step).
        Raises `RunWaitTimedOut` (a TimeoutError) after `timeout` seconds, and
        `TaskRunNotFound` if the TaskRun does not exist or is deleted meanwhile.
        """
        namespace, name = self._locate(run)
        loop = asyncio.get_running_loop()
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        stop = threading.Event()
        last: list[tuple[Any, ...]] = []

        def report(body: dict[str, Any]) -> None:
            summary = handles.summarize_taskrun(body)
            seen = (summary.phase, summary.attempt, summary.current_step, summary.completed_steps)
            if on_progress is not None and (not last or last[-1] != seen):
                last.append(seen)
                loop.call_soon_threadsafe(on_progress, summary)

        try:
            body: dict[str, Any] = await self._run(
                self._watch_until_final, namespace, name, deadline, timeout, report, stop)
        finally:
            stop.set()
        # Let the progress callbacks scheduled from the thread run before returning.
        await asyncio.sleep(0)
        return handles.summarize_taskrun(body)

    async def result(self, run: RunRef, *, timeout: float | None = None,
                     on_progress: ProgressCallback | None = None) -> Any:
        """Waits for the run; its full output, or `RunFailed` unless it succeeded."""
        summary = await self.wait(run, timeout=timeout, on_progress=on_progress)
        _raise_unless_succeeded(summary)
        return await self._output_of(summary)

    # Managing.

    async def get(self, run: RunRef) -> handles.RunSummary:
        """The run from the API, or from the history once its TaskRun is gone."""
        namespace, name = self._locate(run)
        body = await self._run(self._api.get_taskrun, namespace, name)
        if body is not None:
            return handles.summarize_taskrun(body)
        if self.database_url is not None:
            record = await history.find_run(await self._database("run history"), namespace, name)
            if record is not None:
                return handles.summarize_history(record)
        raise failures.TaskRunNotFound(name, namespace)

    async def list(self, *, task: str | None = None, queue: str | None = None,
                   phase: str | None = None, tags: Iterable[str] | None = None,
                   limit: int | None = 100) -> list[handles.RunSummary]:
        """Runs of the namespace, newest first: live TaskRuns, then history from Postgres.

        History (runs whose TaskRun is gone) needs the database and carries no tags,
        so a `tags` filter lists live runs only.
        """
        wanted_tags = list(tags or [])
        selector = manifests.select_tags(wanted_tags) if wanted_tags else None
        found = await self._run(self._api.list_taskruns, self.namespace, selector)
        task_name = manifests.task_object_name(task) if task is not None else None
        live = [handles.summarize_taskrun(item) for item in found.get("items", [])]
        live = [s for s in live
                if (task_name is None or s.task == task_name)
                and (queue is None or s.queue == queue)
                and (phase is None or (s.phase or "").lower() == phase.lower())]
        live.sort(key=lambda s: (s.created_at is not None, s.created_at), reverse=True)
        summaries = live
        room = None if limit is None else limit - len(live)
        if self.database_url is not None and not wanted_tags and (room is None or room > 0):
            db = await self._database("run history")
            known = [str(item["metadata"]["uid"]) for item in found.get("items", [])]
            rows = await history.list_runs(db, self.namespace, task=task, queue=queue,
                                           exclude=known, limit=10_000 if phase else (room or 10_000))
            old = [handles.summarize_history(row) for row in rows]
            if phase is not None:
                old = [s for s in old if (s.phase or "").lower() == phase.lower()]
            summaries = live + old
        return summaries if limit is None else summaries[:limit]

    async def cancel(self, run: RunRef) -> handles.RunSummary:
        """Asks the operator to cancel the run (spec.cancel=true); returns it as patched."""
        namespace, name = self._locate(run)
        body = await self._run(self._api.patch_taskrun, namespace, name, {"spec": {"cancel": True}})
        if body is None:
            raise failures.TaskRunNotFound(name, namespace)
        return handles.summarize_taskrun(body)

    async def replay(self, run: RunRef) -> handles.RunHandle:
        """A new run of the same task with the same payload (and queue, key, priority, tags)."""
        namespace, name = self._locate(run)
        body = await self._run(self._api.get_taskrun, namespace, name)
        options: dict[str, Any] = {"payload": None, "payload_ref": None, "queue": None,
                                   "concurrency_key": None, "priority": None,
                                   "idempotency_key": None, "delay": None, "ttl": None,
                                   "tags": (), "annotations": {REPLAY_OF_ANNOTATION: name}}
        if body is not None:
            spec = body.get("spec") or {}
            task_id = str(spec["taskRef"]["name"])
            options.update(payload=spec.get("payload") if not spec.get("payloadRef") else None,
                           payload_ref=spec.get("payloadRef"), queue=spec.get("queue"),
                           concurrency_key=spec.get("concurrencyKey"),
                           priority=spec.get("priority"),
                           tags=tuple(manifests.read_tags(body["metadata"].get("labels") or {})))
        else:
            if self.database_url is None:
                raise failures.TaskRunNotFound(name, namespace)
            db = await self._database("replaying a run whose TaskRun is gone")
            record = await history.find_run(db, namespace, name)
            if record is None:
                raise failures.TaskRunNotFound(name, namespace)
            stored = await history.read_payload(db, record["run_id"])
            task_id = manifests.task_object_name(record["task_id"])
            queue = record["queue"]
            options.update(queue=queue.split("/", 1)[1] if queue and "/" in queue else None)
            if manifests.fits_inline(stored):
                options["payload"] = stored
            else:
                options["payload_ref"] = await payloads.put_payload(db, stored)
        await self._read_task(namespace, task_id)
        return await self._create(namespace, task_id, options, None)

    async def steps(self, run: RunRef) -> builtins.list[handles.StepSummary]:
        """The run's recorded steps, in order (from Postgres)."""
        summary = await self.get(run)
        db = await self._database("steps")
        return [handles.summarize_step(step) for step in await steps.load_steps(db, summary.run_id)]

    async def output(self, run: RunRef) -> Any:
        """The run's full output (from Postgres); `RunFailed` unless it succeeded."""
        summary = await self.get(run)
        _raise_unless_succeeded(summary)
        return await self._output_of(summary)

    async def logs(self, run: RunRef) -> builtins.list[handles.AttemptLog]:
        """The logs of the run's attempt pods that still exist, first attempt first."""
        summary = await self.get(run)
        pods = await self._run(self._api.list_attempt_pods, summary.namespace, summary.run_id)
        found = []
        for pod in pods:
            text = await self._run(self._api.read_pod_log, summary.namespace, pod.metadata.name)
            attempt = int((pod.metadata.labels or {}).get(kubeapi.ATTEMPT_LABEL, 0))
            found.append(handles.AttemptLog(attempt, pod.metadata.name, text))
        return found

    async def send_event(self, key: str, data: Any = None, *,
                         event_id: str | None = None) -> handles.EventDelivery:
        """Sends an event to the runs waiting on `key` (or buffers it for the next one)."""
        db = await self._database("sending an event")
        waitpoints = await _waitpoints_store(db, "send-event", "events")
        delivery = await waitpoints.send_event(db, key, data, event_id=event_id)
        return handles.EventDelivery(str(delivery.event_id), list(delivery.run_ids),
                                     bool(delivery.buffered))

    async def complete_token(self, token: str, data: Any = None) -> str:
        """Completes the wait holding `token` with `data`; returns the waiting run's id."""
        db = await self._database("completing a token")
        waitpoints = await _waitpoints_store(db, "complete-token", "waitpoints")
        return str(await waitpoints.complete_token(db, token, data))

    # Internals.

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def _database(self, needed_for: str) -> Any:
        if self.database_url is None:
            raise failures.DatabaseNotConfigured(needed_for)
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await history.open_pool(self.database_url)
        return self._pool

    def _locate(self, run: RunRef) -> tuple[str, str]:
        if isinstance(run, handles.RunHandle | handles.RunSummary):
            return run.namespace, run.name
        if "/" in run:
            namespace, name = run.split("/", 1)
            return namespace, name
        return self.namespace, run

    def _prepare(self, task: handles.TaskLike, payload: Any) -> tuple[str, dict[str, Any]]:
        """The task id and the payload as JSON, validated by the function's input model."""
        if isinstance(payload, pydantic.BaseModel):
            data = payload.model_dump(mode="json", by_alias=True)
        elif payload is None:
            data = {}
        elif isinstance(payload, Mapping):
            data = dict(payload)
        else:
            raise errors.InvalidPayload(
                task if isinstance(task, str) else getattr(task, "__name__", "?"),
                f"expected a JSON object (a dict) or a pydantic model, got "
                f"{errors.qualified_name_of(payload)}")
        if isinstance(task, str):
            return task, data
        definition = next((d for d in self.registry if d.fn is task), None)
        if definition is None:
            raise failures.UnregisteredFunction(
                f"{getattr(task, '__module__', '?')}.{getattr(task, '__qualname__', task)!s}")
        tasks.validate_payload(definition, data)
        return definition.id, data

    async def _read_task(self, namespace: str, task_id: str) -> dict[str, Any]:
        name = manifests.task_object_name(task_id)
        cached = self._tasks.get((namespace, name))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        body = await self._run(self._api.get_task, namespace, name)
        if body is None:
            known = await self._run(self._api.list_task_names, namespace)
            raise failures.UnknownTask(name, namespace, known)
        self._tasks[(namespace, name)] = (time.monotonic() + TASK_CACHE_SECONDS, body)
        return body

    @staticmethod
    def _check_schema(task_id: str, task_body: dict[str, Any], data: dict[str, Any]) -> None:
        schema = (task_body.get("spec") or {}).get("inputSchema")
        if schema:
            shown = schemas.check_payload_sync(data, schema)
            if shown is not None:
                raise errors.InvalidPayload(task_id, shown)

    async def _create(self, namespace: str, task_id: str, options: dict[str, Any],
                      idempotency_ttl: durations.Duration | None) -> handles.RunHandle:
        key = options.get("idempotency_key")
        for _ in range(10):
            name = manifests.derive_run_name(task_id, key)
            body = manifests.build_taskrun(task_id, name=name, **options)
            try:
                created = await self._run(self._api.create_taskrun, namespace, body)
                return _handle(created, created=True)
            except kubeapi.AlreadyExists:
                if key is None:
                    continue  # a random name met another: draw again
            existing = await self._run(self._api.get_taskrun, namespace, name)
            if existing is None or existing["metadata"].get("deletionTimestamp"):
                await asyncio.sleep(0.2)  # being replaced right now: create again
                continue
            if idempotency_ttl is not None and _age(existing) > durations.parse_duration(idempotency_ttl):
                await self._run(self._api.delete_taskrun, namespace, name, existing["metadata"]["uid"])
                continue
            return _handle(existing, created=False)
        raise errors.DurakubeError(f"could not create a TaskRun of {task_id!r} in {namespace!r} "
                                   "after 10 attempts: names kept clashing")

    def _watch_until_final(self, namespace: str, name: str, deadline: float,
                           timeout: float | None, report: Callable[[dict[str, Any]], None],
                           stop: threading.Event) -> dict[str, Any]:
        """Blocking: the TaskRun once final, watching it from one read onwards."""
        body = self._api.get_taskrun(namespace, name)
        if body is None:
            raise failures.TaskRunNotFound(name, namespace)
        while True:
            report(body)
            if _is_final(body):
                return body
            version = body["metadata"].get("resourceVersion")
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    phase = (body.get("status") or {}).get("phase")
                    raise failures.RunWaitTimedOut(name, timeout or 0.0, phase)
                chunk = math.ceil(min(remaining, kubeapi.WATCH_CHUNK_SECONDS))
                try:
                    for event in self._api.watch_taskrun(namespace, name, version, chunk, stop):
                        if event["type"] == "DELETED":
                            raise failures.TaskRunNotFound(name, namespace)
                        body = typing.cast(dict[str, Any], event["object"])
                        version = body["metadata"].get("resourceVersion", version)
                        report(body)
                        if _is_final(body):
                            return body
                except kubeapi.WatchExpired:
                    break  # read it again, then watch from there
            else:
                return body
            fresh = self._api.get_taskrun(namespace, name)
            if fresh is None:
                raise failures.TaskRunNotFound(name, namespace)
            body = fresh

    async def _output_of(self, summary: handles.RunSummary) -> Any:
        if self.database_url is None:
            preview = summary.output
            if isinstance(preview, dict) and preview.get("truncated"):
                raise failures.DatabaseNotConfigured("the full output (only a preview is in the TaskRun)")
            return preview.get("value", preview) if isinstance(preview, dict) and \
                set(preview) == {"value"} else preview
        found, output = await history.read_output(await self._database("outputs"), summary.run_id)
        if not found:
            raise failures.RunNotFinished(summary.name, summary.phase)
        return output


class Client:
    """The blocking twin of `AsyncClient`: the same methods, run on a private loop."""

    def __init__(self, *, kubeconfig: str | os.PathLike[str] | None = None,
                 context: str | None = None, namespace: str | None = None,
                 database_url: str | None = None, max_concurrency: int = 32,
                 registry: tasks.Registry | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="durakube-client-loop")
        self._thread.start()
        try:
            self._client = self._call(_make_async_client(
                kubeconfig=kubeconfig, context=context, namespace=namespace,
                database_url=database_url, max_concurrency=max_concurrency, registry=registry))
        except BaseException:
            self._stop_loop()
            raise
        self.namespace = self._client.namespace
        self.database_url = self._client.database_url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self._client.aclose())
        finally:
            self._stop_loop()

    def trigger(self, task: handles.TaskLike, payload: Any = None, *,
                queue: str | None = None, concurrency_key: str | None = None,
                priority: int | None = None, idempotency_key: str | None = None,
                idempotency_ttl: durations.Duration | None = None,
                delay: durations.Duration | None = None, ttl: durations.Duration | None = None,
                tags: Iterable[str] | None = None) -> handles.RunHandle:
        """See `AsyncClient.trigger`."""
        return self._call(self._client.trigger(
            task, payload, queue=queue, concurrency_key=concurrency_key, priority=priority,
            idempotency_key=idempotency_key, idempotency_ttl=idempotency_ttl, delay=delay,
            ttl=ttl, tags=tags))

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

    def cancel(self, run: RunRef) -> handles.RunSummary:
        """See `AsyncClient.cancel`."""
        return self._call(self._client.cancel(run))

    def replay(self, run: RunRef) -> handles.RunHandle:
        """See `AsyncClient.replay`."""
        return self._call(self._client.replay(run))

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
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C while waiting: stop the work on the loop too.
            future.cancel()
            raise

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        with contextlib.suppress(RuntimeError):
            self._loop.close()


async def _make_async_client(**kwargs: Any) -> AsyncClient:
    # Built on the private loop, so its asyncio primitives belong to that loop.
    return AsyncClient(**kwargs)


async def _waitpoints_store(db: Any, command: str, table: str) -> Any:
    """The store's waitpoints module, if this version has it and the database its tables."""
    try:
        from durakube.store import waitpoints  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        raise failures.NotSupported(command, "this SDK has no waitpoints store") from None
    for needed in ("events", "waitpoints"):
        if not await history.has_table(db, needed):
            raise failures.NotSupported(
                command, f"the database has no durakube.{needed} table (needed: {table})")
    return waitpoints


def _handle(body: dict[str, Any], *, created: bool) -> handles.RunHandle:
    meta = body["metadata"]
    return handles.RunHandle(name=meta["name"], namespace=meta["namespace"], run_id=meta["uid"],
                             task=str(body["spec"]["taskRef"]["name"]), created=created)


def _is_final(body: dict[str, Any]) -> bool:
    return (body.get("status") or {}).get("phase") in resources.FINAL_PHASES


def _age(body: dict[str, Any]) -> float:
    created = handles.summarize_taskrun(body).created_at
    if created is None:
        return 0.0
    return time.time() - created.timestamp()


def _raise_unless_succeeded(summary: handles.RunSummary) -> None:
    if summary.phase == resources.Phase.SUCCEEDED:
        return
    if summary.phase not in resources.FINAL_PHASES:
        raise failures.RunNotFinished(summary.name, summary.phase)
    error = summary.last_error or {}
    raise failures.RunFailed(summary.name, str(summary.phase), summary.reason or str(summary.phase),
                             summary.message or "", error.get("type"), error.get("message"))


def _typed_output(task: handles.TaskLike, output: Any) -> Any:
    """The output as the task function's return annotation says, when that is a model."""
    if isinstance(task, str):
        return output
    try:
        annotation = typing.get_type_hints(task).get("return")
    except (NameError, TypeError):
        return output
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation.model_validate(output)
    return output

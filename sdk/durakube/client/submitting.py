"""Creating runs: check the payload, store it if it is large, create the TaskRun.

Called by `AsyncClient.trigger`, `batch_trigger` and `replay`. The order of a
trigger: the payload as JSON (checked by the @task function's input model when a
function is given) -> the Task object (`UnknownTask` if missing) -> its input
schema (`durakube.schemas`) -> Postgres for payloads over the inline limit -> one
create.

Idempotency: a key makes the TaskRun's name deterministic (see `manifests`); the
API server lets exactly one create of a name succeed, the others read and return
that run (`RunHandle.created` is False for them). The key holds while that TaskRun
exists, or for `idempotency_ttl` after its creation when one is given: an older
run with the key is then deleted and a fresh one created. Without a key the API
server generates the name.

Trace context: a run created inside an OpenTelemetry span (or, from the CLI, under
a `TRACEPARENT`) carries it in its annotations (`durakube.tracing`), and its spans
join that trace.

Never waits for a run and never reads its outcome.
"""

from __future__ import annotations

import asyncio
import time
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from durakube import durations, errors, limits, schemas, tasks, tracing
from durakube.client import failures, handles, kubeapi, manifests, sessions
from durakube.store import payloads

BatchItem = handles.TriggerRequest | tuple[handles.TaskLike, Any]

# How often a keyed create is tried again while its name's holder is being replaced.
CREATE_ATTEMPTS = 10
REPLACEMENT_PAUSE_SECONDS = 0.2


async def trigger(session: sessions.Session, task: handles.TaskLike, payload: Any = None, *,
                  queue: str | None = None, concurrency_key: str | None = None,
                  priority: int | None = None, idempotency_key: str | None = None,
                  idempotency_ttl: durations.Duration | None = None,
                  delay: durations.Duration | None = None, ttl: durations.Duration | None = None,
                  tags: Iterable[str] | None = None,
                  debounce: tuple[str, durations.Duration] | None = None) -> handles.RunHandle:
    """Creates a TaskRun of `task` with `payload`; see `AsyncClient.trigger`."""
    task_id, data = prepare(session, task, payload)
    namespace = session.namespace
    task_body = await session.read_task(namespace, task_id)
    await check_schema(task_id, task_body, data)
    inline = manifests.fits_inline(data)
    payload_ref = None
    if not inline:
        db = await session.database(f"a payload of {payloads.encoded_size(data)} bytes "
                                    f"(over {payloads.INLINE_LIMIT_BYTES})")
        payload_ref = await payloads.put_payload(db, data)
    options: dict[str, Any] = {
        "payload": data if inline else None, "payload_ref": payload_ref, "queue": queue,
        "concurrency_key": concurrency_key, "priority": priority,
        "idempotency_key": idempotency_key, "delay": delay, "ttl": ttl,
        "tags": tuple(tags or ()), "debounce": debounce}
    return await create(session, namespace, task_id, options, idempotency_ttl)


async def batch_trigger(session: sessions.Session, items: Iterable[BatchItem], *,
                        concurrency: int = 16) -> list[handles.RunHandle]:
    """Creates many runs with up to `concurrency` creates in flight; handles in order.

    Every item is attempted; if some fail, the first error is raised after the rest
    are done (runs created meanwhile stay).
    """
    requests = [item if isinstance(item, handles.TriggerRequest)
                else handles.TriggerRequest(task=item[0], payload=item[1]) for item in items]
    gate = asyncio.Semaphore(max(1, min(concurrency, session.max_concurrency)))

    async def trigger_one(request: handles.TriggerRequest) -> handles.RunHandle:
        async with gate:
            return await trigger(
                session, request.task, request.payload, queue=request.queue,
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


def prepare(session: sessions.Session, task: handles.TaskLike,
            payload: Any) -> tuple[str, dict[str, Any]]:
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
    refused = limits.problem(data)
    if refused is not None:
        raise errors.InvalidPayload(task if isinstance(task, str) else getattr(task, "__name__", "?"),
                                    f"the payload {refused}")
    if isinstance(task, str):
        return task, data
    definition = next((d for d in session.registry if d.fn is task), None)
    if definition is None:
        raise failures.UnregisteredFunction(
            f"{getattr(task, '__module__', '?')}.{getattr(task, '__qualname__', task)!s}")
    tasks.validate_payload(definition, data)
    return definition.id, data


async def check_schema(task_id: str, task_body: dict[str, Any], data: dict[str, Any]) -> None:
    """`InvalidPayload` (its first problems) unless `data` fits the Task's input schema."""
    schema = (task_body.get("spec") or {}).get("inputSchema")
    if schema:
        shown = await schemas.check_payload(data, schema)
        if shown is not None:
            raise errors.InvalidPayload(task_id, shown)


async def create(session: sessions.Session, namespace: str, task_id: str, options: dict[str, Any],
                 idempotency_ttl: durations.Duration | None) -> handles.RunHandle:
    """Creates the TaskRun, or returns the run that already holds its idempotency key."""
    # The caller's trace context, so that its trace shows the run (`durakube.tracing`).
    options = {**options, "annotations": {**tracing.current_annotations(),
                                          **(options.get("annotations") or {})}}
    key = options.get("idempotency_key")
    if key is None:
        body = manifests.build_taskrun(task_id, name=None, **options)
        return handle_of(await session.api.create_taskrun(namespace, body), created=True)
    name = manifests.derive_run_name(task_id, key)
    body = manifests.build_taskrun(task_id, name=name, **options)
    for _ in range(CREATE_ATTEMPTS):
        try:
            return handle_of(await session.api.create_taskrun(namespace, body), created=True)
        except kubeapi.AlreadyExists:
            pass
        existing = await session.api.get_taskrun(namespace, name)
        if existing is None or existing["metadata"].get("deletionTimestamp"):
            await asyncio.sleep(REPLACEMENT_PAUSE_SECONDS)  # being replaced right now: create again
            continue
        if idempotency_ttl is not None and _age(existing) > durations.parse_duration(idempotency_ttl):
            await session.api.delete_taskrun(namespace, name, existing["metadata"]["uid"])
            continue
        return handle_of(existing, created=False)
    raise errors.DurakubeError(f"could not create TaskRun {namespace}/{name} of {task_id!r} after "
                               f"{CREATE_ATTEMPTS} attempts: it kept being replaced")


def handle_of(body: dict[str, Any], *, created: bool) -> handles.RunHandle:
    meta = body["metadata"]
    return handles.RunHandle(name=meta["name"], namespace=meta["namespace"], run_id=meta["uid"],
                             task=str(body["spec"]["taskRef"]["name"]), created=created)


def typed_output(task: handles.TaskLike, output: Any) -> Any:
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


def _age(body: dict[str, Any]) -> float:
    created = handles.summarize_taskrun(body).created_at
    if created is None:
        return 0.0
    return time.time() - created.timestamp()

"""Child runs from inside a task: `ctx.trigger`, `ctx.trigger_and_wait`, batch fan-out.

Triggering is a step: it records the request in Postgres (the operator creates the
child TaskRun, since worker pods hold no Kubernetes credentials) and returns the
child's name, the same on every replay. The request carries the trigger step's
trace context, which the operator puts on the child (`durakube.tracing`). Waiting for a child is a wait on the
event its end sends: the parent suspends (no pod held) until the child finishes,
then resumes with the child's output, or with `ChildRunFailed` carrying its phase
and error.

A task given as a function is looked up in the registry of the context
(`ctx.registry`, the worker's), never in a global one. Called through
`TaskContext.trigger` and its kin; never imports the step engine (`context`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from durakube import current, errors, tracing, waiting
from durakube.store import children, working

if TYPE_CHECKING:
    from durakube.context import TaskContext


class ChildRunFailed(errors.DurakubeError):
    """A child run ended without succeeding."""

    def __init__(self, name: str, phase: str, error_type: str = "",
                 error_message: str = "") -> None:
        detail = f": {error_type}: {error_message}" if error_type or error_message else ""
        super().__init__(f"child run {name} ended {phase}{detail}")
        self.name, self.phase = name, phase
        self.error_type, self.error_message = error_type, error_message


def _task_id(ctx: TaskContext, task: str | Callable[..., Any]) -> str:
    return task if isinstance(task, str) else ctx.registry.id_of(task)


async def trigger(ctx: TaskContext, task: str | Callable[..., Any], payload: Any, *,
                  queue: str | None = None, priority: int | None = None,
                  concurrency_key: str | None = None) -> str:
    """Asks for a child run of `task` (a Task's name or a decorated function); returns its name."""
    task_id = _task_id(ctx, task)
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(mode="json", by_alias=True)
    options = {k: v for k, v in {"queue": queue, "priority": priority,
                                 "concurrencyKey": concurrency_key}.items() if v is not None}

    async def request() -> str:
        seq = current.current_seq()
        # The child's span is a child of this step's (when the attempt is traced).
        traced = tracing.current_context()
        asked = {**options, **({"traceparent": traced.traceparent} if traced else {}),
                 **({"tracestate": traced.tracestate} if traced and traced.tracestate else {})}
        _, name = await ctx.store(working.request_child_run(
            ctx.pool, ctx.credential, seq=seq, task=task_id, payload=payload, options=asked))
        return name

    name: str = await ctx.step(f"trigger:{task_id}", request)
    return name


async def wait_for_run(ctx: TaskContext, name: str) -> Any:
    """The output of child run `name` once it succeeds; raises `ChildRunFailed` otherwise."""

    async def wait() -> Any:
        seq = current.current_seq()
        waitpoint = await ctx.store(working.wait_for_event(
            ctx.pool, ctx.credential, seq=seq, key=children.result_key(ctx.namespace, name),
            wake_at=None))
        if waitpoint.completed_at is None:
            raise waiting.Suspend(waitpoint)
        result = waitpoint.data or {}
        if result.get("phase") != "Succeeded":
            error = result.get("error") or {}
            raise ChildRunFailed(name, str(result.get("phase")), str(error.get("type", "")),
                                 str(error.get("message", "")))
        return result.get("output")

    return await ctx.step(f"wait-for-run:{name}", wait)


async def trigger_and_wait(ctx: TaskContext, task: str | Callable[..., Any], payload: Any,
                           **options: Any) -> Any:
    return await wait_for_run(ctx, await trigger(ctx, task, payload, **options))


async def batch_trigger_and_wait(ctx: TaskContext, task: str | Callable[..., Any],
                                 payloads: Sequence[Any], **options: Any) -> list[Any]:
    """Fans out one child per payload, all started before any is waited for, then fans in."""
    names = [await trigger(ctx, task, payload, **options) for payload in payloads]
    return [await wait_for_run(ctx, name) for name in names]

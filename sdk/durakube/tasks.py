"""Task and step decorators, and the registry of tasks a worker can run.

Users write:

    @durakube.task(id="embed-docs", retry=durakube.Retry(max_attempts=5), timeout="10m")
    async def embed_docs(ctx: durakube.TaskContext, payload: EmbedDocs) -> Summary: ...

    @durakube.step
    async def fetch(url: str) -> Page: ...

or the same with plain `def` functions (a `def` task receives a
`durakube.SyncTaskContext`; both run in threads of their own, off the event loop:
`blocking`).

`@task` registers a `TaskDefinition` (id, function, input model, retry policy,
timeout, queue) in a `Registry` (the module-level `registry` unless given one) and
returns the function unchanged. `@step` wraps a function so that, inside a running
task, each call goes through the current context's checkpointing; outside a task
it simply runs the function. The worker looks tasks up here and validates
payloads with `validate_payload`; the client and `durakube manifests` read the
same definitions. No I/O.

Sits below the step engine: it finds the running context through `current` and
names no context class, so importing it (as the client does)
does not load `context`, `waiting` or `triggering`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, overload

import pydantic

from durakube import blocking, current, durations, errors, retry

# `async def fn(ctx: TaskContext, payload)`, or `def fn(ctx: SyncTaskContext, payload)`.
TaskFunction: TypeAlias = "Callable[[Any, Any], Any]"
F = TypeVar("F", bound="TaskFunction")
S = TypeVar("S", bound="Callable[..., Any]")


@dataclass(frozen=True)
class TaskDefinition:
    """A registered task: what the worker needs to run it, and the operator to schedule it."""

    id: str
    fn: TaskFunction
    input_model: type[pydantic.BaseModel] | None  # None: the payload is a plain dict
    retry: retry.Retry
    timeout: float | None  # seconds per attempt; None: no limit from the task
    queue: str | None

    @property
    def sync(self) -> bool:
        """A plain `def` task: it runs in a thread of its own, with a `SyncTaskContext`."""
        return not inspect.iscoroutinefunction(self.fn)


class Registry:
    """Task ids to definitions; registering one id twice is an error."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}

    def register(self, definition: TaskDefinition) -> None:
        existing = self._tasks.get(definition.id)
        if existing is not None and existing.fn is not definition.fn:
            raise ValueError(
                f"task id {definition.id!r} is already registered by "
                f"{existing.fn.__module__}.{existing.fn.__qualname__}: task ids must be unique")
        self._tasks[definition.id] = definition

    def get(self, task_id: str) -> TaskDefinition:
        """The task `task_id`; raises `errors.TaskNotFound` listing the known ids."""
        try:
            return self._tasks[task_id]
        except KeyError:
            raise errors.TaskNotFound(task_id, list(self._tasks)) from None

    def ids(self) -> list[str]:
        return sorted(self._tasks)

    def id_of(self, fn: object) -> str:
        """The id `fn` is registered under; raises `errors.TaskNotFound` if it is not one."""
        for definition in self._tasks.values():
            if definition.fn is fn:
                return definition.id
        raise errors.TaskNotFound(getattr(fn, "__qualname__", repr(fn)), list(self._tasks))

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)


_DEFAULT_REGISTRY = Registry()
registry = _DEFAULT_REGISTRY
DEFAULT_RETRY = retry.Retry()


def task(*, id: str | None = None, retry: retry.Retry | None = None,
         timeout: durations.Duration | None = None, queue: str | None = None,
         registry: Registry | None = None) -> Callable[[F], F]:
    """Registers `async def fn(ctx, payload)` or `def fn(ctx, payload)` as a task; `id`
    defaults to its name."""
    policy = retry

    def register(fn: F) -> F:
        if not inspect.isfunction(fn) and not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@task needs a function, got {fn!r}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"@task needs a function that returns its output, got the "
                            f"generator function {fn.__qualname__}")
        definition = TaskDefinition(
            id=id or fn.__name__, fn=fn, input_model=_input_model(fn),
            retry=policy or DEFAULT_RETRY,
            timeout=None if timeout is None else durations.parse_duration(timeout),
            queue=queue)
        (registry if registry is not None else _DEFAULT_REGISTRY).register(definition)
        return fn

    return register


def _input_model(fn: TaskFunction) -> type[pydantic.BaseModel] | None:
    """The payload's pydantic model from the second parameter's annotation, if any."""
    parameters = list(inspect.signature(fn).parameters.values())
    if len(parameters) != 2:
        raise TypeError(f"a task takes (ctx, payload); {fn.__qualname__} takes {len(parameters)}")
    hints = typing.get_type_hints(fn)
    annotation = hints.get(parameters[1].name)
    if annotation is None or annotation is Any:
        return None
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    if typing.get_origin(annotation) in (dict, typing.Mapping) or annotation in (dict,
                                                                                  typing.Mapping):
        return None
    raise TypeError(
        f"the payload of task {fn.__qualname__} must be annotated as a pydantic model or a "
        f"dict, not {annotation!r}")


def validate_payload(definition: TaskDefinition, data: Any) -> Any:
    """The payload as the task receives it; raises `errors.InvalidPayload` if it is not one."""
    if definition.input_model is None:
        if not isinstance(data, dict):
            raise errors.InvalidPayload(
                definition.id, f"expected a JSON object, got {errors.qualified_name_of(data)}")
        return data
    try:
        return definition.input_model.model_validate(data)
    except pydantic.ValidationError as error:
        raise errors.InvalidPayload(definition.id, str(error)) from None


@overload
def step(fn: S, /) -> S: ...


@overload
def step(*, name: str | None = None,
         compensate: Callable[..., Any] | None = None) -> Callable[[S], S]: ...


def step(fn: Any = None, /, *, name: str | None = None,
         compensate: Callable[..., Any] | None = None) -> Any:
    """Makes a function a checkpointed step: `@step` or `@step(name="fetch")`.

    An `async def` step is awaited (`await fetch(url)`); a plain `def` step is called
    from a `def` task (`fetch(url)`), blocking that task's thread while it runs in a
    thread of its own. From an async task, run a plain function as a step with
    `await ctx.step("name", fn, ...)`.

    `compensate=undo` registers `undo(result, *args, **kwargs)` (the step's JSON result
    and the arguments it was called with) each time the step completes in a task: if
    the run fails for good, the operator runs the registered undos newest first
    (`durakube.compensating`). `undo` is a module-level function.
    """
    if compensate is not None and (not callable(compensate)
                                   or "<" in getattr(compensate, "__qualname__", "<")):
        raise TypeError(f"@step(compensate=...) needs a module-level function (found again "
                        f"by its import name in a new pod), not {compensate!r}")

    def wrap(target: Callable[..., Any]) -> Callable[..., Any]:
        step_name = name or target.__name__

        if not inspect.iscoroutinefunction(target):
            @functools.wraps(target)
            def call(*args: Any, **kwargs: Any) -> Any:
                ctx = current.current()
                if ctx is None or current.active_step() is not None:
                    # Outside a task, or inside another step (and so part of it).
                    return target(*args, **kwargs)
                return blocking.call(ctx.step_with_compensation(step_name, target, compensate,
                                                                args, kwargs), step_name)

            return call

        @functools.wraps(target)
        async def run(*args: Any, **kwargs: Any) -> Any:
            ctx = current.current()
            if ctx is None:
                return await target(*args, **kwargs)
            return await ctx.step_with_compensation(step_name, target, compensate, args, kwargs)

        return run

    return wrap if fn is None else wrap(fn)

"""The @task decorator and registry: ids, input models, options, payload validation."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

import durakube
from durakube import context, errors, retry, tasks


class Doc(pydantic.BaseModel):
    url: str


def test_task_registers_its_definition() -> None:
    registry = tasks.Registry()

    @tasks.task(id="embed-docs", retry=retry.Retry(max_attempts=5), timeout="10m",
                queue="gpu", registry=registry)
    async def embed(ctx: context.TaskContext, payload: Doc) -> None:
        pass

    definition = registry.get("embed-docs")
    assert (definition.fn, definition.input_model, definition.timeout, definition.queue) == (
        embed, Doc, 600.0, "gpu")
    assert definition.retry.max_attempts == 5
    assert registry.ids() == ["embed-docs"]


@pytest.mark.parametrize("annotation", [dict, dict[str, Any], Any], ids=str)
def test_dict_payloads_have_no_input_model(annotation: Any) -> None:
    registry = tasks.Registry()

    async def plain(ctx: context.TaskContext, payload: Any) -> None:
        pass

    plain.__annotations__["payload"] = annotation
    tasks.task(registry=registry)(plain)
    definition = registry.get("plain")
    assert definition.input_model is None and definition.timeout is None
    assert tasks.validate_payload(definition, {"a": 1}) == {"a": 1}
    with pytest.raises(errors.InvalidPayload, match="expected a JSON object, got list"):
        tasks.validate_payload(definition, [1])


def test_invalid_payload_carries_pydantics_message() -> None:
    registry = tasks.Registry()

    @tasks.task(id="fetch", registry=registry)
    async def fetch(ctx: context.TaskContext, payload: Doc) -> None:
        pass

    assert tasks.validate_payload(registry.get("fetch"), {"url": "u"}) == Doc(url="u")
    with pytest.raises(errors.InvalidPayload, match=r"(?s)payload of task 'fetch' is invalid.*"
                                                    r"url\n  Field required"):
        tasks.validate_payload(registry.get("fetch"), {})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def gen(ctx, payload: dict): yield 1", "returns its output.*generator function gen"),
        ("async def agen(ctx, payload: dict): yield 1", "generator function agen"),
        ("async def one(ctx): pass", "takes \\(ctx, payload\\)"),
        ("def one(ctx): pass", "takes \\(ctx, payload\\)"),
        ("async def bad(ctx, payload: int): pass", "must be annotated as a pydantic model"),
    ],
    ids=["generator", "async-generator", "one-parameter", "sync-one-parameter", "int-payload"],
)
def test_malformed_tasks_are_refused_at_decoration(source: str, message: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    fn = next(value for key, value in namespace.items() if not key.startswith("__"))
    with pytest.raises(TypeError, match=message):
        tasks.task(registry=tasks.Registry())(fn)


def test_duplicate_task_ids_are_refused() -> None:
    registry = tasks.Registry()

    async def first(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        pass

    async def second(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
        pass

    tasks.task(id="same", registry=registry)(first)
    tasks.task(id="same", registry=registry)(first)  # re-importing a module is fine
    with pytest.raises(ValueError, match="'same' is already registered"):
        tasks.task(id="same", registry=registry)(second)


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(errors.TaskNotFound, match=r"registered: 'a'.*DURAKUBE_TASK_MODULES"):
        registry = tasks.Registry()
        tasks.task(id="a", registry=registry)(_noop_task)
        registry.get("b")


async def _noop_task(ctx: context.TaskContext, payload: dict[str, Any]) -> None:
    pass


def test_public_api_is_pinned() -> None:
    assert sorted(durakube.__all__) == [
        "AttemptTimedOut", "ChildRunFailed", "DurakubeError", "InvalidDuration", "InvalidPayload",
        "NonDeterministicReplay", "NonSerializableState", "PermanentError", "Registry", "Retry",
        "RetryableError", "RunNotFound", "StepFailed", "SyncTaskContext", "TaskContext",
        "TaskDefinition",
        "TaskNotFound", "ValueRefused", "WaitTimedOut", "parse_duration", "step", "task",
    ]
    for name in durakube.__all__:
        assert getattr(durakube, name) is not None

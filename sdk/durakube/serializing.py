"""Step results, task outputs and ctx.state as checkpointable JSON, and back.

Called by the task context (step results, state) and the worker (task output).
What goes in must be plain JSON (dict with str keys, list, tuple, str, int, finite
float, bool, None) or pydantic models anywhere inside; anything else raises
`errors.NonSerializableState` naming where it was found and its type, at once,
before anything is written; what the limits of `durakube.limits` refuse (size,
nesting, NUL characters, invalid Unicode) raises `errors.ValueRefused`. Does no I/O.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from durakube import errors, limits

JSONValue = Any  # dict[str, JSONValue] | list[JSONValue] | str | int | float | bool | None


def encode(value: Any, where: str, max_bytes: int = limits.MAX_VALUE_BYTES) -> JSONValue:
    """`value` as JSON data; `where` names it in errors ("step 2 'fetch' result").

    Raises `errors.ValueRefused` for what the limits refuse (`durakube.limits`)."""
    encoded = _encode(value, where, "", 1)
    size = limits.encoded_size(encoded)
    if size > max_bytes:
        raise errors.ValueRefused(where, (
            f"is {size} bytes of JSON, over the {max_bytes}-byte limit: keep large data "
            "elsewhere (object storage, a table) and return a reference"))
    return encoded


def _text(text: str, where: str, path: str, key: bool = False) -> str:
    problem = limits.text_problem(text)
    if problem is not None:
        at = "in a key at" if key else "at"
        raise errors.ValueRefused(where, f"{problem} ({at} {path or 'the top'})")
    return text


def _encode(value: Any, where: str, path: str, depth: int) -> JSONValue:
    if isinstance(value, str):
        return _text(value, where, path)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            # Postgres' JSONB has no NaN or Infinity.
            raise errors.NonSerializableState(where, f"float ({value})", path)
        return value
    if isinstance(value, BaseModel):
        return _encode(value.model_dump(mode="json"), where, path, depth)
    if depth > limits.MAX_DEPTH and isinstance(value, dict | list | tuple):
        raise errors.ValueRefused(where, f"nests deeper than {limits.MAX_DEPTH} levels (at {path})")
    if isinstance(value, dict):
        encoded: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise errors.NonSerializableState(
                    where, f"dict key {errors.qualified_name_of(key)}", path)
            encoded[_text(key, where, path, key=True)] = _encode(item, where, f"{path}[{key!r}]", depth + 1)
        return encoded
    if isinstance(value, list | tuple):
        return [_encode(item, where, f"{path}[{index}]", depth + 1)
                for index, item in enumerate(value)]
    raise errors.NonSerializableState(where, errors.qualified_name_of(value), path)


def decode(data: JSONValue, annotation: Any) -> Any:
    """Recorded JSON as the step's caller sees it: a model when annotated as one."""
    if data is not None and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_validate(data)
    return data


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The resolved return annotation of `fn` (unwrapping decorators), or None."""
    try:
        return _cached_return_annotation(fn)
    except TypeError:
        # An unhashable callable object: resolve it without the cache.
        return _resolve_return_annotation(fn)


def _resolve_return_annotation(fn: Callable[..., Any]) -> Any:
    target = inspect.unwrap(fn)
    try:
        return typing.get_type_hints(target).get("return")
    except Exception:
        # Unresolvable forward references: results then come back as plain JSON.
        return None


_cached_return_annotation = functools.lru_cache(maxsize=1024)(_resolve_return_annotation)

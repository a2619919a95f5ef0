"""The limits of stored values: size, nesting and text, one message shape everywhere."""

from __future__ import annotations

from typing import Any

import pytest

from durakube import errors, limits, serializing


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": [value]}
    return value


def deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


REFUSED = [
    ("too-large", {"blob": "x" * (limits.MAX_VALUE_BYTES + 1)},
     f"over the {limits.MAX_VALUE_BYTES}-byte limit"),
    ("too-deep", deep(limits.MAX_DEPTH + 1), f"nests deeper than {limits.MAX_DEPTH} levels"),
    ("far-too-deep", deep(100_000), f"nests deeper than {limits.MAX_DEPTH} levels"),
    ("nul-in-text", {"note": "a\x00b"}, "NUL character"),
    ("nul-in-key", {"a\x00": 1}, "in a key"),
    ("lone-surrogate", {"name": "\ud800"}, "not valid Unicode"),
]


@pytest.mark.parametrize(("value", "message"), [(v, m) for _, v, m in REFUSED],
                         ids=[case for case, _, _ in REFUSED])
def test_inputs_past_the_limits_are_refused_with_a_reason(value: Any, message: str) -> None:
    found = limits.problem(value)
    assert found is not None and message in found


ACCEPTED = [
    ("empty", {}),
    ("unicode-keys-and-text", {"clé": "naïve café ☕", "日本": ["語"]}),
    ("as-deep-as-allowed", deep(limits.MAX_DEPTH)),
    ("just-under-the-size", {"blob": "x" * (limits.MAX_VALUE_BYTES - 20)}),
]


@pytest.mark.parametrize("value", [v for _, v in ACCEPTED], ids=[case for case, _ in ACCEPTED])
def test_honest_values_pass(value: Any) -> None:
    assert limits.problem(value) is None
    assert serializing.encode(value, "step 1 'x' result") == value


@pytest.mark.parametrize(("value", "message"), [(v, m) for case, v, m in REFUSED
                                                if case != "far-too-deep"],
                         ids=[case for case, _, _ in REFUSED if case != "far-too-deep"])
def test_step_results_past_the_limits_cannot_be_checkpointed(value: Any, message: str) -> None:
    with pytest.raises(errors.ValueRefused, match=message) as refused:
        serializing.encode(value, "step 2 'fetch' result")
    assert str(refused.value).startswith("step 2 'fetch' result ")
    assert not refused.value.retryable  # the same code returns the same value again


def test_the_path_of_a_refused_value_is_named() -> None:
    with pytest.raises(errors.ValueRefused, match=r"at \['rows'\]\[1\]\['name'\]"):
        serializing.encode({"rows": [{"name": "ok"}, {"name": "bad\x00"}]}, "task output")

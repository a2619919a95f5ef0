"""Payloads are checked against the whole of JSON Schema 2020-12, in linear time, with a size cap."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from durakube import schemas


@pytest.mark.parametrize(("schema", "valid", "invalid", "fragment"), [
    ({"properties": {"tags": {"type": "array", "uniqueItems": True}}},
     {"tags": ["a", "b"]}, {"tags": ["a", "a"]}, "payload.tags: "),
    ({"properties": {"cents": {"type": "integer", "multipleOf": 5}}},
     {"cents": 15}, {"cents": 7}, "payload.cents: "),
    ({"properties": {"labels": {"type": "object", "minProperties": 1}}},
     {"labels": {"a": "1"}}, {"labels": {}}, "payload.labels: "),
    ({"properties": {"mode": {"not": {"const": "legacy"}}}},
     {"mode": "fast"}, {"mode": "legacy"}, "payload.mode: "),
    ({"if": {"properties": {"kind": {"const": "card"}}},
      "then": {"required": ["cardNumber"]}, "else": {"required": ["iban"]}},
     {"kind": "card", "cardNumber": "4111"}, {"kind": "card", "iban": "DE00"}, "cardNumber"),
    ({"properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"}}},
     {"sku": "ABC-12"}, {"sku": "abc-12"}, "payload.sku: "),
    ({"properties": {"items": {"type": "array", "items": {"type": "integer"}}}},
     {"items": [1, 2]}, {"items": [1, "two"]}, "payload.items[1]: "),
], ids=["uniqueItems", "multipleOf", "minProperties", "not", "if-then-else", "pattern", "items-path"])
def test_each_keyword_is_enforced(schema: dict[str, Any], valid: dict[str, Any],
                                  invalid: dict[str, Any], fragment: str) -> None:
    assert schemas.check_payload_sync(valid, schema) is None
    message = schemas.check_payload_sync(invalid, schema)
    assert message is not None and fragment in message


def test_a_schema_pydantic_emits_is_checked_with_its_refs() -> None:
    class Line(pydantic.BaseModel):
        sku: str
        quantity: int = pydantic.Field(ge=1, multiple_of=2)

    class Order(pydantic.BaseModel):
        lines: list[Line] = pydantic.Field(min_length=1)

    schema = Order.model_json_schema()
    assert schemas.check_payload_sync({"lines": [{"sku": "a", "quantity": 2}]}, schema) is None
    message = schemas.check_payload_sync({"lines": [{"sku": "a", "quantity": 3}]}, schema)
    assert message is not None and "payload.lines[0].quantity" in message


@pytest.mark.timeout(10)
def test_catastrophic_backtracking_pattern_is_checked_promptly() -> None:
    # A backtracking engine needs about 2**40 steps here; a linear one, 41.
    schema = {"properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}
    message = schemas.check_payload_sync({"name": "a" * 40 + "!"}, schema)
    assert message is not None and "does not match" in message


@pytest.mark.timeout(10)
async def test_the_async_check_runs_the_same_check() -> None:
    schema = {"properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}
    assert await schemas.check_payload({"name": "a" * 40}, schema) is None
    assert "does not match" in (await schemas.check_payload({"name": "a" * 40 + "!"}, schema) or "")


def test_oversize_payload_gets_a_message_naming_its_size_and_the_cap() -> None:
    payload = {"blob": "x" * schemas.MAX_PAYLOAD_BYTES}
    message = schemas.check_payload_sync(payload, {"type": "object"})
    assert message is not None
    overhead = len('{"blob":""}')
    assert f"{schemas.MAX_PAYLOAD_BYTES + overhead} bytes" in message
    assert f"{schemas.MAX_PAYLOAD_BYTES}-byte limit" in message


@pytest.mark.parametrize("schema", [
    {"type": "no-such-type"},
    {"properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}},
    {"$ref": "#/$defs/Missing"},
], ids=["unknown-type", "backtracking-only-pattern", "dangling-ref"])
def test_an_invalid_schema_gets_a_clear_error(schema: dict[str, Any]) -> None:
    with pytest.raises(schemas.InvalidSchema, match="not a valid JSON Schema"):
        schemas.check_payload_sync({}, schema)


def test_the_message_lists_the_first_five_problems_and_counts_the_rest() -> None:
    found = [f"payload.f{i}: bad" for i in range(8)]
    assert schemas.summarize(found) == (
        "payload.f0: bad; payload.f1: bad; payload.f2: bad; payload.f3: bad; payload.f4: bad "
        "(and 3 more)")
    assert schemas.summarize(found[:2]) == "payload.f0: bad; payload.f1: bad"

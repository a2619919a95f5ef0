"""Checks a JSON value against a JSON schema, the subset pydantic emits.

A Task manifest carries its payload's JSON schema (`spec.inputSchema`, generated
from the task's pydantic input model); the operator checks each TaskRun's payload
against it before any pod runs, so a bad payload fails at once with a clear
message. Supported: type (incl. lists and "null"), properties, required,
additionalProperties, enum, const, minimum/maximum (and exclusive), minLength,
maxLength, pattern, items, prefixItems, minItems, maxItems, anyOf, oneOf, allOf,
and $ref into $defs. Unknown keywords are ignored, as the spec says.

Pure functions.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """Every way `value` breaks `schema`, as "<path>: <what>" lines (empty when valid)."""
    found: list[str] = []
    _check(value, schema, schema.get("$defs", {}), "payload", found)
    return found


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def _check(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: str,
           found: list[str]) -> None:
    if "$ref" in schema:
        target = defs.get(schema["$ref"].rsplit("/", 1)[-1])
        if target is not None:
            _check(value, target, defs, path, found)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_type(value, kind) for kind in kinds):
            found.append(f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}")
            return
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{path}: must be {schema['const']!r}")
    for option_key in ("anyOf", "oneOf"):
        if option_key in schema:
            matches = sum(1 for option in schema[option_key]
                          if not _collect(value, option, defs, path))
            if matches == 0 or (option_key == "oneOf" and matches > 1):
                found.append(f"{path}: matches {matches} of the allowed shapes ({option_key})")
    for option in schema.get("allOf", []):
        _check(value, option, defs, path, found)
    if isinstance(value, dict):
        _check_object(value, schema, defs, path, found)
    elif isinstance(value, list):
        _check_array(value, schema, defs, path, found)
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            found.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{path}: does not match {schema['pattern']!r}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(value, schema, path, found)


def _collect(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    found: list[str] = []
    _check(value, schema, defs, path, found)
    return found


def _check_object(value: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any],
                  path: str, found: list[str]) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            found.append(f"{path}.{name}: required")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], defs, f"{path}.{name}", found)
        elif extra is False:
            found.append(f"{path}.{name}: not allowed")
        elif isinstance(extra, dict):
            _check(item, extra, defs, f"{path}.{name}", found)


def _check_array(value: list[Any], schema: dict[str, Any], defs: dict[str, Any],
                 path: str, found: list[str]) -> None:
    if len(value) < schema.get("minItems", 0):
        found.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        found.append(f"{path}: more than {schema['maxItems']} items")
    prefix = schema.get("prefixItems", [])
    for index, item in enumerate(value):
        item_schema = prefix[index] if index < len(prefix) else schema.get("items")
        if isinstance(item_schema, dict):
            _check(item, item_schema, defs, f"{path}[{index}]", found)


def _check_number(value: float, schema: dict[str, Any], path: str, found: list[str]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        found.append(f"{path}: less than {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        found.append(f"{path}: greater than {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        found.append(f"{path}: not greater than {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        found.append(f"{path}: not less than {schema['exclusiveMaximum']}")

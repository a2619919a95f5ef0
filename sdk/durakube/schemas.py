"""Checks a payload against a Task's input schema (JSON Schema, Draft 2020-12).

A Task manifest carries its payload's JSON schema (`spec.inputSchema`, generated
from the task's pydantic input model or written by hand). The client checks a
payload before it creates a TaskRun, and the operator checks each inline payload
before any pod runs, so a bad payload fails at once with a clear message. Both
call this module, so both say the same thing: the first `SHOWN_PROBLEMS` problems,
each with its JSON path ("payload.items[2].sku: ...").

The validator is jsonschema-rs, the whole of Draft 2020-12, with the Rust `regex`
crate as its pattern engine: matching is linear in the input, so no pattern a
Task author writes can stall the operator's event loop (a backtracking engine
takes exponential time on `^(a+)+$` against "aaaa...!"). Patterns that need
backtracking (look-around, back-references) are refused when the schema is
compiled, as an invalid schema. Remote `$ref`s are never fetched.

`check_payload` runs the check in a worker thread for callers on an event loop
(the operator); `check_payload_sync` is the same check on the calling thread.
Payloads over `MAX_PAYLOAD_BYTES` of JSON are refused unread.

No I/O, no Kubernetes, no Postgres.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import jsonschema_rs

# The largest payload, as compact JSON, the validator reads: linear-time checking
# still costs memory and CPU in proportion to the payload.
MAX_PAYLOAD_BYTES = 1024 * 1024
# How many problems a message lists before "(and N more)".
SHOWN_PROBLEMS = 5
# Compiled validators kept, keyed by the schema's JSON: a Task's schema is compiled
# once, not once per run.
COMPILED_SCHEMAS_KEPT = 128


class InvalidSchema(ValueError):
    """The input schema itself is not a valid JSON Schema (the Task is at fault)."""


def check_payload_sync(value: Any, schema: dict[str, Any]) -> str | None:
    """None when `value` satisfies `schema`, else a message naming its first problems.

    Raises `InvalidSchema` when the schema cannot be compiled.
    """
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        return (f"the payload is {size} bytes of JSON, over the {MAX_PAYLOAD_BYTES}-byte limit "
                "of input schema validation: pass large data by reference (a URL or a key)")
    found = problems(value, schema)
    return summarize(found) if found else None


async def check_payload(value: Any, schema: dict[str, Any]) -> str | None:
    """`check_payload_sync` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(check_payload_sync, value, schema)


def problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """Every way `value` breaks `schema`, as "<path>: <what>" lines (empty when valid).

    Reads the value whatever its size: callers outside this module go through
    `check_payload` or `check_payload_sync`, which cap it.
    """
    validator = _compile(json.dumps(schema, sort_keys=True))
    return [f"{format_path(error.instance_path)}: {error.message}"
            for error in validator.iter_errors(value)]


def summarize(found: list[str]) -> str:
    """The first `SHOWN_PROBLEMS` problems joined with "; ", and how many more there are."""
    shown = "; ".join(found[:SHOWN_PROBLEMS])
    if len(found) > SHOWN_PROBLEMS:
        shown += f" (and {len(found) - SHOWN_PROBLEMS} more)"
    return shown


def format_path(path: list[str | int]) -> str:
    """A JSON path inside the payload: ["items", 2, "sku"] -> "payload.items[2].sku"."""
    return "payload" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                               for part in path)


@functools.lru_cache(maxsize=COMPILED_SCHEMAS_KEPT)
def _compile(schema_json: str) -> jsonschema_rs.Validator:
    schema = json.loads(schema_json)
    try:
        return jsonschema_rs.Draft202012Validator(
            schema, pattern_options=jsonschema_rs.RegexOptions(), offline=True)
    except jsonschema_rs.ValidationError as error:
        # Checked against the meta-schema: the "instance" is the schema itself.
        where = "/".join(str(part) for part in error.instance_path) or "(top level)"
        raise InvalidSchema(
            f"the input schema is not a valid JSON Schema: at {where}: {error.message}") from None
    except (jsonschema_rs.ReferencingError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidSchema(f"the input schema is not a valid JSON Schema: {first}") from None

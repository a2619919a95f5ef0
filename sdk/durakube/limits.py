"""How much JSON Durakube keeps, and in what shape: the limits of stored values.

Payloads, step results, task outputs, ctx.state and event data all end in Postgres
(jsonb), and some of them in Kubernetes objects. Each is checked against the same
limits at the earliest layer that sees it (the client before it creates anything,
the operator before any pod, the worker before it writes a checkpoint), and each
refusal says what, where and how to fix it:

- `MAX_VALUE_BYTES` (10 MiB) of compact JSON per value. A TaskRun carries at most
  `payloads.INLINE_LIMIT_BYTES` inline; the client stores larger payloads in
  Postgres by reference, up to this limit. Larger data belongs in object storage
  or a table, passed by reference.
- `MAX_DEPTH` (64) levels of nesting: deeper values cost recursion everywhere that
  reads them, and no honest payload needs them.
- Text must be valid Unicode without the NUL character (U+0000), which Postgres
  text and jsonb cannot hold.

`problem()` walks a value without recursion, so a hostile, deeply nested input
cannot exhaust the stack of whoever checks it. Pure; no I/O.
"""

from __future__ import annotations

import json
from typing import Any

MAX_VALUE_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64


def encoded_size(value: Any) -> int:
    """The size of `value` as compact UTF-8 JSON, as it is stored."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored (None when it can)."""
    if "\x00" in text:
        return "holds the NUL character (U+0000), which Postgres cannot store"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "holds text that is not valid Unicode (a lone surrogate)"
    return None


def problem(value: Any, max_bytes: int = MAX_VALUE_BYTES) -> str | None:
    """Why `value` (parsed JSON) cannot be stored, as the end of a sentence that starts
    with what it is ("the payload ..."); None when it can."""
    pending: list[tuple[Any, int, str]] = [(value, 1, "")]
    while pending:
        item, depth, path = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"nests deeper than {MAX_DEPTH} levels (at {path or 'the top'})"
            if isinstance(item, dict):
                for key, child in item.items():
                    found = text_problem(key) if isinstance(key, str) else None
                    if found is not None:
                        return f"{found} (in a key at {path or 'the top'})"
                    pending.append((child, depth + 1, f"{path}[{key!r}]"))
            else:
                pending.extend((child, depth + 1, f"{path}[{index}]")
                               for index, child in enumerate(item))
        elif isinstance(item, str):
            found = text_problem(item)
            if found is not None:
                return f"{found} (at {path or 'the top'})"
    try:
        size = encoded_size(value)
    except (TypeError, ValueError) as error:
        return f"is not JSON: {error}"
    if size > max_bytes:
        return (f"is {size} bytes of JSON, over the {max_bytes}-byte limit: keep large data "
                "elsewhere (object storage, a table) and pass a reference")
    return None

"""Durations as people write them ("30s", "10m", "2h", "7d", "1h30m") turned into seconds.

Used by the retry policy, the `@task(timeout=...)` decorator and, later, by sleeps
and TaskRun fields. Pure functions only.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from durakube import errors

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# One or more <number><unit> parts, largest units first by convention but not enforced.
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")

Duration = str | int | float | timedelta


def parse_duration(value: Duration) -> float:
    """Seconds in `value`: a number of seconds, a timedelta, or a string like "1h30m".

    Raises `errors.InvalidDuration` (a ValueError) for anything else, including
    negative, infinite and NaN values.
    """
    if isinstance(value, bool):
        raise errors.InvalidDuration(repr(value))
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise errors.InvalidDuration(repr(value))
    if seconds < 0 or not math.isfinite(seconds):
        raise errors.InvalidDuration(str(value))
    return seconds


def _parse_text(text: str) -> float:
    compact = text.strip().lower().replace(" ", "")
    try:
        # A bare number is seconds, as in Kubernetes' activeDeadlineSeconds.
        return float(compact)
    except ValueError:
        pass
    if not compact or not _WHOLE.fullmatch(compact):
        raise errors.InvalidDuration(text)
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(compact))


def format_duration(seconds: float) -> str:
    """A short human form of `seconds` ("1h30m", "45s", "250ms"), for messages."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    parts: list[str] = []
    remaining = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)

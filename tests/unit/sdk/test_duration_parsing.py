"""Durations as people write them, to seconds; and clear errors for the rest."""

from __future__ import annotations

from datetime import timedelta

import pytest

from durakube import durations, errors


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604800), ("1h30m", 5400),
        ("1d2h3m4s", 93784), ("250ms", 0.25), ("1.5h", 5400), (" 5 m ", 300), ("45", 45),
        ("0s", 0), (12, 12.0), (2.5, 2.5), (timedelta(minutes=2), 120),
    ],
    ids=lambda value: str(value),
)
def test_durations_parse_to_seconds(text: durations.Duration, seconds: float) -> None:
    assert durations.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "10x", "h", "1h30", "-5s", "-3", "inf", "nan",
                                  "1.2.3s", True])
def test_invalid_durations_say_what_is_expected(text: object) -> None:
    with pytest.raises(errors.InvalidDuration, match="expected seconds as a number") as caught:
        durations.parse_duration(text)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("seconds", "text"),
                         [(0.25, "250ms"), (45, "45s"), (5400, "1h30m"), (93784, "1d2h3m4s")])
def test_durations_format_back(seconds: float, text: str) -> None:
    assert durations.format_duration(seconds) == text

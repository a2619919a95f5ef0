"""Freed heap pages go back to the system once a minute (glibc's malloc_trim)."""

from __future__ import annotations

import asyncio
import ctypes

import pytest

from durakube_operator import trimming


def test_this_c_library_has_malloc_trim() -> None:
    trim = trimming.find_malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was given back


async def test_the_heaps_are_trimmed_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    third = asyncio.Event()

    def trim(pad: int) -> int:
        calls.append(pad)
        if len(calls) == 3:
            third.set()
        return 0

    monkeypatch.setattr(trimming, "find_malloc_trim", lambda: trim)
    task = asyncio.create_task(trimming.trim_every(0.01))
    await asyncio.wait_for(third.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls[:3] == [0, 0, 0]


async def test_without_malloc_trim_nothing_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trimming, "find_malloc_trim", lambda: None)
    await asyncio.wait_for(trimming.trim_every(0.01), 1)  # returns at once


def test_a_c_library_without_malloc_trim_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTrim:
        def __init__(self, name: str) -> None:
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoTrim)
    assert trimming.find_malloc_trim() is None

"""The task context and step running in this asyncio task: the runtime's shared state.

The worker activates a run's `TaskContext` here (`activated`) while the task
runs, and `TaskContext.step` marks the step whose function is running
(`entered_step`). `@step` (`tasks`) finds the context here, and the waits
(`waiting`) and child runs (`triggering`) find their step's sequence number.

A leaf: it imports nothing of Durakube (`TaskContext` only for type checking),
so that the modules above may read it without importing the step engine, and
the step engine may import them without a cycle. Holds state only; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from durakube.context import TaskContext

_context: ContextVar[TaskContext | None] = ContextVar("durakube_task_context", default=None)
# (seq, name) of the step whose function is running in this asyncio task, if any.
_step: ContextVar[tuple[int, str] | None] = ContextVar("durakube_step", default=None)


def current() -> TaskContext | None:
    """The context of the task running in this asyncio task, or None outside tasks."""
    return _context.get()


@contextmanager
def activated(ctx: TaskContext) -> Iterator[TaskContext]:
    """Makes `ctx` the current context for the duration of the block."""
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


def active_step() -> tuple[int, str] | None:
    """(seq, name) of the step whose function is running, or None outside steps."""
    return _step.get()


@contextmanager
def entered_step(seq: int, name: str) -> Iterator[None]:
    """Marks step `seq` called `name` as running for the duration of the block."""
    token = _step.set((seq, name))
    try:
        yield
    finally:
        _step.reset(token)


def current_seq() -> int:
    """The sequence number of the step whose function is running (waits are steps)."""
    active = _step.get()
    assert active is not None, "waits run inside their own step"
    return active[0]

"""Waiting for a run: watch its one TaskRun until the phase is final.

Called by `AsyncClient.wait`, `result` and `trigger_and_wait`. One read, then a
watch of that object alone (field selector `metadata.name`) from the read's
resourceVersion, renewed every `kubeapi.WATCH_CHUNK_SECONDS` from the last version
seen; a 410 (version too old) reads again. No polling and no threads: the watch is
an asyncio stream, and the caller's timeout cancels it (`asyncio.timeout`).

A run whose TaskRun is gone (deleted after its `ttlSecondsAfterFinished`) has
finished: its history in Postgres answers, when the client has a database.

Reads only; never changes a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import Callable
from typing import Any

from durakube import resources
from durakube.client import failures, handles, history, kubeapi, sessions

ProgressCallback = Callable[[handles.RunSummary], None]


async def wait(session: sessions.Session, run: sessions.RunRef, *, timeout: float | None = None,
               on_progress: ProgressCallback | None = None) -> handles.RunSummary:
    """The run once its phase is final; see `AsyncClient.wait`."""
    namespace, name = session.locate(run)
    progress = _Progress(on_progress)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + max(timeout, 0.0)
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            body = await _watch_until_final(session, namespace, name, progress)
    except TimeoutError:
        if not scope.expired():
            raise  # a timeout of the connection, not the caller's
        raise failures.RunWaitTimedOut(name, timeout or 0.0, progress.phase) from None
    except failures.TaskRunNotFound:
        finished = await _finished_in_history(session, namespace, name)
        if finished is None:
            raise
        return finished
    return handles.summarize_taskrun(body)


async def _finished_in_history(session: sessions.Session, namespace: str,
                               name: str) -> handles.RunSummary | None:
    """The run as its history has it, when it finished there (its TaskRun deleted since)."""
    if session.database_url is None:
        return None
    record = await history.find_run(await session.database("run history"), namespace, name)
    if record is None:
        return None
    summary = handles.summarize_history(record)
    return summary if summary.phase in resources.FINAL_PHASES else None


async def _watch_until_final(session: sessions.Session, namespace: str, name: str,
                             progress: _Progress) -> dict[str, Any]:
    body = await session.api.get_taskrun(namespace, name)
    if body is None:
        raise failures.TaskRunNotFound(name, namespace)
    while True:
        progress.report(body)
        if is_final(body):
            return body
        version = body["metadata"].get("resourceVersion")
        try:
            while True:
                events = session.api.watch_taskrun(namespace, name, version)
                async with contextlib.aclosing(events):
                    async for event in events:
                        if event["type"] == "DELETED":
                            raise failures.TaskRunNotFound(name, namespace)
                        body = typing.cast(dict[str, Any], event["object"])
                        version = body["metadata"].get("resourceVersion", version)
                        progress.report(body)
                        if is_final(body):
                            return body
                # The server ended this chunk: watch on from the last version seen.
        except kubeapi.WatchExpired:
            pass  # read it again, then watch from there
        fresh = await session.api.get_taskrun(namespace, name)
        if fresh is None:
            raise failures.TaskRunNotFound(name, namespace)
        body = fresh


def is_final(body: dict[str, Any]) -> bool:
    return (body.get("status") or {}).get("phase") in resources.FINAL_PHASES


class _Progress:
    """Calls `on_progress` once per distinct (phase, attempt, step, completed steps)."""

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self.on_progress = on_progress
        self.phase: str | None = None
        self._last: tuple[Any, ...] | None = None

    def report(self, body: dict[str, Any]) -> None:
        summary = handles.summarize_taskrun(body)
        self.phase = summary.phase
        seen = (summary.phase, summary.attempt, summary.current_step, summary.completed_steps)
        if self.on_progress is not None and seen != self._last:
            self._last = seen
            self.on_progress(summary)

"""Waiting for a run watches its TaskRun to a final phase; the sync Client runs on the caller's thread.

A fake API (a few lines) stands in for the Kubernetes calls: one read, then the
watch events it is given.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from durakube.client import AsyncClient, Client, RunSummary, RunWaitTimedOut, TaskRunNotFound, kubeapi


def taskrun(phase: str | None, version: str, step: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "r-1", "namespace": "team-a", "uid": "u-1",
                         "resourceVersion": version},
            "spec": {"taskRef": {"name": "echo"}},
            "status": {"phase": phase, "currentStep": step} if phase else {}}


class FakeApi:
    """One read gives `first`; each watch gives the next list of events, then waits forever."""

    def __init__(self, first: dict[str, Any] | None, *watches: list[dict[str, Any]]) -> None:
        self.first = first
        self.watches = list(watches)
        self.watched_from: list[str | None] = []

    async def get_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.first

    async def watch_taskrun(self, namespace: str, name: str, resource_version: str | None,
                            timeout_seconds: int = 60) -> AsyncIterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            await asyncio.Event().wait()
        for event in self.watches.pop(0):
            yield event

    async def close(self) -> None:
        pass


def with_api(made: AsyncClient, api: FakeApi) -> AsyncClient:
    made._session.api = api  # type: ignore[assignment]
    return made


async def test_wait_reports_each_state_once_and_returns_the_final_run(kubeconfig: Path) -> None:
    api = FakeApi(taskrun("Queued", "1"),
                  [{"type": "MODIFIED", "object": taskrun("Running", "2", "fetch")},
                   {"type": "MODIFIED", "object": taskrun("Running", "3", "fetch")}],
                  [{"type": "MODIFIED", "object": taskrun("Succeeded", "4")}])
    seen: list[RunSummary] = []
    async with with_api(AsyncClient(kubeconfig=kubeconfig), api) as made:
        summary = await made.wait("r-1", timeout=10, on_progress=seen.append)
    assert summary.phase == "Succeeded"
    assert [(s.phase, s.current_step) for s in seen] == [
        ("Queued", None), ("Running", "fetch"), ("Succeeded", None)]
    # The second watch goes on from the last version the first one saw.
    assert api.watched_from == ["1", "3"]


async def test_wait_gives_up_at_its_timeout_naming_the_phase(kubeconfig: Path) -> None:
    api = FakeApi(taskrun("Running", "1"))
    async with with_api(AsyncClient(kubeconfig=kubeconfig), api) as made:
        with pytest.raises(RunWaitTimedOut) as caught:
            await made.wait("r-1", timeout=0.2)
    assert caught.value.phase == "Running" and isinstance(caught.value, TimeoutError)


async def test_a_deleted_or_missing_run_is_not_found(kubeconfig: Path) -> None:
    deleted = FakeApi(taskrun("Running", "1"), [{"type": "DELETED", "object": taskrun("Running", "2")}])
    async with with_api(AsyncClient(kubeconfig=kubeconfig), deleted) as made:
        with pytest.raises(TaskRunNotFound):
            await made.wait("r-1", timeout=10)
    async with with_api(AsyncClient(kubeconfig=kubeconfig), FakeApi(None)) as made:
        with pytest.raises(TaskRunNotFound):
            await made.wait("r-1", timeout=10)


async def test_an_expired_watch_reads_the_run_again(kubeconfig: Path) -> None:
    class Expiring(FakeApi):
        async def watch_taskrun(self, namespace: str, name: str, resource_version: str | None,
                                timeout_seconds: int = 60) -> AsyncIterator[dict[str, Any]]:
            self.first = taskrun("Succeeded", "9")
            raise kubeapi.WatchExpired("too old")
            yield {}

    async with with_api(AsyncClient(kubeconfig=kubeconfig), Expiring(taskrun("Running", "1"))) as made:
        assert (await made.wait("r-1", timeout=10)).phase == "Succeeded"


@pytest.fixture
def sync_client(kubeconfig: Path) -> Iterator[Client]:
    with Client(kubeconfig=kubeconfig) as made:
        yield made


def test_the_sync_client_calls_progress_on_the_calling_thread(sync_client: Client) -> None:
    with_api(sync_client._client, FakeApi(taskrun("Running", "1"),
                                          [{"type": "MODIFIED", "object": taskrun("Succeeded", "2")}]))
    threads: list[threading.Thread] = []
    summary = sync_client.wait("r-1", timeout=10,
                               on_progress=lambda _: threads.append(threading.current_thread()))
    assert summary.phase == "Succeeded"
    assert threads == [threading.current_thread()] * 2


async def test_the_sync_client_refuses_to_block_a_running_loop(kubeconfig: Path) -> None:
    made = Client(kubeconfig=kubeconfig)
    with pytest.raises(RuntimeError, match=r"use durakube\.client\.AsyncClient"):
        made.get("r-1")
    await asyncio.to_thread(made.close)

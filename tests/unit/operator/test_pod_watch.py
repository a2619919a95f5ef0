"""The operator's own watch of attempt pods (`watching`), against a scripted API server
over real HTTP: list, then watch from the list's version; resume from the last version
seen (bookmarks too); list again on 410 Gone, handing over pods gone meanwhile as
deleted; retry after a refusal; take a silent stream for dead."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from durakube_operator import caching, kubeapi, watching

SELECTOR = "app.kubernetes.io/managed-by=durakube"
# A watch answer: a status with a body, or the chunks of a stream (None: never ends).
Stream = list[bytes] | None


def pod(name: str, version: str, namespace: str = "team") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}",
                         "resourceVersion": version}, "status": {"phase": "Pending"}}


def line(kind: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": body}).encode() + b"\n"


class ScriptedApiServer:
    """Answers pod lists and watches from scripts, and keeps what was asked."""

    def __init__(self) -> None:
        # Each list answers with the next page: (status, body).
        self.lists: list[tuple[int, dict[str, Any]]] = []
        # Each watch answers with the next script: (status, chunks); status 200 streams.
        self.watches: list[tuple[int, Stream]] = []
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.closing = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.asked.append((request.path, query))
        if query.get("watch") != "true":
            status, body = self.lists.pop(0)
            return web.json_response(body, status=status)
        status, chunks = self.watches.pop(0) if self.watches else (200, None)
        if status != 200:
            return web.json_response({"kind": "Status", "code": status}, status=status)
        response = web.StreamResponse()
        await response.prepare(request)
        if chunks is None:
            await self.closing.wait()  # a stream that stays silent
        for chunk in chunks or []:
            await response.write(chunk)
            await asyncio.sleep(0.01)  # separate reads: a line may arrive in pieces
        await response.write_eof()
        return response

    def watch_versions(self) -> list[str]:
        return [query["resourceVersion"] for _, query in self.asked if query.get("watch") == "true"]


@pytest.fixture
async def server(api_serving: Callable[[Any], Awaitable[kubeapi.KubeApi]]
                 ) -> AsyncIterator[tuple[ScriptedApiServer, kubeapi.KubeApi]]:
    scripted = ScriptedApiServer()
    try:
        yield scripted, await api_serving(scripted.handle)
    finally:
        scripted.closing.set()  # silent streams end before the server does


class Seen:
    """What the watch handed over, kept in a cache as the controller keeps it."""

    def __init__(self) -> None:
        self.cache = caching.ObjectCache()
        self.events: list[tuple[str, str, bool]] = []

    def changed(self, body: dict[str, Any], deleted: bool) -> None:
        meta = body["metadata"]
        self.events.append((meta["name"], meta["resourceVersion"], deleted))
        if deleted:
            self.cache.forget(meta["namespace"], meta["name"])
        else:
            self.cache.record(body)


async def watch_until(api: kubeapi.KubeApi, seen: Seen, done: Callable[[], bool],
                      namespaces: tuple[str, ...] = ("team",)) -> None:
    """Runs the watch until `done()` holds (at most 10 s), then stops it."""
    task = asyncio.create_task(watching.PodWatch(api, seen.cache, namespaces, SELECTOR, seen.changed).run())
    try:
        for _ in range(1000):
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not done; seen {seen.events}")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def page(items: list[dict[str, Any]], version: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    meta: dict[str, Any] = {"resourceVersion": version}
    if token:
        meta["continue"] = token
    return 200, {"kind": "PodList", "metadata": meta, "items": items}


async def test_listed_pods_then_their_changes_are_handed_over_and_the_watch_resumes_where_it_ended(
        server: tuple[ScriptedApiServer, kubeapi.KubeApi], monkeypatch: pytest.MonkeyPatch) -> None:
    scripted, api = server
    monkeypatch.setattr(kubeapi, "LIST_PAGE", 1)
    scripted.lists = [page([pod("a", "5")], "9", token="next"), page([pod("b", "6")], "10")]
    modified = line("MODIFIED", pod("a", "11"))
    bookmark = line("BOOKMARK", {"metadata": {"resourceVersion": "12"}})
    scripted.watches = [(200, [modified[:20], modified[20:] + bookmark, line("DELETED", pod("b", "13"))])]
    seen = Seen()
    await watch_until(api, seen, lambda: len(scripted.watch_versions()) == 2)
    assert seen.events == [("a", "5", False), ("b", "6", False), ("a", "11", False), ("b", "13", True)]
    # Listed page by page, with the selector; watched from the list's version, then from
    # the last version the stream brought (after the server ended it), not listed again.
    lists = [query for _, query in scripted.asked if query.get("watch") != "true"]
    assert [query.get("continue") for query in lists] == [None, "next"]
    assert all(query["labelSelector"] == SELECTOR for _, query in scripted.asked)
    assert scripted.watch_versions() == ["10", "13"]
    first_watch = next(query for _, query in scripted.asked if query.get("watch") == "true")
    assert first_watch["allowWatchBookmarks"] == "true"
    assert first_watch["timeoutSeconds"] == str(watching.WATCH_SERVER_TIMEOUT)
    assert {path for path, _ in scripted.asked} == {"/api/v1/namespaces/team/pods"}


async def test_an_expired_version_lists_again_and_a_pod_gone_meanwhile_is_handed_over_as_deleted(
        server: tuple[ScriptedApiServer, kubeapi.KubeApi]) -> None:
    scripted, api = server
    scripted.lists = [page([pod("a", "5"), pod("b", "6")], "10"), page([pod("a", "15")], "20")]
    scripted.watches = [(200, [line("ERROR", {"kind": "Status", "code": 410, "reason": "Expired"})])]
    seen = Seen()
    await watch_until(api, seen, lambda: scripted.watch_versions() == ["10", "20"])
    assert seen.events == [("a", "5", False), ("b", "6", False), ("a", "15", False), ("b", "6", True)]
    assert len(seen.cache) == 1


async def test_a_pod_of_another_namespace_is_not_taken_for_deleted_by_a_namespaces_relist(
        server: tuple[ScriptedApiServer, kubeapi.KubeApi]) -> None:
    scripted, api = server
    seen = Seen()
    seen.cache.record(pod("elsewhere", "3", namespace="other"))
    scripted.lists = [page([pod("a", "5")], "10")]
    await watch_until(api, seen, lambda: scripted.watch_versions() == ["10"])
    assert seen.events == [("a", "5", False)]
    assert seen.cache.get("other", "elsewhere") is not None


async def test_a_refused_watch_is_tried_again_after_a_backoff_from_the_same_version(
        server: tuple[ScriptedApiServer, kubeapi.KubeApi], monkeypatch: pytest.MonkeyPatch) -> None:
    scripted, api = server
    monkeypatch.setattr(watching, "BACKOFF_FIRST", 0.05)
    scripted.lists = [page([], "10")]
    scripted.watches = [(403, None), (500, None), (200, [line("ADDED", pod("a", "11"))])]
    seen = Seen()
    await watch_until(api, seen, lambda: len(scripted.watch_versions()) == 4)
    assert scripted.watch_versions() == ["10", "10", "10", "11"]
    assert seen.events == [("a", "11", False)]


async def test_a_silent_stream_is_taken_for_dead_and_watched_again(
        server: tuple[ScriptedApiServer, kubeapi.KubeApi], monkeypatch: pytest.MonkeyPatch) -> None:
    scripted, api = server
    monkeypatch.setattr(watching, "WATCH_INACTIVITY_TIMEOUT", 0.2)
    monkeypatch.setattr(watching, "BACKOFF_FIRST", 0.05)
    scripted.lists = [page([], "10")]
    scripted.watches = [(200, None), (200, [line("ADDED", pod("a", "11"))])]
    seen = Seen()
    await watch_until(api, seen, lambda: len(scripted.watch_versions()) == 3)
    assert scripted.watch_versions() == ["10", "10", "11"]
    assert seen.events == [("a", "11", False)]


async def test_each_namespace_served_has_a_watch_of_its_own_and_none_the_whole_cluster(
        server: tuple[ScriptedApiServer, kubeapi.KubeApi]) -> None:
    scripted, api = server
    scripted.lists = [page([], "10"), page([], "10")]
    seen = Seen()
    await watch_until(api, seen, lambda: len(scripted.watch_versions()) == 2, namespaces=("a", "b"))
    assert sorted(path for path, _ in scripted.asked) == [
        "/api/v1/namespaces/a/pods", "/api/v1/namespaces/a/pods",
        "/api/v1/namespaces/b/pods", "/api/v1/namespaces/b/pods"]

    scripted.asked.clear()
    scripted.lists = [page([pod("a", "5", namespace="x")], "10")]
    await watch_until(api, seen, lambda: len(scripted.watch_versions()) == 1, namespaces=())
    assert {path for path, _ in scripted.asked} == {"/api/v1/pods"}

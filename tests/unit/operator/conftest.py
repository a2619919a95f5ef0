"""Fixtures of the operator's unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from kubernetes.aio import client as kubeclient

from durakube_operator import kubeapi

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def api_serving() -> AsyncIterator[Callable[[Handler], Awaitable[kubeapi.KubeApi]]]:
    """Serves a handler as the API server, over real HTTP on loopback, and gives the
    operator's client of it (its rate limit out of the way); both end with the test."""
    runners: list[web.AppRunner] = []
    apis: list[kubeapi.KubeApi] = []

    async def serve(handle: Handler) -> kubeapi.KubeApi:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        configuration = kubeclient.Configuration(host=f"http://127.0.0.1:{port}")
        apis.append(kubeapi.KubeApi(kubeapi.JsonApiClient(configuration), qps=1000))
        return apis[-1]

    try:
        yield serve
    finally:
        for api in apis:
            await api.close()
        for runner in runners:
            await runner.cleanup()

"""`durakube dashboard`: web pages of runs, queues and tasks, served on your machine.

    durakube dashboard                      # http://127.0.0.1:8600, the context's namespace
    durakube dashboard -A --port 9000       # every namespace you may list

It reads and acts with your kubeconfig, so Kubernetes RBAC decides what you see and
do: a page or an action the API refuses shows the API's 403 and its message. Steps,
attempts, waits, full payloads and outputs, the queue ledger and the run history
live in Postgres and need the database DSN (`--database-url` or
`DURAKUBE_DATABASE_URL`), as `durakube steps` does; whoever holds that DSN can read
every namespace's rows, so the dashboard reads them only for runs and namespaces
the API has just let you read.

The stack, and why: a small server in Python with aiohttp (already the HTTP library
under the Kubernetes client the SDK uses) rendering HTML with Jinja2 (autoescaped
templates), and htmx 2 (the maintained 2.x line of the npm package `htmx.org`,
vendored in `static/` with its license) for live updates and actions without a page
load. The pages are plain server-rendered HTML, so there is no front-end build, no
JavaScript of our own to test separately, and nothing fetched from the network at
run time. Needs the `dashboard` extra: `pip install 'durakube[dashboard]'`.

Modules: `reading` (what each page shows), `acting` (cancel, replay, events, tokens),
`timelines` and `filters` (pure), `database` (the extra Postgres reads),
`rendering` (templates), `serving` (routes and errors).
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web

from durakube.client import AsyncClient
from durakube.dashboard import serving

__all__ = ["DEFAULT_PORT", "serve"]

DEFAULT_PORT = 8600
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


async def serve(*, address: str = "127.0.0.1", port: int = DEFAULT_PORT,
                kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None,
                namespace: str | None = None, all_namespaces: bool = False,
                database_url: str | None = None, read_only: bool = False) -> None:
    """Serves the dashboard until cancelled (Ctrl-C in the CLI)."""
    async with AsyncClient(kubeconfig=kubeconfig, context=context, namespace=namespace,
                           database_url=database_url) as client:
        # Served on a loopback address, only loopback names are accepted as Host (DNS
        # rebinding); on any other address (in a cluster, behind a proxy) any name is.
        hosts = LOCAL_HOSTS | {address} if address in LOCAL_HOSTS else set()
        app = serving.build_app(client, namespace=None if all_namespaces else client.namespace,
                                hosts=hosts, read_only=read_only)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, address, port)
            await site.start()
            shown = f"[{address}]" if ":" in address else address
            print(f"durakube dashboard on http://{shown}:{port}/ "
                  f"({'all namespaces' if all_namespaces else f'namespace {client.namespace}'}"
                  f"{', read-only' if read_only else ''}"
                  f"{'' if client.database_url else ', no database: steps and history not shown'})",
                  file=sys.stderr, flush=True)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

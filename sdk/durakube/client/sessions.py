"""What every call of one client shares: the API, the namespace, Postgres, the Task cache.

`AsyncClient` owns one `Session` and hands it to the modules that do the work
(`submitting`, `watching`, `managing`); they keep no state of their own. The
Postgres pool is opened on first use, so a client that never needs the database
(triggers of small payloads, waits, cancels) never connects to it.

Knows how to name runs and where things are; decides nothing about them.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from durakube import tasks
from durakube.client import failures, handles, history, kubeapi, manifests
from durakube.store import pools

RunRef = str | handles.RunHandle | handles.RunSummary

# How long a fetched Task object is trusted (existence and input schema).
TASK_CACHE_SECONDS = 30.0


class Session:
    """The API, the namespace, the database and the Task cache of one client."""

    def __init__(self, *, kubeconfig: str | os.PathLike[str] | None = None,
                 context: str | None = None, namespace: str | None = None,
                 database_url: str | None = None, max_concurrency: int = 32,
                 registry: tasks.Registry | None = None) -> None:
        settings = kubeapi.load_settings(kubeconfig, context=context, namespace=namespace,
                                         connections=max_concurrency)
        self.namespace = settings.namespace
        self.database_url = database_url or os.environ.get("DURAKUBE_DATABASE_URL") or None
        self.registry = registry if registry is not None else tasks.registry
        self.max_concurrency = max_concurrency
        self.api = kubeapi.KubeApi(settings)
        self._pool: pools.Database | None = None
        self._pool_lock = asyncio.Lock()
        self._tasks: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        await self.api.close()

    async def database(self, needed_for: str) -> pools.Database:
        """The Postgres pool; `DatabaseNotConfigured` naming `needed_for` without a DSN."""
        if self.database_url is None:
            raise failures.DatabaseNotConfigured(needed_for)
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await history.open_pool(self.database_url)
        return self._pool

    def locate(self, run: RunRef) -> tuple[str, str]:
        """(namespace, TaskRun name) of a handle, a summary, "namespace/name" or a name."""
        if isinstance(run, handles.RunHandle | handles.RunSummary):
            return run.namespace, run.name
        if "/" in run:
            namespace, name = run.split("/", 1)
            return namespace, name
        return self.namespace, run

    async def read_task(self, namespace: str, task_id: str) -> dict[str, Any]:
        """The Task object of `task_id` (cached briefly); `UnknownTask` listing the others."""
        name = manifests.task_object_name(task_id)
        cached = self._tasks.get((namespace, name))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        body = await self.api.get_task(namespace, name)
        if body is None:
            known = await self.api.list_task_names(namespace)
            raise failures.UnknownTask(name, namespace, known)
        self._tasks[(namespace, name)] = (time.monotonic() + TASK_CACHE_SECONDS, body)
        return body

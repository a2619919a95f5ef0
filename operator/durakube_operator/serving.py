"""The HTTP endpoints every replica serves, leader or standby.

    :METRICS_PORT  GET  /metrics    Prometheus exposition (`durakube_operator_leader` says
                                    which replica leads)
    :HEALTH_PORT   GET  /healthz    200 while the replica's event loop answers (liveness)
                   GET  /readyz     200 when Postgres answers and, on the leader, kopf's
                                    watches have started; the body says which checks passed
    :WEBHOOK_PORT  POST /v1/...     tokens, and events from authenticated callers (`webhooks`,
                                    `authenticating`)

Every replica pings Postgres every few seconds (`Health.watch_database`) and says
how it went in `durakube_postgres_up`, and counts webhook requests by route and
status (`durakube_webhook_requests_total`, a middleware of this module's, so the
webhook handlers stay free of metrics).

A port of 0 turns that server off. Sockets are bound with SO_REUSEPORT, so replicas
sharing one network namespace (hostNetwork pods, the test bed's process node) can
each bind the same ports; in a pod network each replica has its own anyway.

Started and stopped by `operating`; reads the replica's state, changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
from aiohttp import web

from durakube.store import pools
from durakube_operator import authenticating, delivering, leading, metrics, webhooks
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

# How long /readyz waits for Postgres before it calls the replica unready.
DATABASE_CHECK_SECONDS = 2.0
# How often every replica pings Postgres for `durakube_postgres_up`.
DATABASE_PING_SECONDS = 5.0


@dataclass
class Health:
    """What the probes report: Postgres reachable, leading or not, watches started."""

    db: pools.Database
    elector: leading.LeaderElector | None
    watching: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.leading

    async def readiness(self) -> tuple[bool, list[str]]:
        checks = []
        problem = await self.check_database()
        database = problem is None
        checks.append("[+] postgres ok" if database else f"[-] postgres failed: {problem}")
        if not self.leading:
            checks.append("[+] standby (serves metrics and webhooks; the leader reconciles)")
            return database, checks
        watching = self.watching.is_set()
        checks.append("[+] leading, watches started" if watching
                      else "[-] leading, watches not started yet")
        return database and watching, checks

    async def check_database(self) -> str | None:
        """Pings Postgres and sets `durakube_postgres_up`; what went wrong, None when it answered."""
        try:
            await asyncio.wait_for(self._ping(), DATABASE_CHECK_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            metrics.POSTGRES_UP.set(0)
            return str(error) or type(error).__name__
        metrics.POSTGRES_UP.set(1)
        return None

    async def watch_database(self, interval: float = DATABASE_PING_SECONDS) -> None:
        """Pings Postgres every `interval` seconds, forever: a replica that no probe asks
        still tells Prometheus whether it reaches Postgres."""
        while True:
            await self.check_database()
            await asyncio.sleep(interval)

    async def _ping(self) -> None:
        async with pools.connection(self.db) as conn:
            await conn.fetchval("SELECT 1")


@web.middleware
async def count_webhook_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """Counts each request by its route's pattern (never the token or key in its path) and
    the status answered."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        metrics.WEBHOOK_REQUESTS.labels(route=route, code=str(status)).inc()


def build_metrics_app() -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=prometheus_client.generate_latest())
        response.content_type = "text/plain"
        response.charset = "utf-8"
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


def build_health_app(health: Health) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ready, checks = await health.readiness()
        body = "\n".join([*checks, "ready" if ready else "not ready"]) + "\n"
        return web.Response(text=body, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start(settings: settings_module.Settings, health: Health,
                deliverer: delivering.Deliverer,
                authenticator: authenticating.Authenticator) -> list[web.AppRunner]:
    """Starts the servers whose port is not 0; the caller cleans the runners up."""
    webhook_app = webhooks.build_app(deliverer, authenticator)
    webhook_app.middlewares.append(count_webhook_requests)
    servers = [(settings.metrics_port, build_metrics_app()),
               (settings.health_port, build_health_app(health)),
               (settings.webhook_port, webhook_app)]
    runners = []
    for port, app in servers:
        if not port:
            continue
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "0.0.0.0", port, reuse_port=True).start()
    return runners


async def stop(runners: list[web.AppRunner]) -> None:
    for runner in runners:
        await runner.cleanup()

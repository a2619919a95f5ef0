"""One replica of the operator, from its start to its exit.

Every replica connects to Postgres (migrating the schema under the migrations'
advisory lock, as the schema's owner), serves metrics, the probes and the webhooks
(`serving`), and stands for election on a Lease (`leading`). Only the replica
holding the Lease runs kopf, whose start-up handler builds the controller: the work
queue, the reconciler and the admission, waking, spawning, retention and scheduling
loops. A standby keeps nothing warm but its connections; taking over costs kopf's first
listing of the watched objects.

A leader that cannot renew its Lease within the renew deadline stops at once and
exits with code 1, as controller-runtime's managers do: it must stop writing before
a standby may take over, and its pod's restart makes it a standby. A clean stop
(SIGTERM) gives the Lease up, so a standby takes over at once rather than when the
lease expires.

Called by `main`; returns the process's exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Coroutine
from typing import Any

import kopf

from durakube.store import pools, schema
from durakube_operator import (
    authenticating,
    delivering,
    handlers,
    kubeapi,
    leading,
    metrics,
    serving,
    trimming,
)
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

# The Lease's calls have their own client and budget, so a renewal never waits behind
# the reconciler's calls in the shared token bucket.
_LEASE_QPS = 5.0
# Postgres connections of a replica at most: passes hold one only while they talk to it,
# so many workers share fewer connections.
POOL_LIMIT = 20

# The webhook's reviews of its callers (TokenReview, SubjectAccessReview) have their own
# budget too: a burst of events never delays the reconciler's calls, nor they the events.
_REVIEW_QPS = 20.0

# How long a leader that lost its Lease lets kopf wind down before the process ends anyway.
_STOP_AFTER_LOSS_SECONDS = 3.0


async def operate(settings: settings_module.Settings) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stopping.set)  # kopf installs its own once it runs

    db = await pools.connect(settings.database_url, min_size=1,
                             max_size=max(4, min(settings.workers + 2, POOL_LIMIT)), init=_time_statements)
    lease_api = kubeapi.KubeApi(await kubeapi.load_client(), _LEASE_QPS)
    review_api = kubeapi.KubeApi(await kubeapi.load_client(), _REVIEW_QPS)
    identity = f"{settings.pod_name}_{secrets.token_hex(4)}"
    elector = leading.LeaderElector(
        lease_api, settings.lease_namespace, settings.lease_name, identity,
        leading.Timings(settings.lease_duration_seconds, settings.renew_deadline_seconds,
                        settings.retry_period_seconds),
    ) if settings.leader_election else None
    memo = handlers.Memo()
    memo.settings, memo.db = settings, db
    health = serving.Health(db, elector)
    runners = await serving.start(settings, health, delivering.Deliverer(db, memo.wake_waiting_runs),
                                  authenticating.Authenticator(review_api, settings.webhook_secret))
    pinging = asyncio.create_task(health.watch_database(), name="postgres-ping")
    trimming_task = asyncio.create_task(trimming.trim_every(), name="malloc-trim")
    metrics.LEADER.set(0)
    try:
        await _migrate(settings)
        if elector is not None:
            logger.info("standing for lease %s/%s as %s", settings.lease_namespace,
                        settings.lease_name, identity)
            if not await _first(elector.acquire(), stopping):
                return 0
        metrics.LEADER.set(1)
        return await _lead(settings, memo, health, elector)
    finally:
        metrics.LEADER.set(0)
        if elector is not None:
            with contextlib.suppress(Exception):
                await elector.release()
        for task in (pinging, trimming_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await serving.stop(runners)
        await lease_api.close()
        await review_api.close()
        await db.close()


async def _migrate(settings: settings_module.Settings) -> None:
    """Applies the migrations as the schema's owner, on a connection of its own that
    closes at once: the run-time login needs no DDL right."""
    if settings.worker_database_url is None:
        logger.warning("DURAKUBE_WORKER_DATABASE_URL is not set: attempt pods get the "
                       "operator's own database login, so tasks are not isolated from "
                       "one another")
    owner = await pools.connect(settings.migrating_database_url, min_size=1, max_size=1)
    try:
        await schema.migrate(owner)
    finally:
        await owner.close()


async def _time_statements(connection: Any) -> None:
    """Run on each new connection of the replica's pool: its statements are timed into
    `durakube_postgres_query_duration_seconds`, one place for every store call. Once per
    connection, not per acquire: asyncpg keeps a connection's query loggers until it
    closes, and adding one builds its callback by inspection each time."""
    connection.add_query_logger(metrics.observe_query)


async def _lead(settings: settings_module.Settings, memo: handlers.Memo, health: serving.Health,
                elector: leading.LeaderElector | None) -> int:
    """Runs kopf (and with it the controller) while this replica holds the Lease."""
    operator = asyncio.create_task(kopf.operator(
        standalone=True,  # the Lease elects; kopf's peering would only pause, not fence
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        memo=memo,
        ready_flag=health.watching,
    ), name="kopf")
    if elector is None:
        await operator
        return 0
    keeping = asyncio.create_task(elector.keep(), name="lease")
    await asyncio.wait({operator, keeping}, return_when=asyncio.FIRST_COMPLETED)
    if not keeping.done():
        keeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeping
        return 0 if operator.exception() is None else 1
    logger.critical("stopping: %s", keeping.exception())
    operator.cancel()
    done, _ = await asyncio.wait({operator}, timeout=_STOP_AFTER_LOSS_SECONDS)
    if not done:
        logger.critical("kopf did not stop within %.0f s of losing the lease; exiting now",
                        _STOP_AFTER_LOSS_SECONDS)
        logging.shutdown()
        os._exit(1)
    return 1


async def _first(work: Coroutine[Any, Any, None], stopping: asyncio.Event) -> bool:
    """Awaits `work` unless `stopping` is set first; True when `work` finished."""
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stopping.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopped):
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
    if task.done() and not task.cancelled():
        task.result()  # re-raises what acquiring raised
        return True
    return False

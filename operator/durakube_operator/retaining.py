"""Retention: finished TaskRuns deleted after their TTL, runs' history after its period.

One loop of our own on the leader, over Postgres, like admission and waking: no timer
or daemon per TaskRun (each costs a task and a finalizer, and has stuck deletions,
kopf #1104 and #1305). When a run reaches its final phase the reconciler records when
its TaskRun and its history expire (`store.retention.record_finish`, with what
`ttl_after_finished` and `history_retention` decide here). Each pass of the loop then

- deletes the TaskRuns whose TTL ran out, a bounded batch at a time, each with a uid
  precondition (a TaskRun of the same name created since is not touched; 404 is
  fine) and only once its final status is published; their attempt pods and
  Secrets go with them by garbage collection. Each is marked gone, so it is never
  tried again; a TaskRun deleted by anyone else is marked gone by the watch;
- deletes the pod of a finished run's last attempt once `DURAKUBE_FINISHED_POD_SECONDS`
  have passed (when set; earlier attempts' pods are deleted by the reconciler as soon
  as their outcome is read), only if the run still owns it;
- at most every `history_interval` seconds, removes the history of runs whose
  retention ran out and whose TaskRun is gone (every row of the run, in every table),
  and events, payloads and queue keys older than the operator's history retention,
  each in bounded batches over an index; and deletes the Secrets of spent attempt
  key rings (`keying`).

It sleeps until the next TaskRun expires (at most `interval`), or until poked when a
run finished with a TTL shorter than that. The precedence functions are pure.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from durakube import durations, resources
from durakube.store import pools, retention
from durakube_operator import caching, keying, kubeapi, looping, metrics
from durakube_operator import settings as settings_module

logger = logging.getLogger(__name__)

# Rows of one statement, and TaskRuns deleted by one pass (through the API's token bucket).
_BATCH = 500
_DELETES_PER_PASS = 200
# How soon to look again at a TaskRun due for deletion whose final status is not out yet.
_PUBLISH_WAIT = 1.0


def ttl_after_finished(run: resources.TaskRun, task: resources.Task | None,
                       settings: settings_module.Settings) -> int | None:
    """Seconds after the run finishes before its TaskRun is deleted (None: kept): the
    run's spec.ttlSecondsAfterFinished, else its Task's, else the operator's default."""
    if run.spec.ttl_seconds_after_finished is not None:
        return run.spec.ttl_seconds_after_finished
    if task is not None and task.spec.ttl_seconds_after_finished is not None:
        return task.spec.ttl_seconds_after_finished
    return settings.ttl_seconds_after_finished


def history_retention(task: resources.Task | None,
                      settings: settings_module.Settings) -> float | None:
    """Seconds a finished run's history is kept (None: for ever): its Task's
    spec.historyRetention, else the operator's. Postgres keeps it at least as long as
    the TaskRun whatever this says (`record_finish`)."""
    if task is not None and task.spec.history_retention is not None:
        return durations.parse_duration(task.spec.history_retention)
    return settings.history_retention


def finished_pod_seconds(settings: settings_module.Settings) -> int | None:
    """Seconds the pod of a finished run's last attempt is kept after the run finished
    (None: until the TaskRun goes); earlier attempts' pods go when their outcome is read."""
    return settings.finished_pod_seconds


def cutoff(now: datetime, retention_seconds: float | None) -> datetime | None:
    """What was created (or expired) before this is past the retention (None: nothing)."""
    return None if retention_seconds is None else now - timedelta(seconds=retention_seconds)


class RetentionLoop(looping.PokedLoop):
    name = "retention"

    def __init__(self, db: pools.Database, api: kubeapi.KubeApi, reads: caching.CachedReads,
                 settings: settings_module.Settings, keys: keying.KeyRings, interval: float = 5.0,
                 history_interval: float = 60.0) -> None:
        super().__init__(interval)
        self.db, self.api, self.reads, self.settings, self.keys = db, api, reads, settings, keys
        self.history_interval = history_interval
        self._history_due = 0.0

    async def run_pass(self) -> float | None:
        await self.keys.retire_spent()
        more_pods = await self.delete_finished_pods()
        more, waiting = await self.delete_expired_taskruns()
        more = more or more_pods
        if time.monotonic() >= self._history_due:
            await self.purge_history()
            self._history_due = time.monotonic() + self.history_interval
        if more:
            return 0.0
        if waiting:
            return _PUBLISH_WAIT
        due = await retention.next_expiry(self.db)
        if due is None:
            return self.interval
        return max(0.0, min(self.interval, (due - datetime.now(UTC)).total_seconds()))

    async def delete_expired_taskruns(self) -> tuple[bool, bool]:
        """One bounded batch of expired TaskRuns. Returns whether more may be due now, and
        whether one waits for its final status to be published."""
        due = await retention.taskruns_due(self.db, _DELETES_PER_PASS)
        gone: list[retention.DueTaskRun] = []
        waiting = False
        for run in due:
            body = await self.reads.get_taskrun(run.namespace, run.name)
            if body is not None and body["metadata"].get("uid") == run.run_id:
                if (body.get("status") or {}).get("phase") not in resources.FINAL_PHASES:
                    # Recorded before its status patch: deleted once people could see the end.
                    waiting = True
                    continue
                if await self.api.delete_taskrun(run.namespace, run.name, run.run_id):
                    metrics.TASKRUNS_DELETED.labels(namespace=run.namespace).inc()
            gone.append(run)
        await retention.mark_taskruns_gone(self.db, gone, self.settings.history_retention)
        if gone:
            logger.info("deleted %d TaskRuns past their ttlSecondsAfterFinished", len(gone))
        return len(gone) == _DELETES_PER_PASS, waiting

    async def delete_finished_pods(self) -> bool:
        """One bounded batch of last attempts' pods whose time is up (their run's own pods
        only); True when more may be due now."""
        due = await retention.pods_due(self.db, _DELETES_PER_PASS)
        for pod in due:
            body = await self.reads.get_pod(pod.namespace, pod.pod_name)
            owners = {owner.get("uid") for owner in (body or {}).get("metadata", {}).get(
                "ownerReferences") or []}
            if body is not None and pod.run_id in owners:
                await self.api.delete_pod(pod.namespace, pod.pod_name)
                metrics.FINISHED_PODS_DELETED.labels(namespace=pod.namespace).inc()
        await retention.mark_pods_gone(self.db, [pod.run_id for pod in due])
        return len(due) == _DELETES_PER_PASS

    async def purge_history(self) -> int:
        """Removes expired history in batches until none is left; returns the runs removed."""
        removed = 0
        while True:
            run_ids = await retention.purge_history(self.db, _BATCH)
            removed += len(run_ids)
            metrics.HISTORY_RUNS_DELETED.inc(len(run_ids))
            if len(run_ids) < _BATCH:
                break
        before = cutoff(datetime.now(UTC), self.settings.history_retention)
        if before is not None:
            for table, purge in (("events", retention.purge_events),
                                 ("payloads", retention.purge_payloads),
                                 ("queue_keys", retention.purge_queue_keys)):
                while True:
                    count = await purge(self.db, before, _BATCH)
                    metrics.HISTORY_ROWS_DELETED.labels(table=table).inc(count)
                    if count < _BATCH:
                        break
        if removed:
            logger.info("removed the history of %d runs past their retention", removed)
        return removed

    def run_finished(self, ttl_seconds: float) -> None:
        """A run finished whose TaskRun expires in `ttl_seconds`: a pass now if that is
        sooner than the loop's next round."""
        if ttl_seconds < self.interval:
            self.poke()

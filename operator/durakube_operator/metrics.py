"""Prometheus metrics of the operator (prefix `durakube_`), served on DURAKUBE_METRICS_PORT.

Labels stay bounded: task, queue ("<namespace>/<name>"), outcome and reason, never
a run or pod name. Updated by the reconciler (transitions) and the admission loop
(queue gauges); reading them never touches Postgres.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from durakube.store import queues

RUNS_STARTED = Counter("durakube_runs_started", "Runs whose first attempt was queued.",
                       ["task", "queue"])
RUNS_FINISHED = Counter("durakube_runs_finished", "Runs that reached a final phase.",
                        ["task", "queue", "outcome"])
RUN_DURATION = Histogram("durakube_run_duration_seconds", "From TaskRun creation to its final phase.",
                         ["task", "queue", "outcome"],
                         buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400))
RETRIES = Counter("durakube_retries", "Attempts that ended and will be tried again, by reason.",
                  ["task", "reason"])
QUEUE_WAIT = Histogram("durakube_queue_wait_seconds", "From entering a queue's line to getting a slot.",
                       ["queue"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600))
QUEUE_RUNNING = Gauge("durakube_queue_running", "Slots in use (pods of running attempts).", ["queue"])
QUEUE_WAITING = Gauge("durakube_queue_waiting", "Runs waiting for a slot.", ["queue"])
QUEUE_SUSPENDED = Gauge("durakube_queue_suspended", "Runs of the queue suspended in a long wait.",
                        ["queue"])
QUEUE_LIMIT = Gauge("durakube_queue_concurrency_limit", "The queue's limit (0 when paused).", ["queue"])
POD_START_LATENCY = Histogram("durakube_attempt_pod_created_seconds",
                              "From a slot granted (or a retry due) to the attempt's pod created.",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


def observe_queues(counts: dict[str, queues.Counts]) -> None:
    for queue, count in counts.items():
        QUEUE_RUNNING.labels(queue=queue).set(count.running)
        QUEUE_WAITING.labels(queue=queue).set(count.waiting)
        QUEUE_SUSPENDED.labels(queue=queue).set(count.suspended)
        QUEUE_LIMIT.labels(queue=queue).set(count.limit)

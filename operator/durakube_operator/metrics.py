"""Prometheus metrics of the operator (prefix `durakube_`), served on DURAKUBE_METRICS_PORT.

Labels stay bounded: namespace, queue (the resolved queue's name), task, outcome
and reason, never a run or pod name. Updated by the reconciler (transitions) and the admission loop
(queue gauges); reading them never touches Postgres.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from durakube.store import queues

# Every run and queue series carries the same two labels, so they join in PromQL.
_QUEUE = ["namespace", "queue"]
_RUN = [*_QUEUE, "task"]

RUNS_STARTED = Counter("durakube_runs_started", "Runs the operator took up (their first pass).", _RUN)
RUNS_FINISHED = Counter("durakube_runs_finished", "Runs that reached a final phase.",
                        [*_RUN, "outcome"])
RUN_DURATION = Histogram("durakube_run_duration_seconds", "From TaskRun creation to its final phase.",
                         [*_RUN, "outcome"],
                         buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400))
RETRIES = Counter("durakube_retries", "Attempts that ended and will be tried again, by reason.",
                  [*_RUN, "reason"])
QUEUE_WAIT = Histogram("durakube_queue_wait_seconds", "From entering a queue's line to getting a slot.",
                       _QUEUE, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600))
QUEUE_RUNNING = Gauge("durakube_queue_running", "Slots in use (pods of running attempts).", _QUEUE)
QUEUE_WAITING = Gauge("durakube_queue_waiting", "Runs waiting for a slot.", _QUEUE)
QUEUE_SUSPENDED = Gauge("durakube_queue_suspended", "Runs of the queue suspended in a long wait.",
                        _QUEUE)
QUEUE_LIMIT = Gauge("durakube_queue_concurrency_limit", "The queue's limit (0 when paused).", _QUEUE)
LEADER = Gauge("durakube_operator_leader",
               "1 on the replica that holds the leader Lease (and reconciles), 0 on a standby.")
POD_START_LATENCY = Histogram(
    "durakube_attempt_pod_created_seconds",
    "From the moment an attempt was due (TaskRun created, delay or back-off over) to its pod "
    "created, time in the queue's line included.",
    _QUEUE, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300))


def queue_labels(queue: str) -> dict[str, str]:
    """The labels of a queue key "<namespace>/<name>"."""
    namespace, _, name = queue.partition("/")
    return {"namespace": namespace, "queue": name}


def observe_queues(counts: dict[str, queues.Counts]) -> None:
    for queue, count in counts.items():
        labels = queue_labels(queue)
        QUEUE_RUNNING.labels(**labels).set(count.running)
        QUEUE_WAITING.labels(**labels).set(count.waiting)
        QUEUE_SUSPENDED.labels(**labels).set(count.suspended)
        QUEUE_LIMIT.labels(**labels).set(count.limit)

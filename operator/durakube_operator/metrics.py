"""Prometheus metrics of the operator (prefix `durakube_`), served on DURAKUBE_METRICS_PORT.

Named as Prometheus asks: counters end in `_total`, durations are in seconds.
Labels stay bounded: namespace, queue (the resolved queue's name), task, outcome
and reason, never a run or pod name. Run and queue series carry `namespace` and
`queue`, so they join in PromQL.

Updated where things happen: the reconciler (transitions, attempts and their
steps, read from Postgres when an attempt ends, since worker pods are too short-lived
to be scraped), the admission loop (queue gauges), the retention loop (deletions),
the work queue, the Kubernetes client (`kubeapi`), every Postgres statement of the
operator's pool (`observe_query`), the webhook server and the periodic Postgres ping
(`serving`). Reading them never touches Postgres. This module imports nothing of the
operator's.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

from durakube.store import queues

# A `_created` series per counter and histogram doubles the series for no use on a dashboard.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Every run and queue series carries the same two labels, so they join in PromQL.
_QUEUE = ["namespace", "queue"]
_RUN = [*_QUEUE, "task"]

# Buckets from milliseconds to a minute, for calls to Postgres and the API server.
_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

BUILD_INFO = Gauge("durakube_build_info", "Always 1; the operator's version in a label.", ["version"])

# Runs, from their TaskRun's transitions.
RUNS_STARTED = Counter("durakube_runs_started_total", "Runs the operator took up (their first pass).",
                       _RUN)
RUNS_FINISHED = Counter("durakube_runs_finished_total", "Runs that reached a final phase, by phase.",
                        [*_RUN, "outcome"])
RUN_DURATION = Histogram("durakube_run_duration_seconds", "From TaskRun creation to its final phase.",
                         [*_RUN, "outcome"],
                         buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400))
RETRIES = Counter("durakube_retries_total", "Attempts that ended and will be tried again, by reason.",
                  [*_RUN, "reason"])

# Attempts and steps, read from what the worker recorded in Postgres when an attempt ends.
ATTEMPTS_FINISHED = Counter(
    "durakube_attempts_finished_total",
    "Attempts that ended, by the outcome their worker recorded (succeeded, failed, retry, "
    "suspended; none when the pod ended without one).", [*_RUN, "outcome"])
STEP_DURATION = Histogram(
    "durakube_step_duration_seconds",
    "How long each step recorded by an attempt ran, observed when the attempt ends.", _RUN,
    buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600))

# Retention, from the retention loop.
TASKRUNS_DELETED = Counter(
    "durakube_taskruns_deleted_total",
    "Finished TaskRuns the operator deleted when their ttlSecondsAfterFinished ran out.",
    ["namespace"])
FINISHED_PODS_DELETED = Counter(
    "durakube_finished_pods_deleted_total",
    "Pods of finished runs' last attempts deleted after DURAKUBE_FINISHED_POD_SECONDS.",
    ["namespace"])
HISTORY_RUNS_DELETED = Counter(
    "durakube_history_runs_deleted_total",
    "Runs whose history (every row of the run in Postgres) was removed after its retention.")
HISTORY_ROWS_DELETED = Counter(
    "durakube_history_rows_deleted_total",
    "Rows removed from Postgres by age that belong to no run, by table (events, payloads, "
    "queue_keys).", ["table"])

# Queues, from the admission loop.
QUEUE_WAIT = Histogram("durakube_queue_wait_seconds", "From entering a queue's line to getting a slot.",
                       _QUEUE, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600))
QUEUE_RUNNING = Gauge("durakube_queue_running", "Slots in use (pods of running attempts).", _QUEUE)
QUEUE_WAITING = Gauge("durakube_queue_waiting", "Runs waiting for a slot.", _QUEUE)
QUEUE_SUSPENDED = Gauge("durakube_queue_suspended", "Runs of the queue suspended in a long wait.",
                        _QUEUE)
QUEUE_LIMIT = Gauge("durakube_queue_concurrency_limit", "The queue's limit (0 when paused).", _QUEUE)
POD_START_LATENCY = Histogram(
    "durakube_attempt_pod_created_seconds",
    "From the moment an attempt was due (TaskRun created, delay or back-off over) to its pod "
    "created, time in the queue's line included.",
    _QUEUE, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300))

# The controller's health.
LEADER = Gauge("durakube_operator_leader",
               "1 on the replica that holds the leader Lease (and reconciles), 0 on a standby.")
RECONCILES = Counter("durakube_reconciles_total", "Reconcile passes over a TaskRun, by its namespace.",
                     ["namespace"])
RECONCILE_ERRORS = Counter(
    "durakube_reconcile_errors_total",
    "Reconcile passes that raised (and are retried after a back-off), by the error's reason word.",
    ["namespace", "reason"])
RECONCILE_DURATION = Histogram("durakube_reconcile_duration_seconds", "How long one reconcile pass took.",
                               buckets=_CALL_BUCKETS)
WORKQUEUE_DEPTH = Gauge("durakube_workqueue_depth", "Run keys ready for a worker and not taken yet.")
WORKQUEUE_DELAYED = Gauge("durakube_workqueue_delayed",
                          "Run keys waiting for a deadline (a requeue, a back-off after an error).")
SWEEP_REPAIRS = Counter("durakube_sweep_repairs_total",
                        "Pods and TaskRuns whose change or deletion the watches missed and the "
                        "operator's re-list found.", ["kind"])
WORKQUEUE_WAIT = Histogram("durakube_workqueue_wait_seconds",
                           "How long a run key waited in the work queue, once ready, for a worker.",
                           ["priority"], buckets=_CALL_BUCKETS)
API_REQUESTS = Counter(
    "durakube_api_requests_total",
    "Calls to the Kubernetes API server, by verb, resource and status class (2xx, 4xx, 5xx; "
    "error when no answer came).", ["verb", "resource", "code"])
EVENTS_DROPPED = Counter("durakube_events_dropped_total",
                         "Kubernetes Events not recorded because too many were waiting to be sent.")
SCHEDULED_TIMES = Counter(
    "durakube_scheduled_times_total",
    "Scheduled times of TaskSchedules, by what became of them: created (a run), skipped "
    "(overlap), queued (QueueOne), missed (older than the catch-up window), refused (the API "
    "server refused the run).", ["namespace", "outcome"])
KEY_RINGS_CREATED = Counter("durakube_key_rings_created_total",
                            "Attempt key rings made (a Secret of attempt secrets each).")
KEY_RINGS_DELETED = Counter("durakube_key_rings_deleted_total",
                            "Attempt key rings deleted once spent.")
API_DURATION = Histogram("durakube_api_request_duration_seconds",
                         "How long one call to the Kubernetes API server took.", ["verb", "resource"],
                         buckets=_CALL_BUCKETS)
POSTGRES_QUERY_DURATION = Histogram(
    "durakube_postgres_query_duration_seconds",
    "How long one statement of the operator took in Postgres, by its kind.", ["statement"],
    buckets=_CALL_BUCKETS)
POSTGRES_ERRORS = Counter("durakube_postgres_errors_total",
                          "Statements of the operator that failed, by kind.", ["statement"])
POSTGRES_UP = Gauge("durakube_postgres_up",
                    "1 when this replica's last ping of Postgres was answered, 0 otherwise.")
WEBHOOK_REQUESTS = Counter("durakube_webhook_requests_total",
                           "Requests to the webhook server, by route and HTTP status.",
                           ["route", "code"])


def _version() -> str:
    try:
        return metadata.version("durakube-operator")
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(version=_version()).set(1)


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


# The statement kinds a label may take; anything else is "other".
_STATEMENTS = frozenset({"select", "insert", "update", "delete", "with", "begin", "commit", "rollback"})


def statement_kind(query: str) -> str:
    """The first keyword of a SQL statement, lower case, from a fixed set."""
    words = query.lstrip().split(None, 1)
    word = words[0].rstrip(";").lower() if words else ""
    return word if word in _STATEMENTS else "other"


def observe_query(record: Any) -> None:
    """An asyncpg query logger: times every statement of a connection it is added to."""
    kind = statement_kind(str(record.query))
    POSTGRES_QUERY_DURATION.labels(statement=kind).observe(record.elapsed)
    if record.exception is not None:
        POSTGRES_ERRORS.labels(statement=kind).inc()


def status_class(status: int | None) -> str:
    """An HTTP status as its class ("2xx"); "error" when no answer came."""
    return f"{status // 100}xx" if status else "error"

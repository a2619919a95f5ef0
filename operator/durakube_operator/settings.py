"""The operator's configuration, read once from the environment at start.

`from_environment()` is called once, by `main` (to fail fast); the replica hands
the result to the controller through kopf's memo. Each field is read
from DURAKUBE_ + its name in capitals unless an alias says otherwise; the secrets
(`database_url`, `migration_database_url`, `worker_database_url`, `webhook_secret`)
may instead come from the file named by the variable plus `_FILE` (as
DURAKUBE_DATABASE_URL_FILE). The parsing, the file variants and the error messages
live in `durakube.environment`.

Three Postgres logins (see `durakube.store.schema`, "Who may do what"): the
operator's at run time (a member of durakube_operator, or the owner in a simple
install), the owner's for migrations (default: the run-time one), and the
workers' (a member of durakube_worker), which goes to attempt pods only.

Every setting has a default that works in the local test bed; the Helm chart sets
them for a real cluster. Invalid values stop the operator at start with one clear
message naming the variables, instead of failing later. Reading the settings
touches nothing but the environment and those files.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic

from durakube import durations, environment
from durakube_operator import faults

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

SettingsError = environment.SettingsError

# What a retention setting says to keep for ever.
NEVER = "never"


def _never_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip().lower() == NEVER else value


def _duration_seconds(value: Any) -> Any:
    """"30d", "12h", "3600" as seconds; "never" as None."""
    value = _never_is_none(value)
    return durations.parse_duration(value) if isinstance(value, str) else value


# Whole seconds, or "never".
TtlSeconds = Annotated[Annotated[int, pydantic.Field(ge=0)] | None,
                       pydantic.BeforeValidator(_never_is_none)]
# A duration ("30d", "12h", or seconds), or "never".
RetentionSeconds = Annotated[Annotated[float, pydantic.Field(ge=0)] | None,
                             pydantic.BeforeValidator(_duration_seconds)]


class Settings(environment.Settings):
    # The operator's own login, at run time: DML on the tables, no DDL needed.
    database_url: str = pydantic.Field(min_length=1, repr=False)
    # The schema owner's login, used only to migrate (None: database_url migrates).
    migration_database_url: str | None = pydantic.Field(default=None, min_length=1, repr=False)
    # The login attempt pods get, in their namespace's attempt key rings: a member of durakube_worker,
    # which may only call the worker functions. None: worker pods get database_url, which
    # isolates nothing (the operator warns at start); for a one-team laptop only.
    worker_database_url: str | None = pydantic.Field(default=None, min_length=1, repr=False)
    # Namespaces to watch (comma-separated); empty means the whole cluster.
    namespaces: environment.Names = ()
    worker_uid: int = pydantic.Field(default=65532, ge=0)
    default_queue: str = "default"
    # The limit of a queue that runs name but no TaskQueue defines.
    default_concurrency_limit: int = pydantic.Field(default=100, ge=0)
    # How many runs are reconciled at once. A pass mostly waits (for the API server and
    # Postgres), so many passes overlap on one core.
    workers: int = pydantic.Field(default=32, ge=1)
    # The ceiling of Kubernetes API calls per second, and how many may go at once after a
    # quiet spell (None: twice the QPS). The controller-manager's --kube-api-qps and
    # --kube-api-burst are the same two knobs.
    api_qps: float = pydantic.Field(default=50.0, gt=0)
    api_burst: int | None = pydantic.Field(default=None, ge=1)
    # Kubernetes Events go out through a client and a rate limit of their own, off the
    # reconciler's path (as the controller-manager's event broadcaster does).
    event_qps: float = pydantic.Field(default=50.0, gt=0)
    event_burst: int | None = pydantic.Field(default=None, ge=1)
    # Every replica serves /metrics on the first, /healthz and /readyz on the second (0: off).
    metrics_port: int = pydantic.Field(default=8080, ge=0, le=65535)
    health_port: int = pydantic.Field(default=8081, ge=0, le=65535)
    # Webhooks for tokens and events (0: off), and a shared secret that, as a bearer token,
    # may send events into any namespace (besides Kubernetes tokens allowed to create
    # TaskEvents there; the chart generates one).
    webhook_port: int = pydantic.Field(default=8082, ge=0, le=65535)
    webhook_secret: str | None = pydantic.Field(default=None, repr=False)
    # Attempt secrets minted at once per namespace: one Secret (an attempt key ring) holds
    # this many, each pod reading its own (see durakube.store.keyrings).
    key_ring_size: int = pydantic.Field(default=64, ge=1, le=1024)
    # Seconds before the first attempt after a pod ended without an outcome (its worker
    # crashed, its node was lost): doubling with each such failure of the run, up to 30 s,
    # with jitter. 0 starts the next attempt at once (the resume-latency benchmark).
    infrastructure_retry_delay: float = pydantic.Field(default=1.0, ge=0, le=30)
    # How often a running attempt's progress (its completed steps, its metadata) is
    # mirrored to its TaskRun's status; ten times this, how often the operator re-lists
    # pods and TaskRuns to find what its watches missed (`sweep_seconds`).
    resync_seconds: float = pydantic.Field(default=30.0, gt=0)
    # Leader election on a Lease: only its holder reconciles. Off only when one replica
    # runs and nothing else ever could (a test, a laptop).
    leader_election: bool = True
    lease_name: str = "durakube-operator"
    # Where the Lease lives: the chart gives the pod's namespace; otherwise the service
    # account's namespace in a pod, else "default".
    lease_namespace: str = pydantic.Field(default_factory=lambda: _own_namespace())
    # The replica's name (the chart gives the pod's; otherwise the host's). Its identity on
    # the Lease adds a random suffix per process, as controller-runtime's does: a restarted
    # process never inherits leadership, it waits for the lease like any standby.
    pod_name: str = pydantic.Field(default_factory=socket.gethostname, min_length=1)
    lease_duration_seconds: float = pydantic.Field(default=15.0, gt=0)
    renew_deadline_seconds: float = pydantic.Field(default=10.0, gt=0)
    retry_period_seconds: float = pydantic.Field(default=2.0, gt=0)
    # How records are written (`durakube.logs`): plain lines or one JSON object per line
    # (also `durakube-operator --log-format`). Attempt pods get it as their default.
    log_format: Literal["plain", "json"] = "plain"
    # Retention (README, "Retention"). Seconds after a run finishes before its TaskRun is
    # deleted, when neither the run nor its Task sets spec.ttlSecondsAfterFinished; its
    # history stays in Postgres. "never" keeps finished TaskRuns.
    ttl_seconds_after_finished: TtlSeconds = 7 * 86400
    # How long a finished run's history (its rows in Postgres) is kept, when its Task sets
    # no spec.historyRetention; never removed while its TaskRun exists. At least the TTL.
    history_retention: RetentionSeconds = 30 * 86400.0
    # Seconds the pod of a finished run's last attempt is kept (for `kubectl logs`) before
    # it is deleted, when set; earlier attempts' pods are then deleted as soon as their
    # outcome is read. "never" (the default) keeps every attempt's pod until its TaskRun
    # goes (attempts' logs are stored in Postgres either way).
    finished_pod_seconds: TtlSeconds = None
    # Traces (README, "Traces"; `tracing`): the OTLP/HTTP endpoint's base URL (spans go to
    # <it>/v1/traces), by default the operator's own OTEL_EXPORTER_OTLP_ENDPOINT. With it
    # (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, a full URL) the operator exports each run's
    # span and attempt pods get the same endpoint. None: no traces.
    otlp_endpoint: str | None = pydantic.Field(
        default=None, min_length=1,
        validation_alias=pydantic.AliasChoices("DURAKUBE_OTLP_ENDPOINT",
                                               "OTEL_EXPORTER_OTLP_ENDPOINT"))
    otlp_traces_endpoint: str | None = pydantic.Field(
        default=None, min_length=1,
        validation_alias=pydantic.AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    # The share of runs traced among those whose creator passed no trace context (those
    # that did follow its sampled flag), decided by the run's trace id.
    trace_sample_ratio: float = pydantic.Field(default=1.0, ge=0, le=1)
    # Fault points where the process ends at once (`durakube_operator.faults`), for tests
    # of crashes at commit points: "<point>" or "<point>@<namespace prefix>", comma-
    # separated. Empty (the default) arms none.
    fault_points: environment.Names = ()

    @pydantic.field_validator("fault_points")
    @classmethod
    def _known_fault_points(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        faults.parse(value)  # UnknownFaultPoint is a ValueError: the setting is named
        return value

    @property
    def migrating_database_url(self) -> str:
        """The login that runs the migrations."""
        return self.migration_database_url or self.database_url

    @property
    def attempt_database_url(self) -> str:
        """The login attempt pods get."""
        return self.worker_database_url or self.database_url

    @property
    def sweep_seconds(self) -> float:
        """How often pods and TaskRuns are re-listed, and the longest a cached TaskRun,
        Task or TaskQueue is trusted (`caching`, `sweeping`)."""
        return 10 * self.resync_seconds

    @property
    def tracing(self) -> bool:
        """Whether runs are traced: an OTLP endpoint is configured."""
        return bool(self.otlp_endpoint or self.otlp_traces_endpoint)


def _own_namespace() -> str:
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def from_environment() -> Settings:
    """The settings from os.environ; SettingsError names every variable at fault."""
    settings = Settings.from_environ()
    if not (settings.retry_period_seconds < settings.renew_deadline_seconds
            < settings.lease_duration_seconds):
        raise SettingsError(
            "DURAKUBE_RETRY_PERIOD_SECONDS < DURAKUBE_RENEW_DEADLINE_SECONDS < "
            "DURAKUBE_LEASE_DURATION_SECONDS must hold, so a leader stops before a standby may "
            f"take over; got {settings.retry_period_seconds}, {settings.renew_deadline_seconds}, "
            f"{settings.lease_duration_seconds}")
    check_retention(settings)
    return settings


def check_retention(settings: Settings) -> None:
    """Refuses a history kept for less time than the finished TaskRuns it describes."""
    ttl, history = settings.ttl_seconds_after_finished, settings.history_retention
    if ttl is not None and history is not None and history < ttl:
        raise SettingsError(
            f"DURAKUBE_HISTORY_RETENTION ({durations.format_duration(history) or '0s'}) must be "
            f"at least DURAKUBE_TTL_SECONDS_AFTER_FINISHED ({ttl} s, "
            f"{durations.format_duration(ttl) or '0s'}): a run's history in Postgres must "
            "outlive its TaskRun; raise the retention, lower the TTL, or set either to \"never\"")

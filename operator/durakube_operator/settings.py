"""The operator's configuration, read once from the environment at start.

Every setting has a default that works in the local test bed; the Helm chart sets
them for a real cluster. Invalid values stop the operator at start with a clear
message instead of failing later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    # Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = ()
    # The Secret (in each run's namespace) that gives worker pods the Postgres DSN.
    database_secret_name: str = "durakube-database"
    database_secret_key: str = "url"
    # Create that Secret in a run's namespace when it is missing.
    manage_database_secret: bool = True
    worker_uid: int = 65532
    default_queue: str = "default"
    # The limit of a queue that runs name but no TaskQueue defines.
    default_concurrency_limit: int = 100
    # How many runs are reconciled at once, and the ceiling of API calls per second.
    workers: int = 8
    api_qps: float = 50.0
    metrics_port: int = 8080
    liveness_port: int = 8081
    # Webhooks for tokens and events (0: off), and the bearer secret events need.
    webhook_port: int = 8082
    webhook_secret: str | None = None
    # Longest a run waits before its state is looked at again without any event.
    resync_seconds: float = 30.0


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def from_environment() -> Settings:
    database_url = os.environ.get("DURAKUBE_DATABASE_URL", "")
    if not database_url:
        raise SettingsError("DURAKUBE_DATABASE_URL is not set: the operator needs Postgres")
    namespaces = tuple(n.strip() for n in os.environ.get("DURAKUBE_NAMESPACES", "").split(",") if n.strip())
    settings = Settings(
        database_url=database_url,
        namespaces=namespaces,
        database_secret_name=os.environ.get("DURAKUBE_DATABASE_SECRET", "durakube-database"),
        database_secret_key=os.environ.get("DURAKUBE_DATABASE_SECRET_KEY", "url"),
        manage_database_secret=_bool("DURAKUBE_MANAGE_DATABASE_SECRET", True),
        worker_uid=_int("DURAKUBE_WORKER_UID", 65532),
        default_queue=os.environ.get("DURAKUBE_DEFAULT_QUEUE", "default"),
        default_concurrency_limit=_int("DURAKUBE_DEFAULT_CONCURRENCY_LIMIT", 100),
        workers=_int("DURAKUBE_WORKERS", 8),
        api_qps=_float("DURAKUBE_API_QPS", 50.0),
        metrics_port=_int("DURAKUBE_METRICS_PORT", 8080),
        liveness_port=_int("DURAKUBE_LIVENESS_PORT", 8081),
        webhook_port=_int("DURAKUBE_WEBHOOK_PORT", 8082),
        webhook_secret=os.environ.get("DURAKUBE_WEBHOOK_SECRET") or None,
        resync_seconds=_float("DURAKUBE_RESYNC_SECONDS", 30.0),
    )
    if settings.workers < 1:
        raise SettingsError("DURAKUBE_WORKERS must be at least 1")
    if settings.api_qps <= 0:
        raise SettingsError("DURAKUBE_API_QPS must be positive")
    return settings

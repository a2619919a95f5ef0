"""The operator's configuration, read once from the environment at start.

`from_environment()` is called by `main` (to fail fast) and by kopf's start-up
handler; the reconciler reads the result as `ctx.settings`. Each field is read
from DURAKUBE_ + its name in capitals unless an alias says otherwise; the secrets
(`database_url`, `webhook_secret`) may instead come from the file named by
DURAKUBE_DATABASE_URL_FILE or DURAKUBE_WEBHOOK_SECRET_FILE. The parsing, the
file variants and the error messages live in `durakube.environment`.

Every setting has a default that works in the local test bed; the Helm chart sets
them for a real cluster. Invalid values stop the operator at start with one clear
message naming the variables, instead of failing later. Reading the settings
touches nothing but the environment and those files.
"""

from __future__ import annotations

import pydantic

from durakube import environment

SettingsError = environment.SettingsError


class Settings(environment.Settings):
    database_url: str = pydantic.Field(min_length=1, repr=False)
    # Namespaces to watch (comma-separated); empty means the whole cluster.
    namespaces: environment.Names = ()
    # The Secret (in each run's namespace) that gives worker pods the Postgres DSN.
    database_secret_name: str = pydantic.Field(
        default="durakube-database", validation_alias="DURAKUBE_DATABASE_SECRET")
    database_secret_key: str = "url"
    # Create that Secret in a run's namespace when it is missing.
    manage_database_secret: bool = True
    worker_uid: int = pydantic.Field(default=65532, ge=0)
    default_queue: str = "default"
    # The limit of a queue that runs name but no TaskQueue defines.
    default_concurrency_limit: int = pydantic.Field(default=100, ge=0)
    # How many runs are reconciled at once.
    workers: int = pydantic.Field(default=8, ge=1)
    # The ceiling of Kubernetes API calls per second, and how many may go at once after a
    # quiet spell (None: twice the QPS). The controller-manager's --kube-api-qps and
    # --kube-api-burst are the same two knobs.
    api_qps: float = pydantic.Field(default=50.0, gt=0)
    api_burst: int | None = pydantic.Field(default=None, ge=1)
    metrics_port: int = pydantic.Field(default=8080, ge=0, le=65535)
    liveness_port: int = pydantic.Field(default=8081, ge=0, le=65535)
    # Webhooks for tokens and events (0: off), and the bearer secret events need.
    webhook_port: int = pydantic.Field(default=8082, ge=0, le=65535)
    webhook_secret: str | None = pydantic.Field(default=None, repr=False)
    # Longest a run waits before its state is looked at again without any event.
    resync_seconds: float = pydantic.Field(default=30.0, gt=0)


def from_environment() -> Settings:
    """The settings from os.environ; SettingsError names every variable at fault."""
    return Settings.from_environ()

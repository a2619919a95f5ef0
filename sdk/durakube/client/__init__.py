"""The Durakube client: submit runs of tasks, wait for them, and manage them.

    from durakube.client import Client

    with Client(database_url=dsn) as client:
        output = client.trigger_and_wait(process_document, {"documentId": "q3"}, timeout=120)

`AsyncClient` is the asyncio twin. Modules, top down: `clients` (the two
clients, the public face), `submitting` (creating runs), `watching` (waiting for
them), `managing` (reading, listing, cancelling, replaying; steps, outputs, logs,
events), `sessions` (what one client's calls share), `history` (the Postgres
reads and their merge with live TaskRuns), `kubeapi` (the Kubernetes calls, on
`kubernetes.aio`), `handles` (what the client returns), `manifests` (TaskRun and
Task bodies; pure), `failures` (the errors). The `durakube` CLI (`durakube.cli`)
is built on `Client`.
"""

from durakube.client.clients import AsyncClient, BatchItem, Client, ProgressCallback, RunRef
from durakube.client.failures import (
    CannotFork,
    DatabaseNotConfigured,
    DatabaseUnreachable,
    NotSupported,
    PermissionDenied,
    RunFailed,
    RunNotFinished,
    RunWaitTimedOut,
    TaskRunNotFound,
    UnknownTask,
    UnregisteredFunction,
)
from durakube.client.handles import (
    AttemptLog,
    EventDelivery,
    RunHandle,
    RunSummary,
    ScheduleSummary,
    StepSummary,
    TriggerRequest,
)

__all__ = [
    "AsyncClient",
    "AttemptLog",
    "BatchItem",
    "CannotFork",
    "Client",
    "DatabaseNotConfigured",
    "DatabaseUnreachable",
    "EventDelivery",
    "NotSupported",
    "PermissionDenied",
    "ProgressCallback",
    "RunFailed",
    "RunHandle",
    "RunNotFinished",
    "RunRef",
    "RunSummary",
    "RunWaitTimedOut",
    "ScheduleSummary",
    "StepSummary",
    "TaskRunNotFound",
    "TriggerRequest",
    "UnknownTask",
    "UnregisteredFunction",
]

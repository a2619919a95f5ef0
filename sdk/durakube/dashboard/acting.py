"""The dashboard's actions on runs, each one Kubernetes API request as the user.

- cancel: a patch of the TaskRun (`spec.cancel: true`), as `durakube cancel` does;
- replay: a new TaskRun of the same task and payload, as `durakube replay` does;
- send an event: a TaskEvent with the key and data, in the run's namespace;
- complete a token: a TaskEvent with the run's open token and the data.

Every one is a request of the user's own credentials, so Kubernetes RBAC (verbs
`patch` and `create` on `taskruns`, `create` on `taskevents`) decides, and a
refusal is the API's 403, raised as `failures.PermissionDenied` with the RBAC
message for the page to show. Events and tokens go through a TaskEvent rather
than straight into Postgres (as the client's `send_event` does) for that reason:
the operator delivers them. The token of a wait is read from Postgres on the
server and put in the TaskEvent; it never reaches the browser (those who may read
TaskEvents of the namespace see it there, spent once the operator delivered it).

Called by `serving`; reads only what an action needs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from durakube import errors, resources
from durakube.client import AsyncClient
from durakube.dashboard import database

# How long an action waits for the operator to report a TaskEvent's delivery.
DELIVERY_WAIT_SECONDS = 5.0
TASKEVENT_NAME_PREFIX = "dashboard-"


class ActionRefused(errors.DurakubeError):
    """The action cannot be done as asked (bad data, nothing to complete)."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(f"cannot {action}: {reason}")
        self.action = action
        self.reason = reason


@dataclass(frozen=True)
class Done:
    """What an action did, in a sentence for the page; `link` a page to go to."""

    message: str
    link: str | None = None


async def cancel(client: AsyncClient, namespace: str, name: str) -> Done:
    summary = await client.cancel(f"{namespace}/{name}")
    return Done(f"Cancel requested for {summary.name}: the operator stops its pod and ends "
                "the run Canceled.")


async def replay(client: AsyncClient, namespace: str, name: str) -> Done:
    handle = await client.replay(f"{namespace}/{name}")
    return Done(f"Replayed as {handle.name}.", link=f"/runs/{handle.namespace}/{handle.name}")


async def send_event(client: AsyncClient, namespace: str, key: str, data: Any) -> Done:
    """Creates a TaskEvent for the runs of `namespace` waiting on `key`."""
    if not key:
        raise ActionRefused("send the event", "give its key")
    spec = resources.TaskEventSpec(key=key, data=_object(data, "send the event"))
    status = await _create_taskevent(client, namespace, spec)
    return Done(f"Event {key!r}: {_delivery(status)}")


async def complete_token(client: AsyncClient, namespace: str, name: str, data: Any) -> Done:
    """Completes the run's open token wait with `data`, through a TaskEvent."""
    summary = await client.get(f"{namespace}/{name}")  # the user may read the run
    db = await client.session.database("completing a token")
    token = await database.open_token(db, summary.run_id)
    if token is None:
        raise ActionRefused("complete the token", f"run {name} waits for no token now")
    spec = resources.TaskEventSpec(token=token, data=_object(data, "complete the token"))
    status = await _create_taskevent(client, namespace, spec)
    return Done(f"Token {database.token_prefix(token)}…: {_delivery(status)}")


async def _create_taskevent(client: AsyncClient, namespace: str,
                            spec: resources.TaskEventSpec) -> dict[str, Any]:
    """Creates the TaskEvent, then waits briefly for the operator's delivery status."""
    api = client.session.api
    body = {"apiVersion": resources.API_VERSION, "kind": "TaskEvent",
            "metadata": {"generateName": TASKEVENT_NAME_PREFIX},
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True)}
    created = await api.create_taskevent(namespace, body)
    name = created["metadata"]["name"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DELIVERY_WAIT_SECONDS
    while loop.time() < deadline:
        found = await api.get_taskevent(namespace, name)
        status = (found or {}).get("status") or {}
        if status.get("phase"):
            return dict(status)
        await asyncio.sleep(0.25)
    return {}


def _delivery(status: dict[str, Any]) -> str:
    phase = status.get("phase")
    if not phase:
        return "created; the operator delivers it shortly."
    message = status.get("message") or ""
    return f"{phase.lower()}{f' ({message})' if message else ''}."


def _object(data: Any, action: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ActionRefused(action, "the data must be a JSON object, e.g. {\"approved\": true}")
    return data

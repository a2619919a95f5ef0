"""What the node knows about each container instance: its state, last state,
restart count and identity, in the shape of the API's ContainerStatus.

Data only. `running` updates these records as processes start and exit;
`statuses` derives the pod status from them; `from_api` rebuilds them from a
pod's existing status when an agent restarts.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from devcluster.node import images, reasons, times

Json = dict[str, Any]


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: datetime.datetime


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: datetime.datetime | None
    finished_at: datetime.datetime
    container_id: str = ""
    message: str = ""


State = Waiting | Running | Terminated


@dataclass
class ContainerRecord:
    name: str
    image: str
    state: State = field(default_factory=lambda: Waiting(reasons.CONTAINER_CREATING))
    last_state: Terminated | None = None
    restart_count: int = 0
    container_id: str = ""
    ready: bool = False
    # Whether the previous agent's records said this container had ever started.
    instances_started: int = 0

    @property
    def image_id(self) -> str:
        """As a kubelet reports an image pulled from a registry: the repository and a
        digest of the content (here, of the image's name)."""
        return f"{images.strip_tag(self.image)}@sha256:{hashlib.sha256(self.image.encode()).hexdigest()}"

    @property
    def running(self) -> bool:
        return isinstance(self.state, Running)

    @property
    def succeeded(self) -> bool:
        return isinstance(self.state, Terminated) and self.state.exit_code == 0


def state_to_api(state: State) -> Json:
    if isinstance(state, Waiting):
        waiting: Json = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if isinstance(state, Running):
        return {"running": {"startedAt": times.format_time(state.started_at)}}
    terminated: Json = {"exitCode": state.exit_code, "reason": state.reason,
                        "finishedAt": times.format_time(state.finished_at)}
    if state.started_at is not None:
        terminated["startedAt"] = times.format_time(state.started_at)
    if state.container_id:
        terminated["containerID"] = state.container_id
    if state.message:
        terminated["message"] = state.message
    return {"terminated": terminated}


def to_api(record: ContainerRecord, *, init: bool = False) -> Json:
    status: Json = {
        "name": record.name,
        "image": record.image,
        "imageID": record.image_id,
        "ready": record.succeeded if init else record.ready and record.running,
        "started": False if init else record.running,
        "restartCount": record.restart_count,
        "state": state_to_api(record.state),
        "lastState": state_to_api(record.last_state) if record.last_state else {},
    }
    if record.container_id:
        status["containerID"] = record.container_id
    return status


def _parse_optional_time(text: str | None) -> datetime.datetime | None:
    return times.parse_time(text) if text else None


def from_api(status: Json, now: datetime.datetime) -> ContainerRecord:
    """A record rebuilt from an existing ContainerStatus after an agent restart: a
    container the API shows running has no process any more (it died with the
    previous agent), so it is reported terminated with ContainerStatusUnknown."""
    record = ContainerRecord(status["name"], status.get("image", ""),
                             restart_count=int(status.get("restartCount", 0)),
                             container_id=status.get("containerID", ""))
    last = (status.get("lastState") or {}).get("terminated")
    if last:
        record.last_state = Terminated(
            int(last.get("exitCode", 0)), last.get("reason", ""),
            _parse_optional_time(last.get("startedAt")),
            _parse_optional_time(last.get("finishedAt")) or now, last.get("containerID", ""),
            last.get("message", ""))
    state = status.get("state") or {}
    if "running" in state:
        record.state = Terminated(137, reasons.CONTAINER_STATUS_UNKNOWN,
                                  _parse_optional_time(state["running"].get("startedAt")), now,
                                  record.container_id, reasons.CONTAINER_STATUS_UNKNOWN_MESSAGE)
        record.instances_started = record.restart_count + 1
    elif "terminated" in state:
        done = state["terminated"]
        record.state = Terminated(
            int(done.get("exitCode", 0)), done.get("reason", ""),
            _parse_optional_time(done.get("startedAt")),
            _parse_optional_time(done.get("finishedAt")) or now, done.get("containerID", ""),
            done.get("message", ""))
        record.instances_started = record.restart_count + 1
    elif record.last_state is not None:
        record.instances_started = record.restart_count + 1
    return record

"""Pod status derived from observed container records, by the kubelet's rules.

Pure functions: given the pod spec, the records of its init and regular
containers and the pod-level facts (start time, whether the pod is terminal and
why), they produce the `status` a pods/status patch carries. Unit-tested
without a cluster.

Called by `running`; must not perform I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from devcluster.node import containers, reasons, times

Json = dict[str, Any]
NODE_IP = "127.0.0.1"


@dataclass
class PodFacts:
    """Pod-level observations that are not in any single container."""

    start_time: datetime.datetime
    # No container of the pod will be started again (deleted, deadline, finished).
    terminal: bool = False
    reason: str | None = None
    message: str | None = None
    volumes_ready: bool = False


def compute_phase(restart_policy: str, init: Sequence[containers.ContainerRecord],
                  main: Sequence[containers.ContainerRecord], *, terminal: bool = False,
                  reason: str | None = None) -> str:
    """The pod phase, as kubelet's getPhase computes it."""
    if reason == reasons.DEADLINE_EXCEEDED:
        return "Failed"
    pending_init = failed_init = 0
    for record in init:
        state = record.state
        if isinstance(state, containers.Terminated):
            failed_init += state.exit_code != 0
        elif isinstance(state, containers.Waiting) and record.last_state is not None:
            failed_init += record.last_state.exit_code != 0
        else:
            pending_init += 1
    if failed_init and (restart_policy == "Never" or terminal):
        return "Failed"
    if pending_init or failed_init:
        return "Failed" if terminal else "Pending"
    waiting = running = stopped = succeeded = 0
    for record in main:
        state = record.state
        if isinstance(state, containers.Running):
            running += 1
        elif isinstance(state, containers.Terminated):
            stopped += 1
            succeeded += state.exit_code == 0
        elif record.last_state is not None:
            stopped += 1
        else:
            waiting += 1
    if terminal:
        return "Succeeded" if main and succeeded == len(main) else "Failed"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, reason: str | None = None,
               message: str | None = None) -> Json:
    # Explicit nulls: a strategic merge patch would otherwise keep stale values.
    return {"type": kind, "status": "True" if ok else "False",
            "reason": reason if not ok and reason else None,
            "message": message if not ok and message else None}


def build_conditions(spec: Json, init: Sequence[containers.ContainerRecord],
                     main: Sequence[containers.ContainerRecord], phase: str,
                     facts: PodFacts) -> list[Json]:
    """PodReadyToStartContainers, Initialized, ContainersReady and Ready (the
    scheduler owns PodScheduled)."""
    del spec
    incomplete = [r.name for r in init if not r.succeeded]
    initialized = not incomplete or phase in ("Running", "Succeeded")
    unready = [r.name for r in main if not (r.ready and r.running)]
    completed = phase == "Succeeded"
    ready_reason = reasons.POD_COMPLETED if completed else reasons.CONTAINERS_NOT_READY
    ready_message = None if completed else f"containers with unready status: [{' '.join(unready)}]"
    return [
        _condition("PodReadyToStartContainers", facts.volumes_ready and not facts.terminal),
        _condition("Initialized", initialized, reasons.CONTAINERS_NOT_INITIALIZED,
                   f"containers with incomplete status: [{' '.join(incomplete)}]"),
        _condition("ContainersReady", not unready, ready_reason, ready_message),
        _condition("Ready", not unready, ready_reason, ready_message),
    ]


def carry_transition_times(conditions: list[Json], previous: Sequence[Json],
                           now: datetime.datetime) -> list[Json]:
    """Sets lastTransitionTime: kept from `previous` when the status is unchanged."""
    before = {c.get("type"): c for c in previous}
    for condition in conditions:
        old = before.get(condition["type"])
        if old is not None and old.get("status") == condition["status"] and \
                old.get("lastTransitionTime"):
            condition["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            condition["lastTransitionTime"] = times.format_time(now)
        condition["lastProbeTime"] = None
    return conditions


def build_pod_status(pod: Json, init: Sequence[containers.ContainerRecord],
                     main: Sequence[containers.ContainerRecord], facts: PodFacts,
                     now: datetime.datetime) -> Json:
    """The whole status the node reports for `pod` (for a strategic merge patch:
    conditions merge by type, container status lists are replaced)."""
    spec = pod["spec"]
    phase = compute_phase(spec.get("restartPolicy", "Always"), init, main,
                          terminal=facts.terminal, reason=facts.reason)
    conditions = build_conditions(spec, init, main, phase, facts)
    previous = (pod.get("status") or {}).get("conditions") or []
    status: Json = {
        "phase": phase,
        "conditions": carry_transition_times(conditions, previous, now),
        "hostIP": NODE_IP,
        "hostIPs": [{"ip": NODE_IP}],
        "podIP": NODE_IP,
        "podIPs": [{"ip": NODE_IP}],
        "startTime": times.format_time(facts.start_time),
        "containerStatuses": [containers.to_api(r) for r in main],
        "reason": facts.reason,
        "message": facts.message,
    }
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [containers.to_api(r, init=True) for r in init]
    return status


def status_digest(status: Json) -> Json:
    """The status without transition times, to tell whether a patch would change
    anything."""
    return {**status, "conditions": [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions", [])]}

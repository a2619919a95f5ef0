"""Fault points: named places where a test can make the operator die at once.

Every commit point of the operator must survive a crash: whatever a pass wrote
before dying is finished by the next leader, nothing is done twice. The tests
prove it by ending the process exactly there, not by sleeping and hoping. A point
is armed by the DURAKUBE_FAULT_POINTS setting (`settings.fault_points`), read once
at start (`arm`): each entry is a point's name, alone (any namespace) or followed
by `@` and a namespace prefix (only for objects in namespaces whose name starts
with it), as in `pod-created@faults-,child-created@faults-`.

Off by default: with nothing armed, `reach` is one test of an empty dict. At an
armed point the process logs one line and ends with `os._exit` (no clean-up, the
Lease is not given back), as a SIGKILL or an OOM kill would end it.

Called at the points themselves (`acting`, `admitting`, `children`, `waking`);
imports nothing of the operator.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

logger = logging.getLogger(__name__)

# Each point, and what is true of the cluster and Postgres when the process dies there.
POINTS = {
    "attempt-recorded": "the attempt and its secret's hash are in Postgres; no pod exists yet",
    "pod-created": "the attempt's pod exists; the TaskRun's status does not name it yet",
    "slot-granted": "an admission pass granted slots in Postgres; no pod started for them yet",
    "child-created": "a child's TaskRun exists; its request is not marked submitted yet",
    "run-woken": "a run's wait ended (a timer fired, an event came) and it was marked "
                 "resumed; its pass may not have started its pod yet",
}

# The exit code of a process ended at a fault point.
EXIT_CODE = 86

# Armed points: name -> namespace prefixes ("" matches every namespace).
_armed: dict[str, tuple[str, ...]] = {}


class UnknownFaultPoint(ValueError):
    """An entry names no point of `POINTS`."""


def parse(entries: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """`["pod-created@faults-", "run-woken"]` -> {point: namespace prefixes}."""
    armed: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        point, _, prefix = entry.strip().partition("@")
        if point not in POINTS:
            raise UnknownFaultPoint(
                f"unknown fault point {point!r}; known: {', '.join(sorted(POINTS))}")
        armed[point] = (*armed.get(point, ()), prefix)
    return armed


def arm(entries: Iterable[str]) -> None:
    """Arms the points named (replacing what was armed); called once, at start."""
    global _armed
    _armed = parse(entries)
    if _armed:
        logger.warning("fault points armed (the process will end at them): %s",
                       ", ".join(f"{point}@{'|'.join(p) or '*'}" for point, p in _armed.items()))


def armed(point: str, namespace: str) -> bool:
    """Whether reaching `point` for an object of `namespace` ends the process."""
    prefixes = _armed.get(point)
    return prefixes is not None and any(namespace.startswith(prefix) for prefix in prefixes)


def reach(point: str, namespace: str) -> None:
    """Ends the process at once if `point` is armed for `namespace`; else returns."""
    if _armed and armed(point, namespace):
        logger.critical("fault point %s reached in namespace %s: exiting now", point, namespace)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE)

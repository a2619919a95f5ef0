"""Compensations (sagas) end to end: a run that fails for good runs the undos of its
completed steps, newest first, exactly once, in attempts of compensation mode.

tasks/booking.py books a hotel and a flight, then fails permanently booking a car.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from helpers import (
    InstalledOperator,
    create,
    effects,
    event_reasons,
    get_taskrun,
    run_manifest,
    wait_for_phase,
)
from test_taskrun_lifecycle import condition, task_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

BOOKED = {"reserve-hotel": 1, "reserve-flight": 1, "reserve-car": 1}
COMPENSATED = {"cancel-flight": 1, "cancel-flight:flight-Oslo": 1,
               # The hotel's cancellation ran after the flight's: newest first.
               "cancel-hotel-after-1-flight-cancellations": 1, "cancel-hotel:hotel-Oslo": 1}


def book_trip(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str,
              **payload: Any) -> str:
    create(custom, namespace, task_manifest("book-trip", "book-trip", modules=["booking"]),
           run_manifest(name, "book-trip", {"city": "Oslo", **payload}))
    return str(get_taskrun(custom, namespace, name)["metadata"]["uid"])


def assert_failed_with_its_own_error(run: dict[str, Any]) -> None:
    status = run["status"]
    assert status["phase"] == "Failed", status
    assert condition(run)["status"] == "False"
    assert "no car left in Oslo" in condition(run)["message"]
    assert "2 of 2 compensation(s) ran" in condition(run)["message"]
    assert "no car left in Oslo" in status["lastError"]["message"]
    assert status["compensation"]["state"] == "Completed"
    assert (status["compensation"]["completed"], status["compensation"]["total"]) == (2, 2)
    assert status["compensation"]["endPhase"] == "Failed"


def test_a_failed_run_compensates_its_completed_steps_newest_first_once(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api, operator: InstalledOperator) -> None:
    run_id = book_trip(custom, namespace, "trip-1")
    run = wait_for_phase(custom, namespace, "trip-1", {"Succeeded", "Failed", "TimedOut"})
    assert_failed_with_its_own_error(run)
    # One attempt of the task, one in compensation mode.
    assert run["status"]["attempt"] == 2 and run["status"]["compensation"]["attempts"] == 1
    assert effects(operator.database_url, run_id) == {**BOOKED, **COMPENSATED}
    assert "Compensating" in event_reasons(core, namespace, "trip-1", "Compensating", "PermanentError")


def test_a_worker_killed_while_compensating_resumes_without_compensating_twice(
        namespace: str, custom: kubernetes.client.CustomObjectsApi,
        operator: InstalledOperator) -> None:
    run_id = book_trip(custom, namespace, "trip-2", kill_while_compensating=True)
    run = wait_for_phase(custom, namespace, "trip-2", {"Succeeded", "Failed", "TimedOut"})
    assert_failed_with_its_own_error(run)
    # The task's attempt, the compensating attempt killed after the flight's cancellation,
    # and the one that cancelled the hotel only.
    assert run["status"]["attempt"] == 3 and run["status"]["compensation"]["attempts"] == 2
    assert effects(operator.database_url, run_id) == {**BOOKED, **COMPENSATED, "killed": 1}

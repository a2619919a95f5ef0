"""The decisions of the compensation phase (sagas), without a cluster.

A run that fails for good (a permanent error, retries or the infrastructure budget
used up, timed out on its last attempt) with recorded compensations enters
Compensating instead of ending; attempts in compensation mode run them, each holding
a slot only while its pod runs; then the run ends as it failed, its error kept.
A retry, a success and a cancel never compensate. Same table as `test_run_decisions`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from test_run_decisions import (
    ADMITTED,
    IN_LINE,
    NOT_IN_LINE,
    NOW,
    RUNNING,
    Case,
    ended,
    message_has,
    observation,
    outcome,
    pod,
    status,
)

from durakube import resources
from durakube.store import compensations
from durakube_operator import actions, deciding

TWO_PENDING = compensations.Summary(total=2, completed=0, failing=0)
ONE_LEFT_FAILING = compensations.Summary(total=2, completed=1, failing=1)
ALL_DONE = compensations.Summary(total=2, completed=2, failing=0)
FAILED_OUTCOME = outcome("failed", error={"type": "ValueError", "message": "no room"})

Check = Callable[[resources.TaskRunStatus, deciding.Decision], None]


def compensating(state: str, attempts: int = 0, **changes: Any) -> dict[str, Any]:
    """The status of a run compensating after a permanent ValueError on attempt 1."""
    return status(RUNNING, **{
        "phase": "Compensating",
        "lastError": {"type": "ValueError", "message": "no room", "retryable": False},
        "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Compensating",
                        "message": "Failed: ValueError: no room; running 2 compensation(s)",
                        "lastTransitionTime": "2026-03-01T11:59:40Z"}],
        "compensation": {"state": state, "endPhase": "Failed", "reason": "Failed",
                         "message": "ValueError: no room", "total": 2, "attempts": attempts},
        **changes})


RUNNING_COMPENSATION = compensating("Running", attempts=1, attempt=2, podName="report-2")


def compensation(**expected: Any) -> Check:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        assert after.compensation is not None
        got = after.compensation.model_dump()
        for name, value in expected.items():
            assert got[name] == value, (name, got[name])
    return check


def all_of(*checks: Check) -> Check:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        for each in checks:
            each(after, decision)
    return check


def not_finished(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
    assert after.completion_time is None


def original_error_kept(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
    assert after.last_error is not None
    assert (after.last_error.type, after.last_error.message) == ("ValueError", "no room")


def compensation_pod_started(attempt: int) -> Check:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        start = next(a for a in decision.actions if isinstance(a, actions.StartAttempt))
        assert start.attempt == attempt == after.attempt and after.pod_name == f"report-{attempt}"
        env = start.pod["spec"]["containers"][0]["env"]
        assert {"name": "DURAKUBE_COMPENSATING", "value": "true"} in env
    return check


def backoff_between(low: float, high: float) -> Check:
    def check(after: resources.TaskRunStatus, decision: deciding.Decision) -> None:
        assert after.next_attempt_at is not None
        assert low <= (after.next_attempt_at - NOW).total_seconds() <= high
    return check


CASES = [
    # Entering the phase: only a failure for good with compensations pending.
    Case("a-permanent-failure-with-compensations-compensates", status=status(RUNNING),
         seen={"pod": pod("Failed"), "outcome": FAILED_OUTCOME,
               "compensation_summary": TWO_PENDING},
         phase="Compensating", reason="Compensating", actions=("ReleaseSlot", "MirrorPhase"),
         requeue=0.0, check=all_of(
             compensation(state="Waiting", end_phase="Failed", reason="Failed", total=2,
                          completed=0, attempts=0),
             message_has("running 2 compensation(s), newest first"), not_finished,
             original_error_kept)),
    Case("a-permanent-failure-without-compensations-fails", status=status(RUNNING),
         seen={"pod": pod("Failed"), "outcome": FAILED_OUTCOME},
         phase="Failed", reason="Failed", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0),
    Case("a-failure-whose-compensations-all-ran-fails", status=status(RUNNING),
         seen={"pod": pod("Failed"), "outcome": FAILED_OUTCOME, "compensation_summary": ALL_DONE},
         phase="Failed", reason="Failed", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0),
    Case("a-retry-within-the-budget-does-not-compensate", status=status(RUNNING),
         seen={"pod": pod("Failed"), "compensation_summary": TWO_PENDING,
               "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="BackingOff", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0),
    Case("retries-exhausted-compensates", status=status(RUNNING, attempt=3, podName="report-3"),
         seen={"pod": pod("Failed", "report-3"), "compensation_summary": TWO_PENDING,
               "outcome": outcome("retry", error={"type": "E", "message": "m"})},
         phase="Compensating", reason="Compensating", actions=("ReleaseSlot", "MirrorPhase"),
         requeue=0.0, check=compensation(end_phase="Failed", reason="RetriesExhausted")),
    Case("the-last-attempt-timed-out-compensates",
         status=status(RUNNING, attempt=3, podName="report-3"),
         seen={"pod": pod("Failed", "report-3", reason="DeadlineExceeded"),
               "compensation_summary": TWO_PENDING},
         phase="Compensating", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         check=compensation(end_phase="TimedOut", reason="TimedOut")),
    Case("infrastructure-budget-used-up-compensates",
         status=status(RUNNING, infrastructureFailures=3),
         task_spec="infrastructureRetries: 3", seen={"pod": ended(),
                                                      "compensation_summary": TWO_PENDING},
         phase="Compensating", actions=("ReleaseSlot", "SaveLogTail", "MirrorPhase"), requeue=0.0,
         check=compensation(end_phase="Failed", reason="InfrastructureFailed")),
    Case("a-success-never-compensates", status=status(RUNNING),
         seen={"pod": pod("Succeeded"), "outcome": outcome("succeeded", output={"ok": True}),
               "compensation_summary": TWO_PENDING},
         phase="Succeeded", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0),
    Case("a-cancel-while-compensating-stops-its-pod", status=RUNNING_COMPENSATION,
         spec="cancel: true", seen={"pod": pod("Running", "report-2")}, phase="Compensating",
         actions=("DeletePod",), requeue=1.0),
    Case("a-cancel-while-compensating-cancels-once-the-pod-is-gone",
         status=compensating("Waiting", attempts=1), spec="cancel: true",
         phase="Canceled", reason="Canceled", actions=("ReleaseSlot", "MirrorPhase")),

    # Waiting: a slot first, as any attempt.
    Case("compensating-joins-the-line", status=compensating("Waiting"),
         seen={"place": NOT_IN_LINE}, phase="Compensating", actions=("Enqueue",)),
    Case("compensating-in-line-shows-its-place-in-its-own-phase", status=compensating("Waiting"),
         seen={"place": IN_LINE}, phase="Compensating", reason="Compensating",
         check=all_of(message_has("compensations waiting for a slot in queue team/default"),
                      lambda after, _: None if after.queue_position == 2 else pytest.fail())),
    Case("compensating-admitted-starts-an-attempt-in-compensation-mode",
         status=compensating("Waiting"), seen={"place": ADMITTED}, phase="Compensating",
         reason="Compensating", actions=("StartAttempt",),
         check=all_of(compensation_pod_started(2), compensation(state="Running", attempts=1),
                      message_has("2 compensation(s) left"))),
    Case("compensating-waits-out-its-back-off",
         status=compensating("Waiting", attempts=1, nextAttemptAt="2026-03-01T12:00:05.250000Z"),
         seen={"place": ADMITTED}, phase="Compensating", requeue=5.0),

    # Running: observed until the pod ends.
    Case("a-running-compensation-is-looked-at-again", status=RUNNING_COMPENSATION,
         seen={"pod": pod("Running", "report-2")}, phase="Compensating", requeue=30.0),
    Case("every-compensation-ran-the-run-fails-as-it-failed", status=RUNNING_COMPENSATION,
         seen={"pod": pod("Succeeded", "report-2"), "compensation_summary": ALL_DONE,
               "outcome": outcome("succeeded", output={"completed": 2, "total": 2})},
         phase="Failed", reason="Failed", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=all_of(compensation(state="Completed", completed=2, total=2),
                      message_has("ValueError: no room; 2 of 2 compensation(s) ran"),
                      original_error_kept)),
    Case("a-failed-compensation-backs-off-in-the-phase", status=RUNNING_COMPENSATION,
         seen={"pod": pod("Succeeded", "report-2"), "compensation_summary": ONE_LEFT_FAILING,
               "outcome": outcome("retry", error={"type": "OSError", "message": "refund down"})},
         phase="Compensating", reason="CompensationBackingOff", actions=("ReleaseSlot",),
         requeue=pytest.approx(0.5, abs=1.0), check=all_of(
             compensation(state="Waiting", completed=1, failed=1,
                          last_error={"type": "OSError", "message": "refund down",
                                      "retryable": True}),
             backoff_between(0.0, 1.5), original_error_kept, not_finished)),
    Case("a-crashed-compensation-pod-backs-off-and-keeps-its-log", status=RUNNING_COMPENSATION,
         seen={"pod": ended("report-2"), "compensation_summary": ONE_LEFT_FAILING},
         phase="Compensating", reason="CompensationBackingOff",
         actions=("ReleaseSlot", "SaveLogTail"), requeue=pytest.approx(0.5, abs=1.0),
         check=compensation(state="Waiting")),
    Case("the-compensation-budget-used-up-fails-with-what-is-left",
         status=compensating("Running", attempts=deciding.COMPENSATION_ATTEMPTS, attempt=11,
                             podName="report-11"),
         seen={"pod": pod("Succeeded", "report-11"), "compensation_summary": ONE_LEFT_FAILING,
               "outcome": outcome("retry", error={"type": "OSError", "message": "refund down"})},
         phase="Failed", reason="Failed", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0,
         check=all_of(compensation(state="Failed", completed=1, failed=1),
                      message_has("1 of 2 compensation(s) ran; 1 left undone after 10 attempts"),
                      original_error_kept)),
    Case("a-timed-out-run-ends-timed-out-once-compensated",
         status=compensating("Running", attempts=1, attempt=2, podName="report-2",
                             compensation={"state": "Running", "endPhase": "TimedOut",
                                           "reason": "TimedOut", "total": 2, "attempts": 1}),
         seen={"pod": pod("Succeeded", "report-2"), "compensation_summary": ALL_DONE,
               "outcome": outcome("succeeded")},
         phase="TimedOut", reason="TimedOut", actions=("ReleaseSlot", "MirrorPhase"), requeue=0.0),
    Case("compensating-without-its-status-ends-failed",
         status=compensating("Waiting", compensation=None), phase="Failed", reason="Failed",
         actions=("ReleaseSlot", "MirrorPhase"), check=message_has("without status.compensation")),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_compensation_decision(case: Case) -> None:
    decision = deciding.decide(observation(case), NOW, case.settings, random.Random(7))
    after = decision.status
    assert (str(after.phase) if after.phase else None) == case.phase
    if case.reason is not None:
        assert after.conditions[-1].reason == case.reason
    assert tuple(type(action).__name__ for action in decision.actions) == case.actions
    assert decision.requeue_after == case.requeue if case.requeue is not None \
        else decision.requeue_after is None
    if case.check is not None:
        case.check(after, decision)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_deciding_a_compensation_twice_gives_the_same_decision(case: Case) -> None:
    seen = observation(case)
    first = deciding.decide(seen, NOW, case.settings, random.Random(7))
    assert deciding.decide(seen, NOW, case.settings, random.Random(7)) == first


def test_the_final_phase_gives_the_slot_back_and_records_retention() -> None:
    case = CASES[[c.id for c in CASES].index("every-compensation-ran-the-run-fails-as-it-failed")]
    decision = deciding.decide(observation(case), NOW, case.settings, random.Random(7))
    mirror = next(a for a in decision.actions if isinstance(a, actions.MirrorPhase))
    assert mirror.phase == "Failed" and mirror.retention is not None
    assert decision.status.completion_time is not None

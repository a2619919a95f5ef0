"""The process node derives pod phase and conditions by the kubelet's rules."""

from __future__ import annotations

import datetime

import pytest

from devcluster.node import containers, reasons, statuses

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def running(name: str = "main") -> containers.ContainerRecord:
    record = containers.ContainerRecord(name, "busybox", state=containers.Running(NOW))
    record.ready = True
    return record


def exited(code: int, name: str = "main") -> containers.ContainerRecord:
    return containers.ContainerRecord(
        name, "busybox", state=containers.Terminated(code, "Error" if code else "Completed",
                                                     NOW, NOW))


def waiting(name: str = "main", *, after: int | None = None) -> containers.ContainerRecord:
    record = containers.ContainerRecord(name, "busybox",
                                        state=containers.Waiting(reasons.CRASH_LOOP_BACK_OFF))
    if after is not None:
        record.last_state = containers.Terminated(after, "Error", NOW, NOW)
    return record


@pytest.mark.parametrize(("policy", "init", "main", "terminal", "phase"), [
    ("Never", [], [waiting()], False, "Pending"),
    ("Never", [], [running()], False, "Running"),
    ("Never", [], [exited(0)], False, "Succeeded"),
    ("Never", [], [exited(1)], False, "Failed"),
    ("Never", [], [exited(0), running("b")], False, "Running"),
    ("Never", [], [exited(0), exited(2, "b")], False, "Failed"),
    ("OnFailure", [], [exited(1)], False, "Running"),
    ("OnFailure", [], [waiting(after=1)], False, "Running"),
    ("OnFailure", [], [exited(0)], False, "Succeeded"),
    ("Always", [], [exited(0)], False, "Running"),
    ("Always", [], [exited(0)], True, "Succeeded"),
    ("Always", [], [exited(143)], True, "Failed"),
    ("Never", [running("init")], [waiting()], False, "Pending"),
    ("Never", [exited(1, "init")], [waiting()], False, "Failed"),
    ("OnFailure", [waiting("init", after=1)], [waiting()], False, "Pending"),
    ("Never", [exited(0, "init")], [running()], False, "Running"),
], ids=[
    "waiting-is-pending", "running", "never-success", "never-failure", "one-still-running",
    "one-failed", "on-failure-will-restart", "on-failure-backing-off", "on-failure-success",
    "always-restarts-even-success", "terminal-all-succeeded", "terminal-killed",
    "init-running", "init-failed-never", "init-backing-off", "initialized-running",
])
def test_phase_follows_kubelet_rules(policy: str, init: list[containers.ContainerRecord],
                                     main: list[containers.ContainerRecord], terminal: bool,
                                     phase: str) -> None:
    assert statuses.compute_phase(policy, init, main, terminal=terminal) == phase


def test_deadline_exceeded_is_failed_whatever_the_containers_do() -> None:
    phase = statuses.compute_phase("Always", [], [running()], terminal=True,
                                   reason=reasons.DEADLINE_EXCEEDED)
    assert phase == "Failed"


def pod(**spec: object) -> dict[str, object]:
    return {"metadata": {"name": "p", "namespace": "n", "uid": "u"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main"}], **spec},
            "status": {}}


def test_status_reports_ready_conditions_and_container_state() -> None:
    facts = statuses.PodFacts(NOW, volumes_ready=True)
    status = statuses.build_pod_status(pod(), [], [running()], facts, NOW)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Running"
    assert conditions["Ready"]["status"] == conditions["ContainersReady"]["status"] == "True"
    assert status["containerStatuses"][0]["state"] == {
        "running": {"startedAt": "2026-01-01T00:00:00Z"}}
    assert status["podIP"] == "127.0.0.1" and status["startTime"] == "2026-01-01T00:00:00Z"


def test_completed_pod_is_not_ready_with_reason_pod_completed() -> None:
    status = statuses.build_pod_status(pod(), [], [exited(0)], statuses.PodFacts(NOW), NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "PodCompleted",
                                                                    None)


def test_transition_time_is_kept_while_a_condition_holds() -> None:
    earlier = "2025-12-31T00:00:00Z"
    previous = [{"type": "Ready", "status": "True", "lastTransitionTime": earlier},
                {"type": "Initialized", "status": "False", "lastTransitionTime": earlier}]
    conditions = statuses.carry_transition_times(
        [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
        previous, NOW)
    assert [c["lastTransitionTime"] for c in conditions] == [earlier, "2026-01-01T00:00:00Z"]


def test_container_running_under_a_dead_agent_is_reported_unknown() -> None:
    record = containers.from_api({
        "name": "main", "image": "busybox", "restartCount": 2,
        "state": {"running": {"startedAt": "2025-12-31T23:00:00Z"}}}, NOW)
    assert isinstance(record.state, containers.Terminated)
    assert (record.state.exit_code, record.state.reason) == (137, "ContainerStatusUnknown")
    assert record.instances_started == 3

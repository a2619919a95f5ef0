"""Version pinning and forks in the decision table: what the first attempt pins, what later
attempts and resumes are built from, and how a replay or a fork starts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from durakube import resources
from durakube.store import queues
from durakube_operator import actions, deciding, observing, pinning, reasons
from durakube_operator import settings as settings_module

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = settings_module.Settings(database_url="postgresql://db/durakube", resync_seconds=30.0)
ADMITTED = queues.Place(holds_slot=True)
DIGEST = "sha256:" + "ab" * 32
SUSPENDED = {"phase": "Suspended", "runId": "uid-1", "attempt": 1, "resumes": 1,
             "waitingFor": {"kind": "event", "step": 2},
             "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Suspended",
                             "lastTransitionTime": "2026-03-01T11:59:02Z"}]}
RUNNING = {"phase": "Running", "runId": "uid-1", "attempt": 1, "podName": "report-1",
           "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running",
                           "lastTransitionTime": "2026-03-01T11:59:02Z"}]}


def task(image: str = "registry.example/tasks:1", **spec: Any) -> resources.Task:
    return resources.Task.model_validate({
        "metadata": {"name": "work", "namespace": "team", "generation": 3},
        "spec": {"image": image, "entrypoint": "work", "modules": ["jobs"],
                 "retry": {"maxAttempts": 4}, "timeout": "10m", **spec}})


def taskrun(status: dict[str, Any] | None = None, **spec: Any) -> resources.TaskRun:
    return resources.TaskRun.model_validate({
        "apiVersion": resources.API_VERSION, "kind": "TaskRun",
        "metadata": {"name": "report", "namespace": "team", "uid": "uid-1", "generation": 1,
                     "creationTimestamp": "2026-03-01T11:59:00Z"},
        "spec": {"taskRef": {"name": "work"}, "payload": {}, **spec},
        "status": status or {}})


def observe(run: resources.TaskRun, current: resources.Task | None,
            **seen: Any) -> observing.Observation:
    """What `observing` sees: the Task as the run pinned it, once pinned."""
    found = pinning.pinned_task(run, current) if current or run.status.pinned else None
    place = ADMITTED if run.status.attempt == 0 or run.status.phase in observing.WAITING_PHASES \
        else None
    return observing.Observation(
        body=run.model_dump(mode="json", by_alias=True), run=run, queue="team/default",
        task=found, task_deleted=current is None, place=place,
        payload=run.spec.payload, **seen)


def pinned(**changes: Any) -> dict[str, Any]:
    snapshot = resources.PinnedTask.of(task()).model_dump(mode="json", by_alias=True,
                                                           exclude_none=True)
    return {**snapshot, **changes}


def started_pod(decision: deciding.Decision) -> dict[str, Any]:
    start = next(a for a in decision.actions if isinstance(a, actions.StartAttempt))
    return start.pod["spec"]["containers"][0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value") for item in container["env"]}


def test_first_attempt_pins_the_task_it_runs() -> None:
    decision = deciding.decide(observe(taskrun(), task()), NOW, SETTINGS)
    assert decision.status.phase == resources.Phase.RUNNING
    assert decision.status.pinned == resources.PinnedTask.of(task())
    assert decision.status.pinned.task_generation == 3
    assert started_pod(decision)["image"] == "registry.example/tasks:1"


def test_running_pod_reports_the_digest_the_image_resolved_to() -> None:
    run = taskrun({**RUNNING, "pinned": pinned()})
    pod = {"metadata": {"name": "report-1"},
           "spec": {"containers": [{"name": "task", "image": "registry.example/tasks:1"}]},
           "status": {"phase": "Running", "containerStatuses": [{
               "name": "task", "image": "registry.example/tasks:1",
               "imageID": f"registry.example/tasks@{DIGEST}"}]}}
    decision = deciding.decide(observe(run, task(), pod=pod), NOW, SETTINGS)
    assert decision.status.pinned is not None
    assert decision.status.pinned.image_digest == DIGEST


def test_resume_runs_the_pinned_code_after_the_task_changed() -> None:
    run = taskrun({**SUSPENDED, "pinned": pinned(imageDigest=DIGEST)})
    changed = task("registry.example/tasks:2", modules=["jobs_v2"], timeout="1m")
    decision = deciding.decide(observe(run, changed, wait_over=True), NOW, SETTINGS)
    container = started_pod(decision)
    assert container["image"] == f"registry.example/tasks@{DIGEST}"
    assert env_of(container)["DURAKUBE_TASK_MODULES"] == "jobs"
    start = next(a for a in decision.actions if isinstance(a, actions.StartAttempt))
    assert start.pod["spec"]["activeDeadlineSeconds"] == 600
    assert decision.status.pinned == run.status.pinned


def test_resume_without_its_task_runs_from_the_snapshot_and_warns() -> None:
    run = taskrun({**SUSPENDED, "pinned": pinned()})
    decision = deciding.decide(observe(run, None, wait_over=True), NOW, SETTINGS)
    assert decision.status.phase == resources.Phase.RUNNING
    assert started_pod(decision)["image"] == "registry.example/tasks:1"
    warning = next(a for a in decision.actions if isinstance(a, actions.Warn))
    assert warning.reason == reasons.TASK_DELETED


def test_run_that_never_started_without_its_task_fails() -> None:
    decision = deciding.decide(observing.Observation(
        body={}, run=taskrun(), queue="team/default"), NOW, SETTINGS)
    assert decision.status.phase == resources.Phase.FAILED
    assert decision.status.conditions[-1].reason == reasons.TASK_NOT_FOUND


REPLAY = {"replayOf": {"run": "report-old", "runId": "uid-0"}}


def test_replay_keeps_the_code_its_run_was_pinned_to() -> None:
    source = resources.PinnedTask.model_validate(pinned(imageDigest=DIGEST, queue="old-queue"))
    decision = deciding.decide(observe(taskrun(**REPLAY), task("registry.example/tasks:2"),
                                       pin_source=source), NOW, SETTINGS)
    assert started_pod(decision)["image"] == f"registry.example/tasks@{DIGEST}"
    assert decision.status.pinned == source.model_copy(update={"queue": None})


def test_replay_on_the_latest_task_pins_the_current_one() -> None:
    run = taskrun(replayOf={**REPLAY["replayOf"], "latest": True})
    decision = deciding.decide(observe(run, task("registry.example/tasks:2")), NOW, SETTINGS)
    assert started_pod(decision)["image"] == "registry.example/tasks:2"
    assert not any(isinstance(a, actions.Warn) for a in decision.actions)


def test_replay_whose_run_has_no_snapshot_warns_and_pins_the_current_task() -> None:
    decision = deciding.decide(observe(taskrun(**REPLAY), task("registry.example/tasks:2")),
                               NOW, SETTINGS)
    assert started_pod(decision)["image"] == "registry.example/tasks:2"
    warning = next(a for a in decision.actions if isinstance(a, actions.Warn))
    assert warning.reason == reasons.PIN_NOT_FOUND and "report-old" in warning.message


def test_fork_registers_with_the_steps_to_copy() -> None:
    run = taskrun(replayOf={**REPLAY["replayOf"], "fromStep": 3})
    decision = deciding.decide(observe(run, task()), NOW, SETTINGS)
    register = next(a for a in decision.actions if isinstance(a, actions.RegisterRun))
    assert register.fork == actions.Fork(source_run_id="uid-0", from_step=3)


def test_fork_that_cannot_be_made_fails_the_run_before_registering() -> None:
    run = taskrun(replayOf={**REPLAY["replayOf"], "fromStep": 9})
    decision = deciding.decide(observe(run, task(), fork_problem="it recorded steps 1 to 3"),
                               NOW, SETTINGS)
    assert decision.status.phase == resources.Phase.FAILED
    assert decision.status.conditions[-1].reason == reasons.INVALID
    assert not any(isinstance(a, actions.RegisterRun) for a in decision.actions)


@pytest.mark.parametrize(("image", "digest", "expected"), [
    ("registry.example/tasks:1", DIGEST, f"registry.example/tasks@{DIGEST}"),
    ("registry.example:5000/team/tasks", DIGEST, f"registry.example:5000/team/tasks@{DIGEST}"),
    (f"tasks@{'sha256:' + 'cd' * 32}", DIGEST, f"tasks@{'sha256:' + 'cd' * 32}"),
    ("tasks:1", None, "tasks:1"),
], ids=["tag", "registry-port-no-tag", "already-a-digest", "no-digest-yet"])
def test_pinned_image(image: str, digest: str | None, expected: str) -> None:
    assert resources.pinned_image(image, digest) == expected


@pytest.mark.parametrize(("image_id", "expected"), [
    (f"docker.io/library/tasks@{DIGEST}", DIGEST),
    (DIGEST, None),
    ("", None),
    ("docker://tasks", None),
], ids=["containerd", "bare-image-id-of-a-loaded-image", "empty", "not-a-digest"])
def test_image_digest(image_id: str, expected: str | None) -> None:
    assert resources.image_digest(image_id) == expected

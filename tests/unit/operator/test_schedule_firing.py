"""The scheduling loop's decisions across passes and restarts, against a fake API of a few
lines (`scheduling.SchedulingLoop`): a time fired by an operator that died before its
status is never fired again, QueueOne runs the waiting time once the active run ends,
and runs are pruned only after their time is recorded. The end-to-end test
(tests/e2e/operator/test_task_schedules.py) shows the same on the real control plane."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import prometheus_client

from durakube_operator import scheduling

START = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


class FakeApi:
    """TaskRuns and one TaskSchedule in dicts; `fail_status` makes status patches raise, as
    an operator that dies right after creating runs."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.schedule: dict[str, Any] = {}
        self.fail_status = False

    async def list_taskruns(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        key, value = label_selector.split("=")
        return [copy.deepcopy(run) for run in self.runs.values()
                if run["metadata"]["labels"].get(key) == value]

    async def create_taskrun(self, namespace: str, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        self.created.append(name)
        if name in self.runs:
            return False
        self.runs[name] = {**copy.deepcopy(body), "status": {}}
        self.runs[name]["metadata"]["uid"] = f"uid-{name}"
        return True

    async def patch_status(self, plural: str, namespace: str, name: str,
                           status: dict[str, Any]) -> dict[str, Any] | None:
        if self.fail_status:
            raise ConnectionError("the operator died here")
        meta = self.schedule["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        self.schedule["status"] = {k: v for k, v in status.items() if v is not None}
        return copy.deepcopy(self.schedule)

    async def delete_taskrun(self, namespace: str, name: str, uid: str) -> bool:
        self.deleted.append(name)
        return self.runs.pop(name, None) is not None

    def edit_spec(self, **spec: Any) -> dict[str, Any]:
        """A change of the schedule's spec, as the watch delivers it (a new version)."""
        meta = self.schedule["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        meta["generation"] += 1
        self.schedule["spec"] = spec
        return copy.deepcopy(self.schedule)

    def finish(self, name: str, phase: str = "Succeeded") -> None:
        self.runs[name]["status"] = {"phase": phase}


class FakeEvents:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def record(self, involved: dict[str, Any], kind: str, reason: str, message: str,
               event_type: str = "Normal") -> None:
        self.reasons.append(reason)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def new_schedule(api: FakeApi, **spec: Any) -> None:
    api.schedule = {
        "apiVersion": "durakube.io/v1alpha1", "kind": "TaskSchedule",
        "metadata": {"name": "tick", "namespace": "ns", "uid": "sched-uid", "generation": 1,
                     "resourceVersion": "1", "creationTimestamp": "2026-06-01T12:00:00Z"},
        "spec": {"taskRef": {"name": "nap"}, "interval": "10s", **spec}}


def operator(api: FakeApi, clock: Clock) -> tuple[scheduling.SchedulingLoop, FakeEvents]:
    """A fresh operator's loop: it knows the schedule only as the watch lists it."""
    events = FakeEvents()
    loop = scheduling.SchedulingLoop(api, events, clock=clock)  # type: ignore[arg-type]
    loop.schedule_changed(copy.deepcopy(api.schedule), deleted=False)
    return loop, events


async def test_a_time_fired_before_a_crash_is_not_fired_again() -> None:
    api, clock = FakeApi(), Clock()
    new_schedule(api, overlapPolicy="Allow")
    first, _ = operator(api, clock)
    clock.now = START + timedelta(seconds=10)
    api.fail_status = True
    await first.run_pass()  # created tick-<12:00:10>, then died before the status
    assert api.created == ["tick-1780315210"] and "status" not in api.schedule
    api.fail_status = False
    clock.now = START + timedelta(seconds=21)
    second, _ = operator(api, clock)
    await second.run_pass()
    assert sorted(api.runs) == ["tick-1780315210", "tick-1780315220"]
    assert api.created.count("tick-1780315210") == 1  # found in the listing, not re-created
    status = api.schedule["status"]
    assert status["runs"] == 2 and status["lastRunName"] == "tick-1780315220"
    assert status["scheduledUntil"] == "2026-06-01T12:00:20Z"
    assert status["nextScheduleTime"] == "2026-06-01T12:00:30Z"


def counted(outcome: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(
        "durakube_scheduled_times_total", {"namespace": "ns", "outcome": outcome}) or 0.0


async def test_queue_one_runs_the_waiting_time_once_the_active_run_ends() -> None:
    before = {outcome: counted(outcome) for outcome in ("created", "queued", "skipped")}
    api, clock = FakeApi(), Clock()
    new_schedule(api, overlapPolicy="QueueOne")
    loop, events = operator(api, clock)
    clock.now = START + timedelta(seconds=10)
    await loop.run_pass()
    clock.now = START + timedelta(seconds=30)  # 12:00:20 waits, 12:00:30 is skipped
    await loop.run_pass()
    assert sorted(api.runs) == ["tick-1780315210"]
    status = api.schedule["status"]
    assert status["queuedTime"] == "2026-06-01T12:00:20Z" and status["skipped"] == 1
    api.finish("tick-1780315210")
    loop.run_changed("ns", "tick")
    await loop.run_pass()
    assert sorted(api.runs) == ["tick-1780315210", "tick-1780315220"]
    assert "queuedTime" not in api.schedule["status"]
    assert events.reasons.count("RunCreated") == 2 and "RunQueued" in events.reasons
    assert {outcome: counted(outcome) - before[outcome] for outcome in before} == {
        "created": 2, "queued": 1, "skipped": 1}


async def test_finished_runs_are_pruned_only_after_their_time_is_recorded() -> None:
    api, clock = FakeApi(), Clock()
    new_schedule(api, overlapPolicy="Allow", successfulRunsHistoryLimit=1)
    loop, _ = operator(api, clock)
    for seconds in (10, 20):
        clock.now = START + timedelta(seconds=seconds)
        await loop.run_pass()
    for name in list(api.runs):
        api.finish(name)
    api.fail_status = True
    clock.now = START + timedelta(seconds=30)
    await loop.run_pass()
    assert api.deleted == []  # the status of 12:00:30 was not written: nothing pruned
    api.fail_status = False
    loop.run_changed("ns", "tick")
    clock.now = START + timedelta(seconds=31)
    await loop.run_pass()
    assert api.deleted == ["tick-1780315210"]  # the oldest succeeded; one is kept
    assert sorted(api.runs) == ["tick-1780315220", "tick-1780315230"]


async def test_pause_skips_the_paused_times_and_an_invalid_schedule_is_reported() -> None:
    api, clock = FakeApi(), Clock()
    new_schedule(api, paused=True)
    loop, events = operator(api, clock)
    clock.now = START + timedelta(seconds=15)
    await loop.run_pass()
    assert api.schedule["status"]["conditions"][0]["reason"] == "Paused" and not api.runs
    clock.now = START + timedelta(seconds=45)
    loop.schedule_changed(api.edit_spec(**{**api.schedule["spec"], "paused": False}), deleted=False)
    await loop.run_pass()
    assert not api.runs  # 12:00:20..12:00:40 passed while paused: not caught up
    assert api.schedule["status"]["nextScheduleTime"] == "2026-06-01T12:00:50Z"
    loop.schedule_changed(api.edit_spec(taskRef={"name": "nap"}, schedule="0 25 * * *"),
                          deleted=False)
    await loop.run_pass()
    ready = api.schedule["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSchedule")
    assert "Bad hour" in ready["message"] and "InvalidSchedule" in events.reasons
    assert "nextScheduleTime" not in api.schedule["status"]


async def test_a_fixed_schedule_does_not_catch_up_the_times_it_was_invalid() -> None:
    api, clock = FakeApi(), Clock()
    new_schedule(api, jitter="1500")  # no unit: refused by the model (and by the CRD's schema)
    loop, events = operator(api, clock)
    clock.now = START + timedelta(seconds=5)
    await loop.run_pass()
    ready = api.schedule["status"]["conditions"][0]
    assert ready["reason"] == "InvalidSchedule" and ready["message"].startswith("spec.jitter")
    clock.now = START + timedelta(seconds=42)
    loop.schedule_changed(api.edit_spec(taskRef={"name": "nap"}, interval="10s"), deleted=False)
    await loop.run_pass()
    assert not api.runs
    assert api.schedule["status"]["nextScheduleTime"] == "2026-06-01T12:00:50Z"
    assert events.reasons == ["InvalidSchedule"]

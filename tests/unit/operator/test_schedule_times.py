"""The pure logic of TaskSchedules: cron times in a time zone, intervals, catch-up, jitter,
overlap decisions, run names and payload templates (`durakube_operator.timetables`)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from durakube import resources
from durakube_operator import timetables

BERLIN = ZoneInfo("Europe/Berlin")


def spec(**fields: Any) -> resources.TaskScheduleSpec:
    return resources.TaskScheduleSpec.model_validate({"taskRef": {"name": "report"}, **fields})


def local_times(timetable: timetables.Timetable, after: datetime, count: int) -> list[str]:
    return [moment.astimezone(timetable.zone).isoformat()
            for moment in itertools.islice(timetable.times_after(after), count)]


def test_cron_times_follow_the_time_zone_across_spring_forward() -> None:
    # 2026-03-29: Berlin's clocks jump from 02:00 to 03:00, so 02:30 does not exist that day;
    # cron's rule runs it at the first minute after the gap, once.
    timetable = timetables.parse(spec(schedule="30 2 * * *", timeZone="Europe/Berlin"))
    assert local_times(timetable, datetime(2026, 3, 27, 12, tzinfo=BERLIN), 4) == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]


def test_cron_times_run_once_when_fall_back_repeats_the_hour() -> None:
    # 2026-10-25: 02:00-03:00 happens twice in Berlin; a daily 02:30 runs once.
    timetable = timetables.parse(spec(schedule="30 2 * * *", timeZone="Europe/Berlin"))
    times = list(itertools.islice(timetable.times_after(datetime(2026, 10, 24, 12, tzinfo=BERLIN)), 2))
    assert [t.astimezone(BERLIN).isoformat() for t in times] == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    assert times[1] - times[0] == timedelta(hours=25)


def test_frequent_cron_times_run_in_both_repeated_hours() -> None:
    timetable = timetables.parse(spec(schedule="*/30 * * * *", timeZone="Europe/Berlin"))
    assert local_times(timetable, datetime(2026, 10, 25, 1, 45, tzinfo=BERLIN), 4) == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"]


def test_cron_times_default_to_utc_and_accept_macros() -> None:
    timetable = timetables.parse(spec(schedule="@hourly"))
    after = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert timetable.next_after(after) == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    assert timetable.next_after(after - timedelta(seconds=1)) == after


def test_interval_times_are_multiples_since_the_epoch_strictly_after() -> None:
    timetable = timetables.parse(spec(interval="15s"))
    after = datetime(2026, 1, 1, 0, 0, 15, tzinfo=UTC)
    assert list(itertools.islice(timetable.times_after(after), 2)) == [
        datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 45, tzinfo=UTC)]
    assert timetable.next_after(after + timedelta(milliseconds=1)) == datetime(2026, 1, 1, 0, 0, 30,
                                                                               tzinfo=UTC)


@pytest.mark.parametrize(("fields", "message"), [
    ({"schedule": "61 * * * *"}, "Bad minute"),
    ({"schedule": "0 0 30 2 *"}, "Bad day-of-month"),
    ({"schedule": "0 9 * * *", "timeZone": "Mars/Olympus_Mons"}, "not a known IANA time zone"),
    ({"interval": "1500ms"}, "whole seconds, at least 1s"),
    ({"interval": "0s"}, "whole seconds, at least 1s"),
    ({}, "exactly one of"),
    ({"schedule": "@daily", "interval": "1m"}, "exactly one of"),
], ids=["minute", "february-30", "zone", "fraction", "zero", "neither", "both"])
def test_schedules_that_cannot_run_are_refused_with_a_message(fields: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(timetables.InvalidSchedule, match=message):
        timetables.parse(spec(**fields))


NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_catch_up_runs_each_missed_time_within_the_window_once_and_counts_older_ones() -> None:
    timetable = timetables.parse(spec(interval="1m"))
    # Down for 10 minutes, a window of 3: 6 times missed, 4 due (the oldest at the horizon).
    plan = timetables.plan(timetable, NOW - timedelta(minutes=10), NOW, catchup_window=180)
    assert plan.missed == 6
    assert plan.due == [NOW - timedelta(minutes=m) for m in (3, 2, 1, 0)]
    assert plan.missed_until == NOW - timedelta(minutes=4)


def test_catch_up_of_a_cron_schedule_counts_the_same_way() -> None:
    interval = timetables.plan(timetables.parse(spec(interval="1m")), NOW - timedelta(minutes=10),
                               NOW, catchup_window=180)
    cron = timetables.plan(timetables.parse(spec(schedule="* * * * *")), NOW - timedelta(minutes=10),
                           NOW, catchup_window=180)
    assert (cron.missed, cron.due, cron.missed_until) == (interval.missed, interval.due,
                                                          interval.missed_until)


def test_nothing_is_missed_while_the_operator_keeps_up() -> None:
    plan = timetables.plan(timetables.parse(spec(interval="1m")), NOW - timedelta(minutes=1), NOW,
                           catchup_window=3600)
    assert (plan.due, plan.missed, plan.missed_until) == ([NOW], 0, None)


def test_a_long_downtime_of_a_fast_interval_is_counted_not_stepped() -> None:
    plan = timetables.plan(timetables.parse(spec(interval="1s")), NOW - timedelta(days=7), NOW,
                           catchup_window=10, limit=100)
    assert plan.missed == 7 * 86400 - 11  # 11 times within the last 10 s, both ends included
    assert plan.due == [NOW - timedelta(seconds=s) for s in range(10, -1, -1)]


def test_due_times_are_bounded_per_pass() -> None:
    plan = timetables.plan(timetables.parse(spec(interval="1s")), NOW - timedelta(minutes=5), NOW,
                           catchup_window=3600, limit=50)
    assert len(plan.due) == 50 and plan.due[0] == NOW - timedelta(seconds=299)


def test_jitter_is_the_same_for_a_time_and_within_bounds() -> None:
    times = [NOW + timedelta(minutes=m) for m in range(200)]
    delays = [timetables.jitter_seconds("uid-1", t, 30) for t in times]
    assert delays == [timetables.jitter_seconds("uid-1", t, 30) for t in times]
    assert all(0 <= delay < 30 for delay in delays)
    assert len(set(delays)) == len(delays)  # spread, not one offset for every time
    assert delays != [timetables.jitter_seconds("uid-2", t, 30) for t in times]
    assert timetables.jitter_seconds("uid-1", NOW, 0) == 0


def test_run_names_are_one_per_time_and_short() -> None:
    assert timetables.run_name("nightly", NOW) == f"nightly-{int(NOW.timestamp())}"
    assert timetables.run_name("nightly", NOW) != timetables.run_name("nightly", NOW + timedelta(seconds=1))
    long_a, long_b = "a" * 60 + "-x", "a" * 60 + "-y"
    names = {timetables.run_name(name, NOW) for name in (long_a, long_b)}
    assert len(names) == 2 and all(len(name) <= 63 for name in names)
    assert all(name.endswith(str(int(NOW.timestamp()))) for name in names)


@pytest.mark.parametrize(("policy", "active", "queued", "decision"), [
    ("Skip", False, False, "Fire"),
    ("Skip", True, False, "Skip"),
    ("QueueOne", True, False, "Queue"),
    ("QueueOne", True, True, "Skip"),
    ("QueueOne", False, True, "Fire"),
    ("Allow", True, True, "Fire"),
])
def test_overlap_policy_decisions(policy: str, active: bool, queued: bool, decision: str) -> None:
    assert timetables.decide(resources.OverlapPolicy(policy), active, queued) == decision


def test_payload_template_gets_the_time_and_the_schedule() -> None:
    template = {"day": "$(scheduledTime)", "by": ["$(scheduleName)", 3], "$(scheduleName)": True}
    assert timetables.render_payload(template, "nightly", NOW) == {
        "day": "2026-06-01T12:00:00Z", "by": ["nightly", 3], "nightly": True}


def test_the_example_schedule_is_valid() -> None:
    path = Path(__file__).resolve().parents[3] / "examples" / "morning-digest-schedule.yaml"
    schedule = resources.TaskSchedule.model_validate(yaml.safe_load(path.read_text()))
    timetable = timetables.parse(schedule.spec)
    assert timetables.check_windows(schedule.spec) == (1800, 30)
    # Monday 2026-03-30, the first weekday after Paris moved to summer time: 07:30 is 05:30 UTC.
    assert timetable.next_after(datetime(2026, 3, 28, tzinfo=UTC)) == datetime(2026, 3, 30, 5, 30,
                                                                               tzinfo=UTC)

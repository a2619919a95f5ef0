"""When a TaskSchedule's runs are due: cron times in a time zone, intervals, catch-up, jitter.

The pure half of schedules (`scheduling` is the loop that acts on it). A cron
expression is parsed and stepped by cronsim, which follows cron's own rules across
daylight saving changes: a time that a spring-forward skips runs at the first
minute after the gap, and a time that a fall-back repeats runs once (jobs of every
minute or every few minutes run in both hours, as cron does). An interval counts
from the Unix epoch, so its times never depend on when the operator started.

Every scheduled time has one TaskRun name (`run_name`), and its jitter is derived
from the schedule and the time (`jitter_seconds`), so an operator that restarts
reaches the same decisions. Pure functions: the caller passes the clock.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cronsim

from durakube import durations, errors, resources

# The macros Kubernetes CronJobs accept, as the five fields cronsim reads.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# The longest TaskRun name a schedule makes: its pods' names and label values stay short.
_NAME_LIMIT = 63
# Missed times counted one by one at most (a cron expression cannot be counted otherwise);
# past this the count says "at least".
COUNT_LIMIT = 10_000


class InvalidSchedule(ValueError):
    """A TaskSchedule that cannot be run as written; the message says what to change."""


@dataclass(frozen=True)
class Timetable:
    """The scheduled times of one TaskSchedule: a cron expression in a time zone, or an
    interval in whole seconds."""

    cron: str | None = None
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    interval: int | None = None

    def times_after(self, moment: datetime) -> Iterator[datetime]:
        """The scheduled times strictly after `moment`, in order, in UTC."""
        if self.interval is not None:
            step = self.interval
            at = (math.floor(moment.timestamp()) // step + 1) * step
            while True:
                yield datetime.fromtimestamp(at, UTC)
                at += step
        assert self.cron is not None
        # cronsim steps from the given moment (exclusive of it at whole minutes).
        for local in cronsim.CronSim(self.cron, moment.astimezone(self.zone)):
            yield local.astimezone(UTC)

    def next_after(self, moment: datetime) -> datetime:
        return next(self.times_after(moment))


def parse(spec: resources.TaskScheduleSpec) -> Timetable:
    """The timetable of `spec`; raises InvalidSchedule with a message for people."""
    if (spec.schedule is None) == (spec.interval is None):
        raise InvalidSchedule("give exactly one of spec.schedule and spec.interval")
    if spec.interval is not None:
        try:
            seconds = durations.parse_duration(spec.interval)
        except errors.InvalidDuration as error:
            raise InvalidSchedule(f"spec.interval is invalid: {error}") from None
        if seconds < 1 or seconds != int(seconds):
            raise InvalidSchedule(f"spec.interval must be whole seconds, at least 1s, "
                                  f"got {spec.interval!r}")
        return Timetable(interval=int(seconds))
    assert spec.schedule is not None
    expression = " ".join(spec.schedule.split())
    expression = MACROS.get(expression.lower(), expression)
    zone_name = spec.time_zone or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"spec.timeZone {zone_name!r} is not a known IANA time zone "
                              "(such as Europe/Paris or America/New_York)") from None
    try:
        cronsim.CronSim(expression, datetime(2000, 1, 1, tzinfo=zone))
    except cronsim.CronSimError as error:
        raise InvalidSchedule(f"spec.schedule {spec.schedule!r} is not a valid cron "
                              f"expression: {error}") from None
    return Timetable(cron=expression, zone=zone)


def check_windows(spec: resources.TaskScheduleSpec) -> tuple[float, float]:
    """The catch-up window and the jitter in seconds; raises InvalidSchedule."""
    values = []
    for where, text in (("spec.catchupWindow", spec.catchup_window), ("spec.jitter", spec.jitter)):
        try:
            values.append(0.0 if text is None else durations.parse_duration(text))
        except errors.InvalidDuration as error:
            raise InvalidSchedule(f"{where} is invalid: {error}") from None
    return values[0], values[1]


@dataclass(frozen=True)
class Plan:
    """The times between the last one handled and now: `due` to run (oldest first, at most
    the limit asked for), and how many were `missed` (older than the catch-up window)."""

    due: list[datetime]
    missed: int
    # Every time up to this one was missed (None: none was): the cursor moves there even
    # when nothing is due.
    missed_until: datetime | None = None


def plan(timetable: Timetable, after: datetime, now: datetime, catchup_window: float,
         limit: int = 100) -> Plan:
    """What to do with the times in (after, now]: those more than `catchup_window` seconds
    old are missed, the rest are due, each once."""
    horizon = now - timedelta(seconds=catchup_window)
    missed = 0
    start = after
    if horizon > after:
        if timetable.interval is not None:
            # Counted, not stepped: an interval of a second over a week is 604,800 times.
            step = timetable.interval
            first = math.floor(after.timestamp()) // step + 1
            last = math.ceil(horizon.timestamp()) // step
            if horizon.timestamp() == last * step:
                last -= 1  # exactly at the horizon is still within the window
            missed = max(0, last - first + 1)
            if missed:
                start = datetime.fromtimestamp(last * step, UTC)
        else:
            for moment in timetable.times_after(after):
                if moment >= horizon or missed >= COUNT_LIMIT:
                    break
                missed, start = missed + 1, moment
            if missed >= COUNT_LIMIT:
                start = max(start, horizon - timedelta(microseconds=1))
    due: list[datetime] = []
    for moment in timetable.times_after(start):
        if moment > now or len(due) >= limit:
            break
        due.append(moment)
    return Plan(due, missed, start if missed else None)


def jitter_seconds(seed: str, scheduled: datetime, jitter: float) -> float:
    """The delay of the run scheduled at `scheduled`: in [0, jitter), the same every time it
    is asked for that schedule (`seed`, its uid) and time."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{seed}/{int(scheduled.timestamp())}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * jitter


def run_name(schedule: str, scheduled: datetime) -> str:
    """The TaskRun of `schedule` for the time `scheduled`: `<schedule>-<unix seconds>`, with
    a long schedule name cut and given a hash so that it stays unique and short."""
    suffix = str(int(scheduled.timestamp()))
    base = schedule
    if len(base) + 1 + len(suffix) > _NAME_LIMIT:
        digest = hashlib.sha256(schedule.encode()).hexdigest()[:6]
        keep = _NAME_LIMIT - len(suffix) - len(digest) - 2
        base = f"{schedule[:keep].rstrip('-.')}-{digest}"
    return f"{base}-{suffix}"


class Decision:
    FIRE = "Fire"
    SKIP = "Skip"
    QUEUE = "Queue"


def decide(policy: resources.OverlapPolicy, active: bool, queued: bool) -> str:
    """What to do with a due time, given whether a run of the schedule is active and whether
    a time already waits (QueueOne)."""
    if not active or policy == resources.OverlapPolicy.ALLOW:
        return Decision.FIRE
    if policy == resources.OverlapPolicy.QUEUE_ONE and not queued:
        return Decision.QUEUE
    return Decision.SKIP


def render_payload(template: Any, schedule: str, scheduled: datetime) -> Any:
    """The payload of one run: `template` with $(scheduledTime) and $(scheduleName) replaced
    in every string, keys included."""
    stamp = format_time(scheduled)

    def render(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("$(scheduledTime)", stamp).replace("$(scheduleName)", schedule)
        if isinstance(value, dict):
            return {render(key): render(item) for key, item in value.items()}
        if isinstance(value, list):
            return [render(item) for item in value]
        return value

    return render(template)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC, whole seconds (how status and annotations show times)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

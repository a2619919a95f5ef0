"""What each page shows, read with the user's credentials: runs, one run, queues, tasks.

Kubernetes objects (TaskRuns, Tasks, TaskQueues, Events, pod logs) are read through
the client's API layer with the user's kubeconfig, so RBAC decides what a page
shows: a refusal comes back as `failures.PermissionDenied` and is shown as such.
What lives in Postgres (steps, attempts, waits, payloads, outputs, the queue ledger,
the run history) is read with the database DSN, and only for runs or namespaces
the API has just let the user read, since the database knows nothing of RBAC.
Without a DSN the pages show what the API holds and say what is missing.

Called by `serving`; reads only (changes are `acting`'s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from durakube import errors, resources
from durakube.client import AsyncClient, failures, handles, history, manifests
from durakube.dashboard import database, filters, timelines
from durakube.store import attempts, compensations, runs

T = TypeVar("T")
# Rows the runs list shows at most, and history rows it reads at most.
RUN_ROWS = 500
# JSON values longer than this are cut on the page; the whole value is a download.
SHOWN_JSON_CHARS = 20_000
# How deep the tree of child runs is read.
CHILD_DEPTH = 3
PARENT_UID_LABEL = "durakube.io/parent-run-uid"
PARENT_LABEL = "durakube.io/parent-run"
# A selector no TaskRun carries: listing with it asks the API only whether the user
# may list TaskRuns there (RBAC), before Postgres rows of that namespace are read.
MAY_LIST_SELECTOR = "durakube.io/dashboard-probe=none"
# What a waitpoint token looks like (`store.waitpoints.new_token`).
TOKEN = re.compile(r"wpt_[A-Za-z0-9_-]{16,}")

# What reading Postgres may raise that a page reports as a note rather than an error.
DATABASE_TROUBLE = (failures.DatabaseNotConfigured, failures.DatabaseUnreachable,
                    asyncpg.PostgresError, OSError)


@dataclass(frozen=True)
class RunRow:
    run: handles.RunSummary
    concurrency_key: str | None


@dataclass(frozen=True)
class RunList:
    rows: list[RunRow]
    counts: dict[str, int]
    notes: list[str]
    truncated: bool


async def list_runs(client: AsyncClient, wanted: filters.RunFilter, now: datetime) -> RunList:
    """The runs the filter asks for, newest first, and the count of each phase."""
    api, notes = client.session.api, []
    items = (await api.list_taskruns(wanted.namespace)).get("items", [])
    candidates: list[RunRow] = []
    for item in items:
        row = RunRow(handles.summarize_taskrun(item),
                     (item.get("spec") or {}).get("concurrencyKey"))
        if filters.matches(row.run, wanted, now, concurrency_key=row.concurrency_key,
                           with_phase=False):
            candidates.append(row)
    if wanted.namespace is None and client.database_url is not None:
        notes.append("Runs whose TaskRun was deleted (the run history) are listed one "
                     "namespace at a time: choose a namespace to see them.")
    if wanted.namespace is not None and not wanted.live_only:
        if client.database_url is None:
            notes.append("Runs whose TaskRun was deleted are in the run history, in Postgres: "
                         "start the dashboard with --database-url to list them too.")
        else:
            try:
                db = await client.session.database("the run history")
                records = await history.list_runs(
                    db, wanted.namespace, queue=wanted.queue,
                    exclude=[str(item["metadata"]["uid"]) for item in items], limit=RUN_ROWS)
            except DATABASE_TROUBLE as error:
                notes.append(f"The run history could not be read: {error}")
            else:
                for record in records:
                    past = _history_summary(record)
                    if filters.matches(past, wanted, now, with_phase=False):
                        candidates.append(RunRow(past, None))
    counts = filters.count_phases(row.run for row in candidates)
    shown = [row for row in candidates if wanted.phase is None
             or (row.run.phase or "").lower() == wanted.phase.lower()]
    shown.sort(key=lambda row: (row.run.created_at is not None, row.run.created_at), reverse=True)
    return RunList(shown[:RUN_ROWS], counts, notes, truncated=len(shown) > RUN_ROWS)


def _history_summary(record: Any) -> handles.RunSummary:
    """A history row's summary, its task named as the TaskRuns name it (the Task object)."""
    summary = handles.summarize_history(record)
    return dataclasses.replace(summary, task=manifests.task_object_name(summary.task))


@dataclass(frozen=True)
class JsonValue:
    """A JSON value as a page shows it: pretty, and cut when long (then downloadable)."""

    text: str
    truncated: bool
    size: int

    @classmethod
    def of(cls, value: Any) -> JsonValue:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        if len(text) <= SHOWN_JSON_CHARS:
            return cls(text, False, len(text))
        return cls(text[:SHOWN_JSON_CHARS] + "\n…", True, len(text))


@dataclass(frozen=True)
class Waiting:
    kind: str
    key: str | None
    until: str | None
    since: datetime | None
    token_prefix: str | None


@dataclass(frozen=True)
class AttemptRow:
    attempt: attempts.Attempt
    outcome: timelines.AttemptOutcome
    duration: str


@dataclass(frozen=True)
class ChildRow:
    run: handles.RunSummary
    depth: int


@dataclass
class RunPage:
    run: handles.RunSummary
    body: dict[str, Any] | None  # the TaskRun; None when only the history knows the run
    concurrency_key: str | None = None
    priority: int | None = None
    parent: str | None = None
    started_at: datetime | None = None
    timeline: timelines.Timeline | None = None
    attempts: list[AttemptRow] = field(default_factory=list)
    steps: list[handles.StepSummary] = field(default_factory=list)
    # The undos its completed steps registered, newest first (the order they run in),
    # and the TaskRun's status.compensation once it failed with some pending.
    compensations: list[compensations.Compensation] = field(default_factory=list)
    compensation: dict[str, Any] | None = None
    waiting: Waiting | None = None
    error: dict[str, Any] | None = None
    payload: JsonValue | None = None
    output: JsonValue | None = None
    children: list[ChildRow] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    logs: list[handles.AttemptLog] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.run.phase in resources.FINAL_PHASES


async def read_run(client: AsyncClient, namespace: str, name: str, now: datetime, *,
                   with_logs: bool = True) -> RunPage:
    """Everything the run page shows; `TaskRunNotFound` when neither the API nor the
    history knows the run, `PermissionDenied` when the user may not read it."""
    api = client.session.api
    body = await api.get_taskrun(namespace, name)
    summary = handles.summarize_taskrun(body) if body is not None else \
        await client.get(f"{namespace}/{name}")
    page = RunPage(run=summary, body=body)
    ref = f"{namespace}/{name}"
    if body is not None:
        spec, status = body.get("spec") or {}, body.get("status") or {}
        labels = body["metadata"].get("labels") or {}
        page.concurrency_key = spec.get("concurrencyKey")
        page.priority = spec.get("priority")
        page.parent = labels.get(PARENT_LABEL)
        page.started_at = _parse_time(status.get("startTime"))
        page.error = status.get("lastError")
        page.compensation = status.get("compensation")
        if not spec.get("payloadRef"):
            page.payload = JsonValue.of(spec.get("payload") or {})
        if status.get("output") is not None:
            page.output = JsonValue.of(status["output"])
        waiting_for = status.get("waitingFor")
        if waiting_for and summary.phase == resources.Phase.SUSPENDED:
            page.waiting = Waiting(kind=str(waiting_for.get("kind", "")), key=waiting_for.get("key"),
                                   until=waiting_for.get("until"), since=None, token_prefix=None)
    await asyncio.gather(
        _read_postgres_parts(client, page, ref, now),
        _read_children(client, page),
        _read_events(client, page),
        *([_read_logs(client, page, ref)] if with_logs else []))
    return page


async def _read_postgres_parts(client: AsyncClient, page: RunPage, ref: str,
                               now: datetime) -> None:
    if client.database_url is None:
        page.notes.append("Steps, attempts, the full payload and output live in Postgres: start "
                          "the dashboard with --database-url (or DURAKUBE_DATABASE_URL) to see them.")
        return
    run_id = page.run.run_id
    try:
        db = await client.session.database("steps")
        page.steps, tried, waits, row, page.compensations = await asyncio.gather(
            client.steps(ref), attempts.load_attempts(db, run_id),
            database.load_waits(db, run_id), runs.load_run(db, run_id),
            compensations.load_compensations(db, run_id))
        token = await database.open_token(db, run_id) if page.waiting is not None else None
    except DATABASE_TROUBLE as error:
        page.notes.append(f"Postgres could not be read: {error}")
        return
    # The create-token step's result is the token itself, which completes the wait.
    page.steps = [dataclasses.replace(step, result=hide_tokens(step.result)) for step in page.steps]
    page.timeline = timelines.build_timeline(page.run, tried, page.steps, waits, now)
    page.attempts = [
        AttemptRow(attempt, timelines.classify_attempt(attempt, page.run, index == len(tried) - 1),
                   _attempt_duration(attempt, tried, index, page.run, now))
        for index, attempt in enumerate(tried)]
    if row is not None:
        page.payload = JsonValue.of(row.payload)
        if row.output is not None:
            page.output = JsonValue.of(row.output)
    recorded = (row.error if row is not None else None) or next(
        (a.error for a in reversed(tried) if a.error), None)
    if recorded and page.run.phase != resources.Phase.SUCCEEDED:
        page.error = recorded
    if page.waiting is not None:
        open_wait = next((w for w in reversed(waits) if w.ended_at is None), None)
        page.waiting = Waiting(
            kind=page.waiting.kind, key=page.waiting.key, until=page.waiting.until,
            since=open_wait.started_at if open_wait is not None else None,
            token_prefix=database.token_prefix(token) if token else None)


def hide_tokens(value: Any) -> Any:
    """`value` with every waitpoint token in it cut to its first characters: a token is a
    credential, and a page is no place for one."""
    if isinstance(value, str):
        return database.token_prefix(value) + "…" if TOKEN.fullmatch(value) else value
    if isinstance(value, list):
        return [hide_tokens(item) for item in value]
    if isinstance(value, dict):
        return {key: hide_tokens(item) for key, item in value.items()}
    return value


def _attempt_duration(attempt: attempts.Attempt, tried: list[attempts.Attempt], index: int,
                      run: handles.RunSummary, now: datetime) -> str:
    following = tried[index + 1].started_at if index + 1 < len(tried) else None
    finish = attempt.finished_at or following or run.finished_at or now
    return timelines.format_span(attempt.started_at, finish)


def _parse_time(text: Any) -> datetime | None:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None


async def _read_children(client: AsyncClient, page: RunPage) -> None:
    """The run's child runs, their children under them, `CHILD_DEPTH` levels deep."""
    api = client.session.api

    async def walk(uid: str, depth: int) -> None:
        found = await api.list_taskruns(page.run.namespace, f"{PARENT_UID_LABEL}={uid}")
        children = sorted((handles.summarize_taskrun(item) for item in found.get("items", [])),
                          key=lambda child: (child.created_at is None, child.created_at, child.name))
        for child in children:
            page.children.append(ChildRow(child, depth))
            if depth < CHILD_DEPTH:
                await walk(child.run_id, depth + 1)

    if page.body is None:
        return
    await _noted(page, "child runs", walk(page.run.run_id, 1))


async def _read_events(client: AsyncClient, page: RunPage) -> None:
    if page.body is None:
        return
    found = await _noted(page, "Kubernetes Events", client.session.api.list_object_events(
        page.run.namespace, "TaskRun", page.run.name, page.run.run_id))
    page.events = found or []


async def _read_logs(client: AsyncClient, page: RunPage, ref: str) -> None:
    page.logs = await _noted(page, "logs", client.logs(ref)) or []


async def _noted(page: RunPage, what: str, reading: Awaitable[T]) -> T | None:
    """Awaits one part of the page; a refusal or a failure becomes a note, not an error."""
    try:
        return await reading
    except failures.PermissionDenied as denied:
        page.notes.append(f"Not shown, {what}: {denied}")
    except (errors.DurakubeError, *DATABASE_TROUBLE) as error:
        page.notes.append(f"Not shown, {what}: {error}")
    return None


async def read_payload(client: AsyncClient, namespace: str, name: str) -> Any:
    """The run's whole payload (for the download), read after the API let the user see it."""
    body = await client.session.api.get_taskrun(namespace, name)
    summary = handles.summarize_taskrun(body) if body is not None else \
        await client.get(f"{namespace}/{name}")
    if client.database_url is not None:
        row = await runs.load_run(await client.session.database("the payload"), summary.run_id)
        if row is not None:
            return row.payload
    return ((body or {}).get("spec") or {}).get("payload") or {}


async def read_output(client: AsyncClient, namespace: str, name: str) -> Any:
    """The run's whole output (for the download)."""
    return await client.output(f"{namespace}/{name}")


@dataclass(frozen=True)
class QueueRow:
    namespace: str
    name: str
    limit: int | None
    limit_per_key: int | None
    paused: bool
    defined: bool
    running: int
    waiting: int
    suspended: int
    oldest_waiting_since: datetime | None
    keys: list[database.KeyLoad]


@dataclass(frozen=True)
class QueuePage:
    queues: list[QueueRow]
    notes: list[str]


async def list_queues(client: AsyncClient, namespace: str | None) -> QueuePage:
    """Every queue of the namespace(s): TaskQueues, and queues only the ledger knows
    (the default queue, queues named by runs but never defined)."""
    api, notes = client.session.api, []
    defined = (await api.list_custom("TaskQueues", "taskqueues", namespace)).get("items", [])
    # The ledger is read for the namespaces the user may list TaskRuns in: the one asked
    # for, or those where runs or queues are (every namespace: a cluster-wide list).
    live = (await api.list_taskruns(namespace)).get("items", [])
    namespaces = [namespace] if namespace is not None else sorted(
        {item["metadata"]["namespace"] for item in [*defined, *live]})
    # Suspended runs hold no slot and wait in no line: their keys come from the TaskRuns.
    suspended = {str(item["metadata"]["uid"]): (item.get("spec") or {}).get("concurrencyKey") or ""
                 for item in live
                 if (item.get("status") or {}).get("phase") == resources.Phase.SUSPENDED}
    loads: dict[str, database.QueueLoad] = {}
    keys: dict[str, list[database.KeyLoad]] = {}
    if client.database_url is None:
        notes.append("Per-key counts, the admission wait and queues without a TaskQueue come "
                     "from Postgres: start the dashboard with --database-url to see them.")
    elif namespaces:
        try:
            db = await client.session.database("the queue ledger")
            found, key_loads, queues_of = await asyncio.gather(
                database.load_queues(db, namespaces), database.load_key_loads(db, namespaces),
                database.load_run_queues(db, list(suspended)))
        except DATABASE_TROUBLE as error:
            notes.append(f"The queue ledger could not be read: {error}")
        else:
            loads = {load.queue: load for load in found}
            keys = _keys_with_suspended(key_loads, suspended, queues_of)
    rows: dict[str, QueueRow] = {}
    for item in defined:
        meta, spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
        ledger_name = f"{meta['namespace']}/{meta['name']}"
        load = loads.get(ledger_name)
        rows[ledger_name] = QueueRow(
            namespace=meta["namespace"], name=meta["name"],
            limit=int(spec.get("concurrencyLimit", 0)),
            limit_per_key=spec.get("concurrencyLimitPerKey"), paused=bool(spec.get("paused")),
            defined=True,
            running=load.running if load else int(status.get("running") or 0),
            waiting=load.waiting if load else int(status.get("queued") or 0),
            suspended=load.suspended if load else int(status.get("suspended") or 0),
            oldest_waiting_since=load.oldest_waiting_since if load else None,
            keys=keys.get(ledger_name, []))
    for ledger_name, load in loads.items():
        if ledger_name in rows:
            continue
        queue_namespace, _, queue_name = ledger_name.partition("/")
        rows[ledger_name] = QueueRow(
            namespace=queue_namespace, name=queue_name, limit=load.limit,
            limit_per_key=load.limit_per_key, paused=load.paused, defined=False,
            running=load.running, waiting=load.waiting, suspended=load.suspended,
            oldest_waiting_since=load.oldest_waiting_since, keys=keys.get(ledger_name, []))
    return QueuePage([rows[key] for key in sorted(rows)], notes)


def _keys_with_suspended(key_loads: list[database.KeyLoad], suspended: dict[str, str],
                         queues_of: dict[str, str]) -> dict[str, list[database.KeyLoad]]:
    """The ledger's per-key loads, by queue, with the suspended runs of each key added."""
    counted: dict[tuple[str, str], int] = {}
    for run_id, key in suspended.items():
        if run_id in queues_of:
            counted[(queues_of[run_id], key)] = counted.get((queues_of[run_id], key), 0) + 1
    merged = {(load.queue, load.key): load for load in key_loads}
    for (queue, key), count in counted.items():
        known = merged.get((queue, key))
        merged[(queue, key)] = dataclasses.replace(known, suspended=count) if known else \
            database.KeyLoad(queue=queue, key=key, running=0, waiting=0,
                             oldest_waiting_since=None, suspended=count)
    keys: dict[str, list[database.KeyLoad]] = {}
    for queue, key in sorted(merged):
        keys.setdefault(queue, []).append(merged[(queue, key)])
    return keys


@dataclass(frozen=True)
class TaskRow:
    namespace: str
    name: str
    image: str
    entrypoint: str
    queue: str | None
    max_attempts: int | None
    timeout: str | None
    stats: database.TaskStats | None


@dataclass(frozen=True)
class TaskPage:
    tasks: list[TaskRow]
    notes: list[str]


async def list_tasks(client: AsyncClient, namespace: str | None) -> TaskPage:
    """Every Task of the namespace(s), with its recent success rate and durations."""
    api, notes = client.session.api, []
    items = (await api.list_custom("Tasks", "tasks", namespace)).get("items", [])
    namespaces = sorted({item["metadata"]["namespace"] for item in items})
    stats: dict[tuple[str, str], database.TaskStats] = {}
    if client.database_url is None:
        notes.append("Success rates and durations come from Postgres: start the dashboard "
                     "with --database-url to see them.")
    elif namespaces:
        try:
            # The history is read for namespaces whose TaskRuns the user may list.
            await asyncio.gather(*(api.list_taskruns(ns, MAY_LIST_SELECTOR)
                                   for ns in namespaces))
            db = await client.session.database("task statistics")
            for found in await database.load_task_stats(db, namespaces):
                stats[(found.namespace, manifests.task_object_name(found.task_id))] = found
        except failures.PermissionDenied as denied:
            notes.append(f"Success rates are not shown: {denied}")
        except DATABASE_TROUBLE as error:
            notes.append(f"Task statistics could not be read: {error}")
    rows = []
    for item in items:
        meta, spec = item["metadata"], item.get("spec") or {}
        rows.append(TaskRow(
            namespace=meta["namespace"], name=meta["name"], image=str(spec.get("image", "")),
            entrypoint=str(spec.get("entrypoint", "")), queue=spec.get("queue"),
            max_attempts=(spec.get("retry") or {}).get("maxAttempts"),
            timeout=spec.get("timeout"), stats=stats.get((meta["namespace"], meta["name"]))))
    rows.sort(key=lambda row: (row.namespace, row.name))
    return TaskPage(rows, notes)

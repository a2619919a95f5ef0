"""The custom resources' shapes (Task, TaskRun, TaskSchedule, ...) as pydantic models.

These models are the single source of the CRDs: `durakube.crds` turns them into
the structural OpenAPI schemas in `crds/`, and a test proves the files are
current. The operator parses objects with them; the client builds objects with
them. Field names are camelCase on the wire (Kubernetes conventions) and
snake_case in Python.

Pure data: no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from durakube import retry

GROUP = "durakube.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# "30s", "10m", "7d", "1h30m", "250ms": the durations users write in manifests.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, examples=["30s", "10m", "7d"])]
# Kubernetes object names (DNS-1123 subdomain).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# Task ids as written in @task(id=...): lowercase words joined by dashes, dots or underscores.
TASK_ID_PATTERN = r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$"

FreeObject = dict[str, Any]

# A run's tags are labels of its TaskRun, `durakube.io/tag-<tag>: "true"` (set by the
# client, recorded by the operator for the history).
TAG_LABEL_PREFIX = "durakube.io/tag-"


def read_tags(labels: Mapping[str, str]) -> list[str]:
    """The tags among a TaskRun's labels, sorted."""
    return sorted(key[len(TAG_LABEL_PREFIX):] for key in labels if key.startswith(TAG_LABEL_PREFIX))


class Resource(BaseModel):
    """Base of every wire model: camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RetrySpec(Resource):
    """Retry policy: delay = min(maxTimeout, minTimeout * factor ** (attempt - 1))."""

    max_attempts: Annotated[int, Field(ge=1, le=1000, description="Attempts in all, the first included.")] = 3
    factor: Annotated[float, Field(ge=1, le=100, description="Growth of the delay between attempts.")] = 2.0
    min_timeout: Annotated[Duration, Field(description="Delay before the second attempt.")] = "1s"
    max_timeout: Annotated[Duration, Field(description="Longest delay between attempts.")] = "60s"
    randomize: Annotated[bool, Field(description="Add jitter to each delay.")] = True
    on: Annotated[list[str], Field(description="Exception type names retried besides RetryableError.",
                                   max_length=64)] = []

    def to_policy(self) -> retry.Retry:
        """The runtime policy (durations parsed); raises if the values are inconsistent."""
        return retry.Retry.model_validate({
            "max_attempts": self.max_attempts, "factor": self.factor,
            "min_timeout": self.min_timeout, "max_timeout": self.max_timeout,
            "randomize": self.randomize, "on": tuple(self.on)})


class PodTemplate(Resource):
    """What the attempt pods of a task get besides the worker container."""

    resources: Annotated[FreeObject | None, Field(
        description="Container resources (requests, limits).")] = None
    env: Annotated[list[FreeObject] | None, Field(description="Extra container env (EnvVar).")] = None
    env_from: Annotated[list[FreeObject] | None, Field(description="EnvFromSource list.")] = None
    service_account_name: Annotated[str | None, Field(pattern=NAME_PATTERN)] = None
    node_selector: dict[str, str] | None = None
    tolerations: list[FreeObject] | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    security_context: Annotated[FreeObject | None, Field(description=(
        "Merged over the worker container's SecurityContext (non-root, no privilege "
        "escalation, read-only root, no capabilities). The namespace's Pod Security level "
        "still applies: a pod it refuses fails the run with reason PodRefused."))] = None
    pod_security_context: Annotated[FreeObject | None, Field(description=(
        "Merged over the pod's PodSecurityContext (non-root uid 65532, RuntimeDefault "
        "seccomp)."))] = None
    volumes: Annotated[list[FreeObject] | None, Field(description="Pod volumes (Volume).")] = None
    volume_mounts: Annotated[list[FreeObject] | None, Field(
        description="The worker container's volumeMounts (VolumeMount).")] = None


class OutOfMemory(Resource):
    """Larger resources for the attempts that follow an OOM kill."""

    resources: Annotated[list[FreeObject], Field(min_length=1, max_length=10, description=(
        "Container resources (requests, limits), larger step by step: the attempt after the "
        "run's n-th OOM kill gets the n-th (the last once past it), merged over "
        "podTemplate.resources."))]


class TaskSpec(Resource):
    """A registered task: which image runs it and how it is retried and timed."""

    image: Annotated[str, Field(min_length=1, description="Image with the SDK and the task's code.")]
    entrypoint: Annotated[str, Field(pattern=TASK_ID_PATTERN, max_length=200,
                                     description="The task id inside the image (@task(id=...)).")]
    modules: Annotated[list[str] | None, Field(
        description="Python modules the worker imports to find the task.")] = None
    queue: Annotated[str | None, Field(pattern=NAME_PATTERN, max_length=63)] = None
    retry: RetrySpec | None = None
    timeout: Annotated[Duration | None, Field(description="Longest duration of one attempt.")] = None
    infrastructure_retries: Annotated[int, Field(
        ge=0, le=100, description="Retries after pod loss, eviction or OOM; separate from retry.")] = 5
    input_schema: Annotated[FreeObject | None, Field(
        description="JSON schema of the payload, checked by the operator before any pod runs.")] = None
    pod_template: PodTemplate | None = None
    out_of_memory: OutOfMemory | None = None
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0, description=(
        "Seconds after a run of this task finishes before its TaskRun is deleted (its history "
        "stays in Postgres); a run's own value wins, and without either the operator's "
        "default applies."))] = None
    history_retention: Annotated[Duration | None, Field(description=(
        "How long the history of a finished run of this task (its run, steps, attempts and "
        "waits in Postgres) is kept, never less than its TaskRun; overrides the operator's "
        "default."))] = None


class TaskRef(Resource):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=253)]


class ReplayOf(Resource):
    """The run a replay or a fork starts from (set by `durakube replay`)."""

    run: Annotated[str, Field(pattern=NAME_PATTERN, max_length=253,
                              description="The TaskRun replayed, in the same namespace.")]
    run_id: Annotated[str, Field(min_length=1, max_length=253,
                                 description="Its run id (the TaskRun's uid).")]
    from_step: Annotated[int | None, Field(ge=1, description=(
        "Fork: the steps recorded before this one are copied into the new run, which "
        "runs this step and the ones after it again."))] = None
    latest: Annotated[bool, Field(description=(
        "Run the Task as it is now; without it, the replay keeps the code the replayed "
        "run was pinned to."))] = False


class Debounce(Resource):
    """Of the runs of one Task in a namespace that share a key, only the last of a burst
    runs: each waits `delay`, and starts only if no newer run with its key came meanwhile."""

    key: Annotated[str, Field(min_length=1, max_length=253, description=(
        "Runs of the same Task and namespace with this key debounce each other."))]
    delay: Annotated[Duration, Field(description=(
        "How long the run waits for a newer one with its key before it starts."))]


# Every field of a TaskRun's spec but `cancel` is fixed at creation: what ran is what was
# asked for, and a replay never meets different inputs. (Tekton's TaskRun does the same.)
_FIXED_SPEC_FIELDS = ("taskRef", "payload", "payloadRef", "queue", "concurrencyKey", "priority",
                      "delay", "ttl", "retry", "timeout", "ttlSecondsAfterFinished", "replayOf")


def _fixed(field: str) -> str:
    return (f"has(self.{field}) == has(oldSelf.{field}) && "
            f"(!has(self.{field}) || self.{field} == oldSelf.{field})")


class TaskRunSpec(Resource):
    """One request to run a task with a payload."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "!(has(self.payload) && has(self.payloadRef))",
         "message": "give spec.payload or spec.payloadRef, not both"},
        {"rule": " && ".join(f"({_fixed(field)})" for field in _FIXED_SPEC_FIELDS),
         "message": "the spec of a TaskRun cannot change once created, except spec.cancel"},
        {"rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
         "message": "a canceled TaskRun cannot be uncanceled"}]})

    task_ref: TaskRef
    payload: Annotated[FreeObject, Field(description="The task's input: any JSON object.")] = {}
    payload_ref: Annotated[str | None, Field(
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="A payload too large for the object, stored in Postgres by the client.")] = None
    queue: Annotated[str | None, Field(pattern=NAME_PATTERN, max_length=63)] = None
    concurrency_key: Annotated[str | None, Field(max_length=253)] = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    delay: Duration | None = None
    ttl: Annotated[Duration | None, Field(description="Expire if still queued after this long.")] = None
    retry: RetrySpec | None = None
    timeout: Annotated[Duration | None, Field(description="Overrides the task's attempt timeout.")] = None
    cancel: Annotated[bool, Field(description="Set to true to cancel the run.")] = False
    debounce: Debounce | None = None
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0, description=(
        "Seconds after the run finishes before its TaskRun is deleted (its history stays in "
        "Postgres); overrides the Task's and the operator's default."))] = None
    replay_of: ReplayOf | None = None


class PinnedTask(Resource):
    """What a run's pods take from its Task, snapshotted when its first attempt starts:
    every later attempt and resume uses it, even once the Task changed or is gone."""

    image: Annotated[str, Field(min_length=1)]
    image_digest: Annotated[str | None, Field(description=(
        "The digest the first attempt's image resolved to (its pod's imageID); later "
        "attempts run image@digest when the image is a tag."))] = None
    entrypoint: str
    modules: list[str] | None = None
    queue: str | None = None
    retry: RetrySpec | None = None
    timeout: Duration | None = None
    infrastructure_retries: Annotated[int, Field(ge=0)] = 5
    pod_template: PodTemplate | None = None
    out_of_memory: OutOfMemory | None = None
    task_generation: Annotated[int | None, Field(
        description="The Task's metadata.generation when it was pinned.")] = None

    @classmethod
    def of(cls, task: Task) -> PinnedTask:
        spec = task.spec
        return cls(image=spec.image, entrypoint=spec.entrypoint, modules=spec.modules,
                   queue=spec.queue, retry=spec.retry, timeout=spec.timeout,
                   infrastructure_retries=spec.infrastructure_retries,
                   pod_template=spec.pod_template, out_of_memory=spec.out_of_memory,
                   task_generation=task.metadata.generation)

    def task(self, name: str, current: Task | None) -> Task:
        """The Task as pinned, named `name`; what is not pinned (the input schema,
        retention) comes from the `current` Task when there is one."""
        base = current.spec if current is not None else None
        spec = TaskSpec(image=pinned_image(self.image, self.image_digest),
                        entrypoint=self.entrypoint, modules=self.modules, queue=self.queue,
                        retry=self.retry, timeout=self.timeout,
                        infrastructure_retries=self.infrastructure_retries,
                        pod_template=self.pod_template, out_of_memory=self.out_of_memory,
                        ttl_seconds_after_finished=base.ttl_seconds_after_finished if base else None,
                        history_retention=base.history_retention if base else None)
        meta = current.metadata if current is not None else ObjectMeta(name=name)
        return Task(metadata=meta, spec=spec)


def pinned_image(image: str, digest: str | None) -> str:
    """`image` held to `digest`: `repository@digest` for a tag (the tag is dropped, as a
    digest names the content); an image already given by digest is kept as it is."""
    if not digest or "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    repository = image[: len(image) - len(last)] + last.split(":", 1)[0]
    return f"{repository}@{digest}"


def image_digest(image_id: str | None) -> str | None:
    """The repository digest in a container status's imageID ("repo@sha256:..."), which
    `repo@digest` pulls again. None for a bare "sha256:..." (what a kubelet reports for an
    image loaded onto the node rather than pulled: the image's own id, its config's digest,
    which no registry serves under the repository)."""
    if not image_id or "@" not in image_id:
        return None
    digest = image_id.rsplit("@", 1)[-1]
    return digest if _DIGEST.match(digest) else None


# An OCI content digest: algorithm ":" encoded (opencontainers/image-spec, descriptor.md).
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")


class Phase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    BACKING_OFF = "BackingOff"
    SUSPENDED = "Suspended"
    # Failed for good: running the compensations its completed steps registered.
    COMPENSATING = "Compensating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    TIMED_OUT = "TimedOut"
    EXPIRED = "Expired"


FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELED, Phase.TIMED_OUT, Phase.EXPIRED})


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Resource):
    type: str
    status: ConditionStatus
    reason: Annotated[str, Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")]
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class RunError(Resource):
    type: str
    message: str
    retryable: bool = False


class CompensationState(StrEnum):
    WAITING = "Waiting"  # for its back-off or a slot
    RUNNING = "Running"  # an attempt in compensation mode runs
    COMPLETED = "Completed"  # every compensation ran
    FAILED = "Failed"  # the budget of compensation attempts ran out


class CompensationStatus(Resource):
    """The compensation phase of a run that failed for good (see `durakube.compensating`)."""

    state: CompensationState
    end_phase: Annotated[Phase, Field(description=(
        "The phase the run ends in once compensated: Failed or TimedOut."))]
    reason: Annotated[str, Field(description="The reason the run failed with.")]
    message: str = ""
    total: Annotated[int, Field(ge=0, description="Compensations recorded.")] = 0
    completed: Annotated[int, Field(ge=0, description="Compensations that ran.")] = 0
    failed: Annotated[int, Field(ge=0, description=(
        "Compensations not completed whose last try failed."))] = 0
    attempts: Annotated[int, Field(ge=0, description="Attempts in compensation mode started.")] = 0
    last_error: RunError | None = None


class TaskRunStatus(Resource):
    """What the operator reports; phase is for people, the Succeeded condition for tools."""

    phase: Phase | None = None
    conditions: list[Condition] = []
    observed_generation: int | None = None
    run_id: str | None = None
    attempt: Annotated[int, Field(ge=0)] = 0
    infrastructure_failures: Annotated[int, Field(ge=0)] = 0
    resumes: Annotated[int, Field(ge=0, description="Attempts that ended by suspending.")] = 0
    oom_kills: Annotated[int, Field(ge=0, description="Attempts ended by an OOM kill.")] = 0
    resources: Annotated[FreeObject | None, Field(description=(
        "The worker's resources in the current attempt, when an OOM kill made them larger "
        "(the Task's outOfMemory.resources)."))] = None
    pod_name: str | None = None
    current_step: str | None = None
    completed_steps: Annotated[int, Field(ge=0)] = 0
    start_time: datetime | None = None
    completion_time: datetime | None = None
    next_attempt_at: datetime | None = None
    waiting_for: FreeObject | None = None
    queue_position: int | None = None
    last_error: RunError | None = None
    output: Annotated[FreeObject | None, Field(description="A small preview of the output.")] = None
    metadata: Annotated[FreeObject | None, Field(description=(
        "The run's metadata, as its task last set it (ctx.update_metadata)."))] = None
    pinned: Annotated[PinnedTask | None, Field(description=(
        "What the run's pods take from its Task, as it was when the first attempt "
        "started."))] = None
    compensation: Annotated[CompensationStatus | None, Field(description=(
        "Set once the run failed for good with compensations to run."))] = None


class RateLimit(Resource):
    """At most `starts` runs admitted in any `period` (a sliding window)."""

    starts: Annotated[int, Field(ge=1, le=1_000_000, description="Runs admitted per period.")]
    period: Annotated[Duration, Field(description="The sliding window, e.g. 1m or 1h.")]


class TaskQueueSpec(Resource):
    """How many runs of a queue execute at once, and how many may start per period."""

    concurrency_limit: Annotated[int, Field(
        ge=0, le=100_000, description="Runs executing at once; 0 admits nothing (paused).")]
    concurrency_limit_per_key: Annotated[int | None, Field(
        ge=1, le=100_000,
        description="Runs executing at once per concurrencyKey (e.g. per tenant).")] = None
    paused: Annotated[bool, Field(description="Admit nothing new; running pods go on.")] = False
    rate_limit: Annotated[RateLimit | None, Field(description=(
        "Runs of the queue admitted per period, beside the concurrency limit."))] = None
    rate_limit_per_key: Annotated[RateLimit | None, Field(description=(
        "Runs admitted per period per concurrencyKey (runs without a key share the "
        "queue's limits only)."))] = None


class TaskQueueStatus(Resource):
    running: Annotated[int, Field(ge=0)] = 0
    queued: Annotated[int, Field(ge=0)] = 0
    suspended: Annotated[int, Field(ge=0)] = 0
    conditions: list[Condition] = []
    observed_generation: int | None = None


class TaskEventSpec(Resource):
    """An event for the runs of its namespace waiting on `key`, or the completion of one
    waitpoint `token`."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.key) != has(self.token)",
         "message": "give exactly one of spec.key (an event) and spec.token (a waitpoint token)"},
        {"rule": "!has(self.key) || !self.key.startsWith('durakube.io/')",
         "message": "event keys under durakube.io/ are reserved: they carry the results of child "
                    "runs, which only the operator sends"}]})
    key: Annotated[str | None, Field(
        min_length=1, max_length=253,
        description="Delivered to every run of this namespace waiting on this key.")] = None
    token: Annotated[str | None, Field(pattern=r"^wpt_[A-Za-z0-9_-]{16,}$",
                                       description="Completes the wait of this waitpoint token.")] = None
    data: Annotated[FreeObject, Field(description="What the wait returns to the task.")] = {}


class DeliveryPhase(StrEnum):
    DELIVERED = "Delivered"
    BUFFERED = "Buffered"
    FAILED = "Failed"


class TaskEventStatus(Resource):
    phase: DeliveryPhase | None = None
    delivered_to: Annotated[int, Field(ge=0)] = 0
    delivered_at: datetime | None = None
    message: str = ""


class OverlapPolicy(StrEnum):
    """What a TaskSchedule does when a time comes while its previous run is still active."""

    SKIP = "Skip"  # that time is skipped (and counted)
    QUEUE_ONE = "QueueOne"  # it runs when the active run ends; at most one waits, later ones skip
    ALLOW = "Allow"  # it runs at once, beside the active run


# A cron expression: five fields (minute hour day-of-month month day-of-week) or a macro.
# The fields' values are checked by the operator's cron parser; this shape is what the API
# server can check at `kubectl apply`.
CRON_PATTERN = (r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
                r"[-0-9A-Za-z*/,?#]+(\s+[-0-9A-Za-z*/,?#]+){4})\s*$")
# An IANA time zone name ("Europe/Paris", "America/Argentina/Buenos_Aires", "UTC").
TIME_ZONE_PATTERN = r"^[A-Za-z][-A-Za-z0-9_+]*(/[-A-Za-z0-9_+]+)*$"


class TaskScheduleSpec(Resource):
    """Runs of a task at the times of a cron expression or of a fixed interval."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.schedule) != has(self.interval)",
         "message": "give exactly one of spec.schedule (a cron expression) and spec.interval"},
        {"rule": "!has(self.timeZone) || has(self.schedule)",
         "message": "spec.timeZone applies to spec.schedule only; an interval counts from the "
                    "Unix epoch"}]})

    schedule: Annotated[str | None, Field(
        max_length=200,
        description=("A cron expression of five fields (minute hour day-of-month month "
                     "day-of-week), or @yearly, @monthly, @weekly, @daily or @hourly."),
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": f"self.matches('{CRON_PATTERN.replace(chr(92), chr(92) * 2)}')",
            "message": ("spec.schedule must be a cron expression of five fields (minute hour "
                        "day-of-month month day-of-week) or a macro such as @hourly; "
                        "give the time zone in spec.timeZone, not as TZ= or CRON_TZ=")}]})] = None
    time_zone: Annotated[str | None, Field(
        max_length=64, pattern=TIME_ZONE_PATTERN,
        description="The IANA time zone of spec.schedule (default UTC), e.g. Europe/Paris.")] = None
    interval: Annotated[Duration | None, Field(description=(
        "Instead of a cron expression: a run every this long (whole seconds, at least 1s), at "
        "the multiples of it since the Unix epoch."))] = None
    task_ref: TaskRef
    payload: Annotated[FreeObject, Field(description=(
        "The payload of every run; in its strings, $(scheduledTime) becomes the run's scheduled "
        "time (RFC 3339, UTC) and $(scheduleName) the TaskSchedule's name."))] = {}
    queue: Annotated[str | None, Field(pattern=NAME_PATTERN, max_length=63)] = None
    concurrency_key: Annotated[str | None, Field(max_length=253)] = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    timeout: Annotated[Duration | None, Field(description="Overrides the task's attempt timeout.")] = None
    overlap_policy: Annotated[OverlapPolicy, Field(description=(
        "When a time comes while a run of this schedule is still active: Skip it, QueueOne "
        "(run it when the active run ends; at most one waits) or Allow it to run beside."))] = (
        OverlapPolicy.SKIP)
    catchup_window: Annotated[Duration, Field(description=(
        "After the operator was down, the times missed within this window run once each; "
        "older ones are skipped and counted in status.missed."))] = "1h"
    jitter: Annotated[Duration | None, Field(description=(
        "Delay each run by up to this long, the same for a given time (spreads the load of "
        "many schedules firing at once); keep it shorter than the time between runs."))] = None
    paused: Annotated[bool, Field(description=(
        "Create no runs; the times that pass while paused are not caught up."))] = False
    successful_runs_history_limit: Annotated[int, Field(ge=0, le=1000, description=(
        "Succeeded TaskRuns of this schedule to keep; older ones are deleted (their history "
        "stays in Postgres)."))] = 3
    failed_runs_history_limit: Annotated[int, Field(ge=0, le=1000, description=(
        "Failed, timed out, canceled or expired TaskRuns of this schedule to keep."))] = 1


class TaskScheduleStatus(Resource):
    """What the operator reports of a TaskSchedule: its times, its runs, its counts."""

    last_schedule_time: Annotated[datetime | None, Field(
        description="The scheduled time of the latest run created.")] = None
    next_schedule_time: Annotated[datetime | None, Field(
        description="The next time a run is due (none while paused or invalid).")] = None
    last_run_name: Annotated[str | None, Field(description="The latest TaskRun created.")] = None
    scheduled_until: Annotated[datetime | None, Field(description=(
        "Every scheduled time up to this one was handled: run, skipped or missed."))] = None
    queued_time: Annotated[datetime | None, Field(description=(
        "With overlapPolicy QueueOne: the time waiting for the active run to end."))] = None
    active: Annotated[list[str], Field(description="The TaskRuns of this schedule still active.")] = []
    runs: Annotated[int, Field(ge=0, description="Runs created.")] = 0
    skipped: Annotated[int, Field(ge=0, description=(
        "Times skipped because a run was still active (overlapPolicy)."))] = 0
    missed: Annotated[int, Field(ge=0, description=(
        "Times missed while the operator was down, older than the catch-up window."))] = 0
    conditions: list[Condition] = []
    observed_generation: int | None = None


class ObjectMeta(BaseModel):
    """The part of metadata the models read; the apiserver owns the rest."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)
    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class Task(Resource):
    api_version: str = API_VERSION
    kind: str = "Task"
    metadata: ObjectMeta
    spec: TaskSpec


class TaskQueue(Resource):
    api_version: str = API_VERSION
    kind: str = "TaskQueue"
    metadata: ObjectMeta
    spec: TaskQueueSpec
    status: TaskQueueStatus = TaskQueueStatus()


class TaskRun(Resource):
    api_version: str = API_VERSION
    kind: str = "TaskRun"
    metadata: ObjectMeta
    spec: TaskRunSpec
    status: TaskRunStatus = TaskRunStatus()


class TaskSchedule(Resource):
    api_version: str = API_VERSION
    kind: str = "TaskSchedule"
    metadata: ObjectMeta
    spec: TaskScheduleSpec
    status: TaskScheduleStatus = TaskScheduleStatus()

"""The custom resources' shapes (Task, TaskRun) as pydantic models.

These models are the single source of the CRDs: `durakube.crds` turns them into
the structural OpenAPI schemas in `crds/`, and a test proves the files are
current. The operator parses objects with them; the client builds objects with
them. Field names are camelCase on the wire (Kubernetes conventions) and
snake_case in Python.

Pure data: no I/O here.
"""

from __future__ import annotations

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


# Every field of a TaskRun's spec but `cancel` is fixed at creation: what ran is what was
# asked for, and a replay never meets different inputs. (Tekton's TaskRun does the same.)
_FIXED_SPEC_FIELDS = ("taskRef", "payload", "payloadRef", "queue", "concurrencyKey", "priority",
                      "delay", "ttl", "retry", "timeout", "ttlSecondsAfterFinished")


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
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0, description=(
        "Seconds after the run finishes before its TaskRun is deleted (its history stays in "
        "Postgres); overrides the Task's and the operator's default."))] = None


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
    compensation: Annotated[CompensationStatus | None, Field(description=(
        "Set once the run failed for good with compensations to run."))] = None


class TaskQueueSpec(Resource):
    """How many runs of a queue execute at once."""

    concurrency_limit: Annotated[int, Field(
        ge=0, le=100_000, description="Runs executing at once; 0 admits nothing (paused).")]
    concurrency_limit_per_key: Annotated[int | None, Field(
        ge=1, le=100_000,
        description="Runs executing at once per concurrencyKey (e.g. per tenant).")] = None
    paused: Annotated[bool, Field(description="Admit nothing new; running pods go on.")] = False


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

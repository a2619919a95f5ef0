"""Builds the objects the client sends: TaskRun bodies, and Task manifests from @task.

- TaskRun names: `<task>-<sha256(idempotency key)[:12]>` when the caller gives an
  idempotency key, so that any number of concurrent triggers with one key race to
  create the same object and the API server keeps exactly one (409 for the rest);
  otherwise `metadata.generateName: <task>-` and the API server picks the suffix
  (it retries a clash of generated names itself since Kubernetes 1.32).
- Tags become labels `durakube.io/tag-<tag>: "true"`, so `list(tags=...)` is a
  label selector on the API server (and `kubectl get tr -l durakube.io/tag-nightly`
  works). A tag is therefore a label name: letters, digits, `-`, `_`, `.`, at most
  59 characters.
- Payloads whose JSON exceeds `payloads.INLINE_LIMIT_BYTES` travel by reference:
  the caller stores them in Postgres and the TaskRun carries `spec.payloadRef`.
- `build_task_manifests(module)` turns every @task a module registers into a Task
  manifest, validated with `resources.Task` (what `durakube manifests` prints).

Pure functions: no I/O (importing the module named in `build_task_manifests` aside).

Reads task definitions from `durakube.tasks`, the registry and the decorators,
which sits below the step engine: importing it loads no `context`, `waiting` or
`triggering`, so neither does the client. Only the user's task modules that
`build_task_manifests` imports may load the engine, when they use it at import.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from durakube import durations, resources, tasks
from durakube.store import payloads

TAG_LABEL_PREFIX = resources.TAG_LABEL_PREFIX
IDEMPOTENCY_KEY_LABEL = "durakube.io/idempotency-key-hash"
# The key itself: the run's name is derived from it, which is what makes a second
# trigger with the same key find the first run (the API server refuses the same name).
IDEMPOTENCY_KEY_ANNOTATION = "durakube.io/idempotency-key"
# Room for "-<12 hex>" after the task part and for the operator's "-<attempt>" pod
# suffix, so the pod name stays a 63-character label value without hashing.
_TASK_PART_LIMIT = 40
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,57}[A-Za-z0-9])?$")


def task_object_name(task_id: str) -> str:
    """The Task object's name for a task id: ids may hold `_`, object names may not."""
    return task_id.replace("_", "-").lower()


def key_digest(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]


def derive_run_name(task: str, idempotency_key: str) -> str:
    """The TaskRun's name for an idempotency key: the same (task, key), the same name."""
    return f"{run_name_prefix(task)}{key_digest(idempotency_key)}"


def run_name_prefix(task: str) -> str:
    """The start of every TaskRun name of `task` (its `generateName` when keyless)."""
    return task_object_name(task)[:_TASK_PART_LIMIT].rstrip("-.") + "-"


def label_tags(tags: Iterable[str]) -> dict[str, str]:
    """The labels that carry `tags`; raises ValueError naming a tag that cannot be one."""
    labels: dict[str, str] = {}
    for tag in tags:
        if not _TAG_PATTERN.match(tag):
            raise ValueError(
                f"tag {tag!r} cannot be a label name: use letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit, at most 59 characters")
        labels[TAG_LABEL_PREFIX + tag] = "true"
    return labels


read_tags = resources.read_tags


def select_tags(tags: Iterable[str]) -> str:
    """A label selector matching runs that carry every one of `tags`."""
    return ",".join(f"{key}=true" for key in label_tags(tags))


def fits_inline(payload: Any) -> bool:
    """Whether the payload may travel inside the TaskRun (else by reference, in Postgres)."""
    return payloads.encoded_size(payload) <= payloads.INLINE_LIMIT_BYTES


def format_duration(value: durations.Duration) -> str:
    """A duration as the CRDs spell it ("10m" kept, 90 -> "90s", 1.5 -> "1500ms")."""
    if isinstance(value, str) and re.match(resources.DURATION_PATTERN, value):
        return value
    seconds = durations.parse_duration(value)
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def build_taskrun(task: str, *, name: str | None, payload: dict[str, Any] | None = None,
                  payload_ref: str | None = None, queue: str | None = None,
                  concurrency_key: str | None = None, priority: int | None = None,
                  idempotency_key: str | None = None, delay: durations.Duration | None = None,
                  ttl: durations.Duration | None = None, tags: Iterable[str] = (),
                  annotations: Mapping[str, str] | None = None,
                  replay_of: Mapping[str, Any] | None = None,
                  debounce: tuple[str, durations.Duration] | None = None) -> dict[str, Any]:
    """A TaskRun body, validated with `resources.TaskRun` (raises pydantic.ValidationError).

    Without a `name`, the body asks the API server to generate one (`generateName`).
    """
    spec: dict[str, Any] = {"taskRef": {"name": task_object_name(task)}}
    if payload_ref is not None:
        spec["payloadRef"] = payload_ref
    else:
        spec["payload"] = payload or {}
    optional = {"queue": queue, "concurrencyKey": concurrency_key, "priority": priority,
                "delay": None if delay is None else format_duration(delay),
                "ttl": None if ttl is None else format_duration(ttl)}
    spec.update({key: value for key, value in optional.items() if value is not None})
    if replay_of is not None:
        spec["replayOf"] = dict(replay_of)
    if debounce is not None:
        key, wait = debounce
        spec["debounce"] = {"key": key, "delay": format_duration(wait)}
    labels = label_tags(tags)
    if idempotency_key is not None:
        labels[IDEMPOTENCY_KEY_LABEL] = key_digest(idempotency_key)
    metadata: dict[str, Any] = ({"name": name} if name is not None
                                else {"generateName": run_name_prefix(task)})
    if labels:
        metadata["labels"] = labels
    annotations = dict(annotations or {})
    if idempotency_key is not None:
        annotations[IDEMPOTENCY_KEY_ANNOTATION] = idempotency_key
    if annotations:
        metadata["annotations"] = annotations
    body = {"apiVersion": resources.API_VERSION, "kind": "TaskRun", "metadata": metadata,
            "spec": spec}
    # The model wants a name: a generated one is the prefix and five more characters.
    resources.TaskRun.model_validate(
        body if name is not None else {**body, "metadata": {**metadata, "name": f"{run_name_prefix(task)}x"}})
    return body


def build_task_manifest(definition: tasks.TaskDefinition, *, image: str,
                        module: str) -> dict[str, Any]:
    """The Task object for one registered task, validated with `resources.Task`."""
    policy = definition.retry
    spec: dict[str, Any] = {
        "image": image,
        "entrypoint": definition.id,
        "modules": [module],
        "retry": {"maxAttempts": policy.max_attempts, "factor": policy.factor,
                  "minTimeout": format_duration(policy.min_timeout),
                  "maxTimeout": format_duration(policy.max_timeout),
                  "randomize": policy.randomize},
    }
    if policy.on:
        spec["retry"]["on"] = list(policy.on)
    if definition.queue is not None:
        spec["queue"] = definition.queue
    if definition.timeout is not None:
        spec["timeout"] = format_duration(definition.timeout)
    if definition.input_model is not None:
        spec["inputSchema"] = definition.input_model.model_json_schema(by_alias=True)
    body = {"apiVersion": resources.API_VERSION, "kind": "Task",
            "metadata": {"name": task_object_name(definition.id)}, "spec": spec}
    resources.Task.model_validate(body)
    return body


def build_task_manifests(module: str, *, image: str,
                         registry: tasks.Registry | None = None) -> list[dict[str, Any]]:
    """Task manifests of every @task that `module` defines, in id order.

    Imports the module; only tasks whose function lives in it are emitted (tasks of
    modules it imports belong to those modules' manifests).
    """
    imported = importlib.import_module(module)
    source = registry if registry is not None else tasks.registry
    found = [definition for definition in source
             if getattr(definition.fn, "__module__", None) == imported.__name__]
    return [build_task_manifest(definition, image=image, module=module)
            for definition in sorted(found, key=lambda d: d.id)]

"""Builds the pod of one attempt of a TaskRun.

One pod per attempt, named deterministically from the run and the attempt number,
so that "already exists" means "adopt it" and never a second pod. The pod is owned
by its TaskRun (garbage-collected with it), runs the worker image's entrypoint with
the run id and attempt in its env, reads the workers' Postgres DSN and the
attempt's secret from its namespace's attempt key ring (`build_key_ring`, one Secret
for many attempts; the pod reads only its own key, and never from the custom
resource: `with_attempt_key`), and gets a
restrictive security context: non-root, a read-only root filesystem, no
capabilities. Tasks still get two writable folders, emptyDirs at /tmp and at their
home (`HOME`), because libraries write there (caches, temporary files). When the
TaskRun or the Task sets a retry policy, the worker gets it too, to classify errors
under it. With traces on, it gets the OTLP endpoint and the run's span as its
parent (`TRACEPARENT`, `tracing.attempt_env`).

Pure functions: building a manifest does no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any

from durakube import durations, resources
from durakube_operator import settings as settings_module
from durakube_operator import tracing

LABEL_RUN = "durakube.io/run"
LABEL_RUN_UID = "durakube.io/run-uid"
LABEL_TASK = "durakube.io/task"
LABEL_QUEUE = "durakube.io/queue"
LABEL_ATTEMPT = "durakube.io/attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "durakube"
CONTAINER = "task"
# Where the worker writes its one-line outcome hint for `kubectl describe pod`.
TERMINATION_LOG = "/dev/termination-log"
# The key of the workers' DSN in a key ring's Secret.
SECRET_DATABASE_URL = "database-url"
# The label of the Secrets that hold attempt key rings (`build_key_ring`).
LABEL_KEY_RING = "durakube.io/key-ring"
# The writable folders of an attempt pod (emptyDirs): mount path -> volume name.
HOME = "/home/durakube"
SCRATCH_VOLUMES = {"/tmp": "durakube-tmp", HOME: "durakube-home"}

_NAME_LIMIT = 63


def attempt_pod_name(run_name: str, attempt: int) -> str:
    """`<run>-<attempt>`, shortened with a hash when the run's name is long, so the
    pod name stays a valid label value and the same inputs always give the same name."""
    suffix = f"-{attempt}"
    name = f"{run_name}{suffix}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:8]
    keep = _NAME_LIMIT - len(suffix) - len(digest) - 1
    return f"{run_name[:keep].rstrip('-.')}-{digest}{suffix}"


def label_value(value: str) -> str:
    """A label value (at most 63 characters) that stays unique for long inputs."""
    if len(value) <= _NAME_LIMIT:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[:_NAME_LIMIT - 9].rstrip('-._')}-{digest}"


def duration_seconds(text: str | None) -> int | None:
    if text is None:
        return None
    return max(1, round(durations.parse_duration(text)))


def attempt_resources(task: resources.Task, oom_kills: int) -> dict[str, Any] | None:
    """The worker container's resources after `oom_kills` OOM kills of the run: the Task's
    podTemplate.resources, with the `oom_kills`-th of its outOfMemory.resources (the last
    once past it) merged over them, requests and limits each by resource name."""
    template = task.spec.pod_template or resources.PodTemplate()
    base = dict(template.resources or {})
    larger = task.spec.out_of_memory.resources if task.spec.out_of_memory else []
    if not oom_kills or not larger:
        return base or None
    step = larger[min(oom_kills, len(larger)) - 1]
    merged = {**base, **step}
    for part in ("requests", "limits"):
        if isinstance(base.get(part), dict) and isinstance(step.get(part), dict):
            merged[part] = {**base[part], **step[part]}
    return merged


def build_attempt_pod(
    run: resources.TaskRun,
    task: resources.Task,
    attempt: int,
    settings: settings_module.Settings,
    oom_kills: int = 0,
    compensating: bool = False,
) -> dict[str, Any]:
    """The manifest of attempt `attempt` (1-based) of `run`, the run having had `oom_kills`
    OOM kills so far (`attempt_resources`); `compensating`: an attempt in compensation
    mode, whose worker runs the run's recorded compensations."""
    meta = run.metadata
    assert meta.uid is not None, "a stored TaskRun has a uid"
    template = task.spec.pod_template or resources.PodTemplate()
    queue = run.spec.queue or task.spec.queue or settings.default_queue
    labels = {
        **(template.labels or {}),
        LABEL_RUN: label_value(meta.name),
        LABEL_RUN_UID: meta.uid,
        LABEL_TASK: label_value(task.metadata.name),
        LABEL_QUEUE: label_value(queue),
        LABEL_ATTEMPT: str(attempt),
        LABEL_MANAGED_BY: MANAGER,
    }
    env: list[dict[str, Any]] = [
        {"name": "DURAKUBE_RUN_ID", "value": meta.uid},
        {"name": "DURAKUBE_ATTEMPT", "value": str(attempt)},
        {"name": "DURAKUBE_TASK_ID", "value": task.spec.entrypoint},
        # Filled in by `with_attempt_key` once the attempt holds its key.
        {"name": "DURAKUBE_DATABASE_URL", "valueFrom": {"secretKeyRef": {
            "name": "", "key": SECRET_DATABASE_URL}}},
        {"name": "DURAKUBE_ATTEMPT_SECRET", "valueFrom": {"secretKeyRef": {"name": "", "key": ""}}},
        {"name": "DURAKUBE_TERMINATION_MESSAGE_PATH", "value": TERMINATION_LOG},
        {"name": "DURAKUBE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HOME", "value": HOME},
    ]
    if task.spec.modules:
        env.append({"name": "DURAKUBE_TASK_MODULES", "value": ",".join(task.spec.modules)})
    # Without a spec's policy the worker uses its decorator's and records it.
    spec_retry = run.spec.retry or task.spec.retry
    if spec_retry is not None:
        env.append({"name": "DURAKUBE_RETRY_POLICY",
                    "value": spec_retry.to_policy().model_dump_json()})
    # The operator's log format is the pods' default; a Task's env may choose its own.
    if not any(item.get("name") == "DURAKUBE_LOG_FORMAT" for item in template.env or []):
        env.append({"name": "DURAKUBE_LOG_FORMAT", "value": settings.log_format})
    # With traces on, the attempt's span goes under the run's (`tracing`).
    env.extend(tracing.attempt_env(run, settings,
                                   {str(item.get("name")) for item in template.env or []}))
    env.extend(template.env or [])
    if compensating:
        # Last, so that no variable of the Task's template can turn the mode off.
        env.append({"name": "DURAKUBE_COMPENSATING", "value": "true"})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": task.spec.image,
        "env": env,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            **(template.security_context or {}),
        },
    }
    # The task's own mounts win where they take the same path as a scratch folder.
    taken = {mount.get("mountPath") for mount in template.volume_mounts or []}
    scratch = {path: name for path, name in SCRATCH_VOLUMES.items() if path not in taken}
    container["volumeMounts"] = [
        *({"name": name, "mountPath": path} for path, name in scratch.items()),
        *(template.volume_mounts or [])]
    if template.env_from:
        container["envFrom"] = template.env_from
    worker_resources = attempt_resources(task, oom_kills)
    if worker_resources:
        container["resources"] = worker_resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.worker_uid,
            "runAsGroup": settings.worker_uid,
            "seccompProfile": {"type": "RuntimeDefault"},
            **(template.pod_security_context or {}),
        },
        "containers": [container],
    }
    spec["volumes"] = [*({"name": name, "emptyDir": {}} for name in scratch.values()),
                       *(template.volumes or [])]
    timeout = duration_seconds(run.spec.timeout or task.spec.timeout)
    if timeout is not None:
        spec["activeDeadlineSeconds"] = timeout
    if template.service_account_name:
        spec["serviceAccountName"] = template.service_account_name
    if template.node_selector:
        spec["nodeSelector"] = template.node_selector
    if template.tolerations:
        spec["tolerations"] = template.tolerations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": attempt_pod_name(meta.name, attempt),
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": dict(template.annotations or {}),
            "ownerReferences": [{
                "apiVersion": resources.API_VERSION,
                "kind": "TaskRun",
                "name": meta.name,
                "uid": meta.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": spec,
    }


def with_attempt_key(pod: dict[str, Any], ring: str, slot: int) -> dict[str, Any]:
    """`pod` reading the workers' DSN and its attempt's secret from key ring `ring`, its key
    being `slot`'s (`durakube.store.keyrings`); the pod itself is not changed."""
    references = {"DURAKUBE_DATABASE_URL": {"name": ring, "key": SECRET_DATABASE_URL},
                  "DURAKUBE_ATTEMPT_SECRET": {"name": ring, "key": ring_key(slot)}}
    first, *others = pod["spec"]["containers"]
    # Only the operator's own entries (named nothing yet), never a task's.
    env = [{"name": item["name"], "valueFrom": {"secretKeyRef": references[item["name"]]}}
           if item["name"] in references
           and ((item.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == ""
           else item
           for item in first["env"]]
    return {**pod, "spec": {**pod["spec"], "containers": [{**first, "env": env}, *others]}}


def ring_key(slot: int) -> str:
    """The Secret key of a ring's key in `slot`."""
    return f"key-{slot}"


def build_key_ring(namespace: str, name: str, database_url: str, secrets: list[str]) -> dict[str, Any]:
    """The Secret of an attempt key ring: the workers' DSN and one secret per slot. Each
    attempt pod reads the DSN and its own slot's key only; Postgres accepts a key only
    from the attempt that claimed it, while that attempt is live."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_KEY_RING: "true", LABEL_MANAGED_BY: MANAGER},
        },
        "stringData": {SECRET_DATABASE_URL: database_url,
                       **{ring_key(slot): secret for slot, secret in enumerate(secrets)}},
    }


def owning_run(pod: dict[str, Any]) -> str | None:
    """The name of the TaskRun that controls an attempt pod (None for another pod)."""
    for owner in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("controller") and owner.get("kind") == "TaskRun":
            return str(owner["name"])
    return None


# The pod conditions a decision reads: Kubernetes taking the pod away, and its readiness
# (a pod being deleted from a node that no longer reports ready is lost with it).
_DECISIVE_CONDITIONS = ("DisruptionTarget", "Ready")


def decisive(pod: dict[str, Any]) -> tuple[Any, ...]:
    """What of an attempt pod the reconciler's decisions read (`deciding`, `pinning`): its
    deletion, phase and reason, the conditions above, and each container's state and
    image. A pod event that changes none of it (the scheduler noting it has found no node
    yet, a condition's probe time) needs no pass."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return (
        meta.get("deletionTimestamp"), status.get("phase"), status.get("reason"),
        tuple((c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
              for c in status.get("conditions") or [] if c.get("type") in _DECISIVE_CONDITIONS),
        tuple((c.get("name"), c.get("imageID"), tuple(c.get("state") or {}), c.get("restartCount"))
              for c in status.get("containerStatuses") or []),
    )

"""The attempt pod: deterministic name, ownership, env, and a restrictive security context."""

from __future__ import annotations

import pytest

from durakube import resources, retry
from durakube_operator import pods, settings

SETTINGS = settings.Settings(database_url="postgresql://db/durakube")


def make_run(name: str = "report-7", timeout: str | None = None,
             retry: dict[str, object] | None = None) -> resources.TaskRun:
    return resources.TaskRun.model_validate({
        "metadata": {"name": name, "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"taskRef": {"name": "process-document"}, "payload": {"documentId": "d"},
                 **({"timeout": timeout} if timeout else {}),
                 **({"retry": retry} if retry else {})},
    })


TASK = resources.Task.model_validate({
    "metadata": {"name": "process-document", "namespace": "team-a"},
    "spec": {"image": "ghcr.io/acme/tasks:1.2", "entrypoint": "process-document",
             "modules": ["acme.tasks"], "timeout": "10m",
             "podTemplate": {"resources": {"limits": {"memory": "256Mi"}}}},
})


def test_pod_name_is_run_and_attempt() -> None:
    assert pods.build_attempt_pod(make_run(), TASK, 3, SETTINGS)["metadata"]["name"] == "report-7-3"


def test_long_run_names_give_stable_valid_pod_names() -> None:
    long = "x" * 60 + "-run"
    first = pods.attempt_pod_name(long, 12)
    assert first == pods.attempt_pod_name(long, 12)
    assert len(first) <= 63 and first.endswith("-12")
    assert first != pods.attempt_pod_name(long.replace("x", "y"), 12)


def test_pod_is_owned_by_its_taskrun_and_never_restarts() -> None:
    pod = pods.build_attempt_pod(make_run(), TASK, 1, SETTINGS)
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "TaskRun", "report-7", "uid-1", True)
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"][pods.LABEL_ATTEMPT] == "1"


def test_database_url_and_secret_come_from_the_attempts_key_in_its_ring() -> None:
    built = pods.build_attempt_pod(make_run(), TASK, 2, SETTINGS)
    pod = pods.with_attempt_key(built, "durakube-keys-abc", 17)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["DURAKUBE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "durakube-keys-abc", "key": "database-url"}
    assert env["DURAKUBE_ATTEMPT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "durakube-keys-abc", "key": "key-17"}
    assert "value" not in env["DURAKUBE_DATABASE_URL"]
    assert "value" not in env["DURAKUBE_ATTEMPT_SECRET"]
    assert env["DURAKUBE_RUN_ID"]["value"] == "uid-1"
    assert env["DURAKUBE_TASK_MODULES"]["value"] == "acme.tasks"
    # The built manifest is left as it was (decisions are values).
    unkeyed = {e["name"]: e for e in built["spec"]["containers"][0]["env"]}
    assert unkeyed["DURAKUBE_ATTEMPT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == ""


def test_a_tasks_own_secret_reference_of_the_same_name_is_not_rewritten() -> None:
    own = {"name": "DURAKUBE_ATTEMPT_SECRET", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "k"}}}
    built = pods.build_attempt_pod(make_run(), TASK, 1, SETTINGS)
    built["spec"]["containers"][0]["env"].append(own)
    env = pods.with_attempt_key(built, "durakube-keys-abc", 0)["spec"]["containers"][0]["env"]
    assert env[-1] == own


def test_a_key_ring_holds_the_dsn_and_one_key_per_slot() -> None:
    ring = pods.build_key_ring("team-a", "durakube-keys-abc", "postgresql://worker@db/durakube",
                               ["first-s3cret", "second-s3cret", "third-s3cret"])
    assert (ring["kind"], ring["metadata"]["name"], ring["metadata"]["namespace"]) == (
        "Secret", "durakube-keys-abc", "team-a")
    assert ring["metadata"]["labels"][pods.LABEL_KEY_RING] == "true"
    assert "ownerReferences" not in ring["metadata"]  # spent rings are deleted by the operator
    assert ring["stringData"] == {"database-url": "postgresql://worker@db/durakube",
                                  "key-0": "first-s3cret", "key-1": "second-s3cret", "key-2": "third-s3cret"}
    # The pod refers to its key by name only: no credential is in the pod's manifest.
    pod = pods.with_attempt_key(pods.build_attempt_pod(make_run(), TASK, 2, SETTINGS),
                                "durakube-keys-abc", 1)
    assert "s3cret" not in str(pod) and "worker@db" not in str(pod)


def test_security_context_is_restrictive() -> None:
    pod = pods.build_attempt_pod(make_run(), TASK, 1, SETTINGS)
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}
    assert container["resources"] == {"limits": {"memory": "256Mi"}}


def test_a_task_may_loosen_the_security_context_and_add_volumes() -> None:
    # The API server's Pod Security admission, not the operator, decides what a namespace
    # allows: the template is merged over the defaults as written.
    task = TASK.model_copy(deep=True)
    task.spec.pod_template = resources.PodTemplate.model_validate({
        "securityContext": {"privileged": True, "allowPrivilegeEscalation": True},
        "podSecurityContext": {"fsGroup": 2000},
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]})
    pod = pods.build_attempt_pod(make_run(), task, 1, SETTINGS)
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": True, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}, "privileged": True}
    assert spec["securityContext"]["fsGroup"] == 2000
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["volumes"][-1] == {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
    assert container["volumeMounts"][-1] == {"name": "data", "mountPath": "/data"}


def test_tmp_and_home_are_writable_scratch_folders_under_a_read_only_root() -> None:
    pod = pods.build_attempt_pod(make_run(), TASK, 1, SETTINGS)
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    home = next(e["value"] for e in container["env"] if e["name"] == "HOME")
    assert volumes[mounts[home]]["emptyDir"] == {}
    assert mounts["/tmp"] != mounts[home]


def test_a_task_mount_at_tmp_replaces_the_scratch_folder() -> None:
    task = TASK.model_copy(deep=True)
    task.spec.pod_template = resources.PodTemplate.model_validate({
        "volumes": [{"name": "fast", "emptyDir": {"medium": "Memory"}}],
        "volumeMounts": [{"name": "fast", "mountPath": "/tmp"}]})
    pod = pods.build_attempt_pod(make_run(), task, 1, SETTINGS)
    mounts = [m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert mounts == [{"name": "fast", "mountPath": "/tmp"}]
    assert {"name": "fast", "emptyDir": {"medium": "Memory"}} in pod["spec"]["volumes"]


@pytest.mark.parametrize(("run_timeout", "deadline"), [(None, 600), ("90s", 90), ("1h", 3600)],
                         ids=["task", "run-seconds", "run-hours"])
def test_attempt_timeout_becomes_active_deadline(run_timeout: str | None, deadline: int) -> None:
    pod = pods.build_attempt_pod(make_run(timeout=run_timeout), TASK, 1, SETTINGS)
    assert pod["spec"]["activeDeadlineSeconds"] == deadline


TASK_RETRY = {"maxAttempts": 2, "minTimeout": "30s", "maxTimeout": "30s", "randomize": False}
RUN_RETRY = {"maxAttempts": 4, "minTimeout": "5s", "on": ["ValueError"]}


@pytest.mark.parametrize(
    ("run_retry", "task_retry", "expected"),
    [
        (None, None, None),
        (None, TASK_RETRY, retry.Retry(max_attempts=2, min_timeout=30, max_timeout=30,
                                       randomize=False)),
        (RUN_RETRY, TASK_RETRY, retry.Retry(max_attempts=4, min_timeout=5, on=["ValueError"])),
    ],
    ids=["no-spec-policy", "task-policy", "run-policy-wins"],
)
def test_the_spec_retry_policy_reaches_the_worker(
        run_retry: dict[str, object] | None, task_retry: dict[str, object] | None,
        expected: retry.Retry | None) -> None:
    task = TASK.model_copy(update={"spec": TASK.spec.model_copy(update={
        "retry": resources.RetrySpec.model_validate(task_retry) if task_retry else None})})
    pod = pods.build_attempt_pod(make_run(retry=run_retry), task, 1, SETTINGS)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    if expected is None:
        # The worker then classifies under its decorator's policy and records it.
        assert "DURAKUBE_RETRY_POLICY" not in env
    else:
        assert retry.Retry.model_validate_json(env["DURAKUBE_RETRY_POLICY"]["value"]) == expected


@pytest.mark.parametrize(("operator_format", "task_env", "expected"), [
    ("plain", None, "plain"),
    ("json", None, "json"),
    ("json", [{"name": "DURAKUBE_LOG_FORMAT", "value": "plain"}], "plain"),
], ids=["default", "the-operators", "the-tasks-own"])
def test_attempt_pods_log_in_the_operators_format_unless_the_task_chooses(
        operator_format: str, task_env: list[dict[str, str]] | None, expected: str) -> None:
    task = TASK.model_copy(deep=True)
    if task_env is not None:
        task.spec.pod_template = resources.PodTemplate(env=task_env)
    config = SETTINGS.model_copy(update={"log_format": operator_format})
    env = pods.build_attempt_pod(make_run(), task, 1, config)["spec"]["containers"][0]["env"]
    assert [item["value"] for item in env if item["name"] == "DURAKUBE_LOG_FORMAT"] == [expected]

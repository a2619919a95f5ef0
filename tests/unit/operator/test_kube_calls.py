"""The operator's Kubernetes calls against a fake API server: what is sent, how answers map."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
import pytest
from aiohttp import web

from durakube_operator import kubeapi, recording

Answer = tuple[int, dict[str, Any]]


class FakeApiServer:
    """Answers each request from `answers` (by method and path; 404 otherwise) and keeps it."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Answer] = {}
        self.requests: list[tuple[str, str, str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.raw_path, request.content_type, body))
        status, answer = self.answers.get((request.method, request.raw_path),
                                          (404, {"kind": "Status", "code": 404}))
        return web.json_response(answer, status=status)


@pytest.fixture
async def fake(api_serving: Callable[[Any], Awaitable[kubeapi.KubeApi]]
               ) -> tuple[FakeApiServer, kubeapi.KubeApi]:
    server = FakeApiServer()
    return server, await api_serving(server.handle)


TASKRUN = "/apis/durakube.io/v1alpha1/namespaces/ns/taskruns/r"


async def test_reads_return_the_object_or_none_when_missing(
        fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    server.answers[("GET", TASKRUN)] = (200, {"metadata": {"name": "r"}})
    assert await api.get_taskrun("ns", "r") == {"metadata": {"name": "r"}}
    assert await api.get_task("ns", "t") is None
    assert await api.get_pod("ns", "r-1") is None
    assert [request[:2] for request in server.requests] == [
        ("GET", TASKRUN),
        ("GET", "/apis/durakube.io/v1alpha1/namespaces/ns/tasks/t"),
        ("GET", "/api/v1/namespaces/ns/pods/r-1"),
    ]


async def test_a_pod_body_is_sent_as_it_is(fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    # The typed client's models would refuse an integer quantity; the API server takes it.
    pod = {"metadata": {"name": "r-1"}, "spec": {"containers": [
        {"name": "main", "image": "i", "resources": {"limits": {"cpu": 1}}}]}}
    server.answers[("POST", "/api/v1/namespaces/ns/pods")] = (201, pod)
    assert await api.create_pod("ns", pod) == pod
    assert server.requests == [("POST", "/api/v1/namespaces/ns/pods", "application/json", pod)]


@pytest.mark.parametrize(
    ("status", "created"), [(201, True), (409, False)], ids=["created", "exists-adopt"])
async def test_create_tells_whether_the_object_is_new(
        fake: tuple[FakeApiServer, kubeapi.KubeApi], status: int, created: bool) -> None:
    server, api = fake
    server.answers[("POST", "/api/v1/namespaces/ns/pods")] = (status, {})
    server.answers[("POST", "/apis/durakube.io/v1alpha1/namespaces/ns/taskruns")] = (status, {})
    assert (await api.create_pod("ns", {"metadata": {"name": "r-1"}}) is not None) is created
    assert await api.create_taskrun("ns", {"metadata": {"name": "r"}}) is created


async def test_other_errors_raise_with_their_status(
        fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    server.answers[("POST", "/api/v1/namespaces/ns/pods")] = (403, {"reason": "Forbidden"})
    server.answers[("GET", TASKRUN)] = (500, {})
    with pytest.raises(kubeapi.ApiException) as refused:
        await api.create_pod("ns", {})
    assert refused.value.status == 403
    with pytest.raises(kubeapi.ApiException):
        await api.get_taskrun("ns", "r")


async def test_status_is_merge_patched_and_a_missing_object_is_ignored(
        fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    server.answers[("PATCH", TASKRUN + "/status")] = (200, {})
    await api.patch_status("taskruns", "ns", "r", {"phase": "Running"})
    await api.patch_status("taskqueues", "ns", "gone", {"running": 0})
    method, path, content_type, body = server.requests[0]
    assert (method, path, content_type) == ("PATCH", TASKRUN + "/status", "application/merge-patch+json")
    assert body == {"status": {"phase": "Running"}}


async def test_delete_of_a_missing_pod_is_done(fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    await api.delete_pod("ns", "r-1", grace_seconds=5)
    assert server.requests[0][::3] == ("DELETE", {"apiVersion": "v1", "kind": "DeleteOptions",
                                                  "gracePeriodSeconds": 5})


async def test_an_existing_secret_is_left_alone_without_reading_any(
        fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    server.answers[("POST", "/api/v1/namespaces/a/secrets")] = (409, {"reason": "AlreadyExists"})
    server.answers[("POST", "/api/v1/namespaces/b/secrets")] = (201, {})
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "run-1"},
              "stringData": {"attempt-secret": "s"}}
    assert not await api.create_secret("a", secret)
    assert await api.create_secret("b", secret)
    # Create-only: the operator's role needs no right to read or change Secrets.
    assert [request[:2] for request in server.requests] == [
        ("POST", "/api/v1/namespaces/a/secrets"),
        ("POST", "/api/v1/namespaces/b/secrets"),
    ]
    assert server.requests[-1][3]["stringData"] == {"attempt-secret": "s"}


async def test_a_refused_event_is_only_logged(fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    involved = {"metadata": {"name": "r", "namespace": "ns", "uid": "u"}}
    await api.create_event(kubeapi.event_body(involved, "TaskRun", "Started", "attempt 1"))
    (method, path, _, event), = server.requests
    assert (method, path) == ("POST", "/api/v1/namespaces/ns/events")
    assert event["involvedObject"]["uid"] == "u" and event["reason"] == "Started"


async def test_recorded_events_go_out_in_order_without_waiting(
        fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    server.answers[("POST", "/api/v1/namespaces/ns/events")] = (201, {})
    recorder = recording.EventRecorder(api)
    recorder.start()
    involved = {"metadata": {"name": "r", "namespace": "ns", "uid": "u"}}
    for reason in ("Queued", "Started", "Succeeded"):
        recorder.record(involved, "TaskRun", reason, reason.lower())
    # `record` only buffers: nothing was sent before the loop ran.
    assert server.requests == [] and len(recorder) == 3
    await recorder.stop()  # flushes what is buffered, then closes the client
    assert [request[3]["reason"] for request in server.requests] == ["Queued", "Started", "Succeeded"]


async def test_events_past_the_buffer_are_dropped_and_counted(
        fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    _, api = fake
    recorder = recording.EventRecorder(api, buffer=2)  # never started: nothing drains it
    dropped = prometheus_client.REGISTRY.get_sample_value("durakube_events_dropped_total") or 0
    involved = {"metadata": {"name": "r", "namespace": "ns", "uid": "u"}}
    for reason in ("A", "B", "C", "D"):
        recorder.record(involved, "TaskRun", reason, "")
    assert len(recorder) == 2
    assert prometheus_client.REGISTRY.get_sample_value("durakube_events_dropped_total") == dropped + 2


async def test_names_cannot_leave_their_path(fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    await api.get_taskrun("ns", "../../../api/v1/namespaces/kube-system/secrets/x")
    assert server.requests[0][1] == (
        "/apis/durakube.io/v1alpha1/namespaces/ns/taskruns/"
        "..%2F..%2F..%2Fapi%2Fv1%2Fnamespaces%2Fkube-system%2Fsecrets%2Fx")


@pytest.mark.parametrize(("qps", "burst", "capacity"), [(50, None, 100), (20, 30, 30), (0.5, None, 1)],
                         ids=["default-twice-qps", "set", "at-least-one"])
def test_rate_limiter_burst(qps: float, burst: int | None, capacity: float) -> None:
    assert kubeapi.RateLimiter(qps, burst).capacity == capacity


def _refused(status: int, message: str) -> kubeapi.ApiException:
    error = kubeapi.ApiException(status=status, reason="x")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


@pytest.mark.parametrize(("status", "message", "permanent"), [
    (403, 'pods "r-1" is forbidden: violates PodSecurity "restricted:latest": privileged', True),
    (403, 'admission webhook "policy.example.com" denied the request: no hostPath', True),
    (422, 'Pod "r-1" is invalid: spec.containers[0].image: Required value', True),
    (403, 'pods is forbidden: User "system:serviceaccount:d:d" cannot create resource "pods"', False),
    (403, 'pods "r-1" is forbidden: exceeded quota: compute, requested: cpu=2', False),
    (409, "Operation cannot be fulfilled", False),
    (500, "etcdserver: request timed out", False),
], ids=["pod-security", "admission-webhook", "invalid", "rbac", "quota", "conflict", "server"])
def test_what_the_api_server_refuses_for_good(status: int, message: str, permanent: bool) -> None:
    refusal = kubeapi.refusal(_refused(status, message))
    assert (refusal == message) if permanent else refusal is None


async def test_reviews_are_posts_to_the_authentication_and_authorization_apis(
        fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    tokens = "/apis/authentication.k8s.io/v1/tokenreviews"
    access = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    server.answers[("POST", tokens)] = (201, {"status": {"authenticated": True,
                                                         "user": {"username": "u"}}})
    server.answers[("POST", access)] = (201, {"status": {"allowed": True}})
    assert (await api.create_token_review("t0k"))["status"]["authenticated"]
    spec = {"user": "u", "resourceAttributes": {"verb": "create", "namespace": "ns"}}
    assert (await api.create_subject_access_review(spec))["status"]["allowed"]
    assert [(method, path, body) for method, path, _, body in server.requests] == [
        ("POST", tokens, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                          "spec": {"token": "t0k"}}),
        ("POST", access, {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                          "spec": spec}),
    ]


def api_calls(verb: str, resource: str, code: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(
        "durakube_api_requests_total", {"verb": verb, "resource": resource, "code": code}) or 0.0


async def test_each_call_is_counted_by_verb_resource_and_status_class(
        fake: tuple[FakeApiServer, kubeapi.KubeApi]) -> None:
    server, api = fake
    server.answers[("PATCH", TASKRUN + "/status")] = (200, {"metadata": {"name": "r"}})
    before = (api_calls("get", "taskruns", "4xx"), api_calls("patch", "taskruns/status", "2xx"))
    assert await api.get_taskrun("ns", "r") is None
    await api.patch_status("taskruns", "ns", "r", {"phase": "Running"})
    after = (api_calls("get", "taskruns", "4xx"), api_calls("patch", "taskruns/status", "2xx"))
    assert after == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize(("path", "resource"), [
    ("/apis/durakube.io/v1alpha1/namespaces/ns/taskruns/r/status", "taskruns/status"),
    ("/apis/durakube.io/v1alpha1/namespaces/ns/taskruns", "taskruns"),
    ("/api/v1/namespaces/ns/pods/r-1", "pods"),
    ("/api/v1/namespaces/ns/events", "events"),
    ("/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", "leases"),
    ("/api/v1/nodes", "nodes"),
], ids=["subresource", "collection", "core", "core-collection", "lease", "cluster-scoped"])
def test_the_resource_label_never_holds_a_name_or_namespace(path: str, resource: str) -> None:
    assert kubeapi.resource_of(path) == resource


@pytest.mark.parametrize(("no_proxy", "expected"), [("", "http://proxy:3128"),
                                                     ("api.example.com", None)],
                         ids=["through-the-proxy", "exempt"])
def test_the_environment_proxy_is_read_once_for_the_api_server(
        monkeypatch: pytest.MonkeyPatch, no_proxy: str, expected: str | None) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert kubeapi.environment_proxy("https://api.example.com:6443") == expected

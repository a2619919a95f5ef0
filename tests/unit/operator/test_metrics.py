"""The operator's own metrics: what each records and that its labels stay bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import prometheus_client
import pytest
from aiohttp import web

from durakube import resources
from durakube.store import attempts
from durakube_operator import metrics, observing, publishing, serving, workqueue


def sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def test_build_info_names_the_operators_version() -> None:
    families = {family.name: family for family in prometheus_client.REGISTRY.collect()}
    [info] = families["durakube_build_info"].samples
    assert info.value == 1 and info.labels["version"]


@pytest.mark.parametrize(("query", "kind"), [
    ("SELECT 1", "select"), ("\n   insert into durakube.runs ...", "insert"), ("COMMIT;", "commit"),
    ("BEGIN", "begin"), ("VACUUM runs", "other"), ("", "other"),
], ids=["select", "indented-lower-case", "asyncpg-commit", "begin", "unknown", "empty"])
def test_statements_are_labelled_by_their_first_keyword_from_a_fixed_set(query: str, kind: str) -> None:
    assert metrics.statement_kind(query) == kind


@pytest.mark.parametrize(("status", "label"), [(200, "2xx"), (201, "2xx"), (404, "4xx"), (503, "5xx"),
                                               (None, "error")])
def test_api_statuses_are_labelled_by_class(status: int | None, label: str) -> None:
    assert metrics.status_class(status) == label


async def test_the_work_queue_reports_its_depth_and_how_long_a_key_waited() -> None:
    queue = workqueue.WorkQueue()
    waited = sample("durakube_workqueue_wait_seconds_count", priority="urgent")
    queue.add(("ns", "a"), urgent=True)
    queue.add(("ns", "b"))
    queue.add_after(("ns", "c"), 60)
    assert sample("durakube_workqueue_depth") == 2
    assert sample("durakube_workqueue_delayed") == 1
    assert await queue.get() == ("ns", "a")
    assert sample("durakube_workqueue_depth") == 1
    assert sample("durakube_workqueue_wait_seconds_count", priority="urgent") == waited + 1


@pytest.fixture
async def webhook_server() -> AsyncIterator[str]:
    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"error": "no such token"}, status=404)

    app = web.Application(middlewares=[serving.count_webhook_requests])
    app.router.add_post("/v1/tokens/{token}/complete", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_webhook_requests_are_counted_by_route_pattern_never_by_token(webhook_server: str) -> None:
    route = "/v1/tokens/{token}/complete"
    before = (sample("durakube_webhook_requests_total", route=route, code="404"),
              sample("durakube_webhook_requests_total", route="unmatched", code="404"))
    async with aiohttp.ClientSession() as session:
        for path in ("/v1/tokens/secret-one/complete", "/v1/tokens/secret-two/complete", "/nowhere"):
            async with session.post(webhook_server + path) as response:
                assert response.status == 404
    assert sample("durakube_webhook_requests_total", route=route, code="404") == before[0] + 2
    assert sample("durakube_webhook_requests_total", route="unmatched", code="404") == before[1] + 1
    exposed = prometheus_client.generate_latest().decode()
    assert "secret-one" not in exposed and "/nowhere" not in exposed


def ended_attempt(outcome: attempts.Outcome | None, durations: tuple[float, ...]
                  ) -> tuple[dict[str, Any], observing.Observation]:
    body = {"metadata": {"namespace": "tenant", "name": "run-1"},
            "spec": {"taskRef": {"name": "report"}}}
    return body, observing.Observation(body=body, run=None, queue="tenant/batch", outcome=outcome,
                                       step_durations=durations)


@pytest.mark.parametrize(("outcome", "label"), [
    (attempts.Outcome(kind="succeeded", output=1), "succeeded"),
    (attempts.Outcome(kind="retry", error={"type": "RetryableError"}), "retry"),
    (None, "none"),
], ids=["succeeded", "retry", "pod-died-without-one"])
def test_an_ended_attempt_is_counted_by_its_recorded_outcome_with_its_steps(
        outcome: attempts.Outcome | None, label: str) -> None:
    labels = {"namespace": "tenant", "queue": "batch", "task": "report"}
    before = (sample("durakube_attempts_finished_total", **labels, outcome=label),
              sample("durakube_step_duration_seconds_count", **labels),
              sample("durakube_step_duration_seconds_sum", **labels))
    publishing.count_attempt_end(*ended_attempt(outcome, (0.5, 2.0)))
    assert sample("durakube_attempts_finished_total", **labels, outcome=label) == before[0] + 1
    assert sample("durakube_step_duration_seconds_count", **labels) == before[1] + 2
    assert sample("durakube_step_duration_seconds_sum", **labels) == before[2] + 2.5


def test_a_finished_run_counts_its_outcome_and_duration_by_queue_and_task() -> None:
    labels = {"namespace": "tenant", "queue": "batch", "task": "report", "outcome": "Succeeded"}
    before = sample("durakube_runs_finished_total", **labels)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    body, _ = ended_attempt(None, ())
    publishing.count_transition(
        body, "tenant/batch", created, resources.TaskRunStatus(phase=resources.Phase.RUNNING),
        resources.TaskRunStatus(phase=resources.Phase.SUCCEEDED,
                                completion_time=created.replace(minute=1)), "Succeeded")
    assert sample("durakube_runs_finished_total", **labels) == before + 1
    assert sample("durakube_run_duration_seconds_bucket", **labels, le="60.0") >= 1

"""The dashboard's server in front of its handlers: the form secret, the Host check, the
API's refusals shown as 403 pages, and escaping. A fake client stands in for the
Kubernetes API (the real one is tests/e2e/dashboard/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import test_utils

from durakube.client import failures, handles
from durakube.dashboard import reading, rendering, serving

DENIED = failures.PermissionDenied(
    "patch TaskRun team-a/report-x",
    'taskruns.durakube.io "report-x" is forbidden: User "viewer" cannot patch resource '
    '"taskruns" in API group "durakube.io" in the namespace "team-a"')


class Refusing:
    """A client whose every API call and action the API refuses (403)."""

    database_url = None
    namespace = "team-a"

    def __init__(self) -> None:
        self.session = self
        self.api = self
        self.calls: list[str] = []

    async def list_taskruns(self, *args: Any) -> Any:
        self.calls.append("list")
        raise DENIED

    async def cancel(self, *args: Any) -> Any:
        self.calls.append("cancel")
        raise DENIED


@pytest.fixture
async def served() -> AsyncIterator[tuple[test_utils.TestClient[Any, Any], Refusing]]:
    fake = Refusing()
    app = serving.build_app(fake, namespace="team-a",  # type: ignore[arg-type]
                            hosts={"127.0.0.1", "localhost"})
    async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as browser:
        yield browser, fake


async def test_an_action_without_the_form_secret_is_refused_before_anything_runs(
        served: tuple[test_utils.TestClient[Any, Any], Refusing]) -> None:
    browser, fake = served
    answer = await browser.post("/runs/team-a/report-x/cancel", data={"csrf": "guessed"})
    assert answer.status == 403
    assert "form secret" in await answer.text()
    assert fake.calls == []


async def test_a_foreign_host_is_refused(
        served: tuple[test_utils.TestClient[Any, Any], Refusing]) -> None:
    browser, fake = served
    answer = await browser.get("/runs", headers={"Host": "attacker.example:8600"})
    assert answer.status == 421
    assert fake.calls == []


async def test_a_page_the_api_refuses_is_a_403_page_quoting_rbac(
        served: tuple[test_utils.TestClient[Any, Any], Refusing]) -> None:
    browser, _ = served
    answer = await browser.get("/runs")
    assert answer.status == 403
    text = await answer.text()
    assert "Forbidden by Kubernetes RBAC" in text
    assert "User &#34;viewer&#34; cannot patch resource" in text


async def test_a_refused_action_answers_403_with_the_message_in_place(
        served: tuple[test_utils.TestClient[Any, Any], Refusing]) -> None:
    browser, fake = served
    secret = browser.server.app[serving.SETTINGS].csrf
    answer = await browser.post("/runs/team-a/report-x/cancel",
                                headers={serving.CSRF_HEADER: secret, "HX-Request": "true"})
    assert answer.status == 403
    text = await answer.text()
    assert 'class="flash error"' in text and "cannot patch resource" in text
    assert fake.calls == ["cancel"]


def test_names_and_values_from_runs_are_escaped() -> None:
    hostile = "<img src=x onerror=alert(1)>"
    run = handles.RunSummary(
        name="report-x", namespace="team-a", run_id="uid-1", task="report", queue=None,
        phase="Failed", reason="Failed", message=hostile, attempt=1, current_step=hostile,
        completed_steps=1, created_at=datetime(2026, 11, 1, tzinfo=UTC), finished_at=None,
        output=None, last_error=None)
    page = reading.RunPage(run=run, body={}, error={"type": "ValueError", "message": hostile,
                                                    "traceback": hostile})
    html = rendering.render(rendering.build_environment(), "run_live.html", page=page,
                            csrf="s", read_only=False, refresh_seconds=3, has_database=True)
    assert hostile not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_a_read_only_dashboard_acts_on_nothing() -> None:
    fake = Refusing()
    app = serving.build_app(fake, namespace="team-a", read_only=True)  # type: ignore[arg-type]
    async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as browser:
        secret = app[serving.SETTINGS].csrf
        answer = await browser.post("/runs/team-a/report-x/cancel",
                                    headers={serving.CSRF_HEADER: secret, "HX-Request": "true"})
        assert answer.status == 403
        assert "read-only" in await answer.text()
    assert fake.calls == []

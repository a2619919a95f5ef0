"""The operator's metrics through a real Prometheus: every panel of the chart's Grafana
dashboard has data after a few runs.

Prometheus (Debian's package, `make prometheus`) listens on a free loopback port, keeps
its data in the test's folder and scrapes the operator every second. The test runs
TaskRuns that succeed, retry, fail and name an undefined queue, calls the webhook with
an unknown token, then runs each panel's queries through Prometheus's HTTP API.

The test bed's replicas share the host's network and bind the metrics port with
SO_REUSEPORT, so a scrape reaches either replica; Prometheus keeps its connection, so it
keeps scraping the replica it reached first. Only the leader reconciles and counts runs:
the test starts Prometheus again, at another loopback address of the same port, until it
scrapes the leader.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from helpers import InstalledOperator, wait_for, wait_for_phase

from devcluster import ports

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "charts" / "durakube" / "dashboards" / "durakube.json"
TEST_IMAGE = "ghcr.io/durakube/test-tasks:dev"

# Queries that have no data in a run without trouble: no reconcile pass failed.
QUIET = {("Reconciles and errors", "B")}


class PrometheusExited(Exception):
    """Prometheus stopped on its own (its port was taken meanwhile, say); its log's tail."""


class Prometheus:
    """One Prometheus server scraping `target` every second, on 127.0.0.1 only."""

    def __init__(self, folder: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("this test needs Prometheus: `make prometheus` installs it")
        folder.mkdir(parents=True)
        self.port = ports.free_port()
        config = folder / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "durakube", "static_configs": [{"targets": [target]}]}],
        }))
        self.log = folder / "prometheus.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result, [] while Prometheus is not up yet."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 503:
                return []  # listening, but its storage is not open yet
            pytest.fail(f"Prometheus refused {expr}: {error.read().decode()}")
        except OSError:
            if self.process.poll() is not None:
                raise PrometheusExited(self.log.read_text()[-2000:]) from None
            return []
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(operator: InstalledOperator, tmp_path: Path) -> Iterator[Prometheus]:
    exits = []
    for last in range(2, 20):
        server = Prometheus(tmp_path / f"prometheus-{last}", f"127.0.0.{last}:{operator.metrics_port}")
        try:
            leads = wait_for(lambda server=server: _scraped(server), timeout=120,
                             what="Prometheus's first scrape of the operator")
        except PrometheusExited as exited:
            exits.append(str(exited))
            continue
        if leads == "leader":
            break
        server.stop()
    else:
        pytest.fail("Prometheus never scraped the leading replica; its exits:\n" + "\n".join(exits))
    try:
        yield server
    finally:
        server.stop()


def _scraped(server: Prometheus) -> str | None:
    """"leader" or "standby" once Prometheus scraped a replica; None before."""
    leading = server.value('durakube_operator_leader{job="durakube"}')
    if leading is None:
        return None
    return "leader" if leading == 1 else "standby"


def manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "durakube.io/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": spec}


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, query ref, expression) of every query of the committed dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["refId"], target["expr"])
            for panel in board["panels"] for target in panel.get("targets", [])]


def as_prometheus_query(expr: str, namespace: str) -> str:
    """A panel's query as Grafana would send it with `namespace` and every queue chosen."""
    return (expr.replace("$namespace", namespace).replace("$queue", ".*")
            .replace("$__rate_interval", "10m"))


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


def post_unknown_token(operator: InstalledOperator) -> None:
    """A token nobody issued: the webhook answers 404, and counts it."""
    request = urllib.request.Request(f"{operator.webhook_url}/v1/tokens/no-such-token/complete",
                                     data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(request, timeout=30):
        pass


def test_every_dashboard_panel_has_data_after_a_few_runs(
        prometheus: Prometheus, operator: InstalledOperator, namespace: str,
        custom: kubernetes.client.CustomObjectsApi) -> None:
    def create(*objects: dict[str, Any]) -> None:
        for body in objects:
            plural = {"Task": "tasks", "TaskRun": "taskruns"}[body["kind"]]
            custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, plural, body)

    def finish(name: str, phase: str) -> None:
        run = wait_for_phase(custom, namespace, name, {"Succeeded", "Failed"}, timeout=300)
        assert run["status"]["phase"] == phase, run["status"]

    def scraped(runs_finished: int, webhook_requests: float) -> None:
        """Waits until Prometheus scraped that many finished runs of the namespace and webhook
        requests; the webhook is called again meanwhile, since each call may reach the standby."""
        def done() -> bool:
            finished = prometheus.value(f'sum(durakube_runs_finished_total{{namespace="{namespace}"}})')
            requests = prometheus.value("sum(durakube_webhook_requests_total)") or 0
            if requests < webhook_requests:
                post_unknown_token(operator)
            return (finished or 0) >= runs_finished and requests >= webhook_requests

        wait_for(done, timeout=120, interval=1, what="Prometheus to scrape the runs and requests")

    create(manifest("Task", "flaky", {"image": TEST_IMAGE, "entrypoint": "flaky", "modules": ["behaviours"],
                                      "retry": {"maxAttempts": 3, "minTimeout": "1s", "maxTimeout": "1s",
                                                "randomize": False}}),
           manifest("Task", "broken", {"image": TEST_IMAGE, "entrypoint": "broken",
                                       "modules": ["behaviours"]}),
           # Retries once, then succeeds.
           manifest("TaskRun", "retried", {"taskRef": {"name": "flaky"}, "payload": {"succeed_on": 2}}),
           manifest("TaskRun", "failed", {"taskRef": {"name": "broken"}, "payload": {}}),
           # No TaskQueue defines "nowhere": the run waits in the default queue instead.
           manifest("TaskRun", "unqueued", {"taskRef": {"name": "flaky"}, "payload": {"succeed_on": 1},
                                            "queue": "nowhere"}))
    finish("retried", "Succeeded")
    finish("failed", "Failed")
    finish("unqueued", "Succeeded")
    scraped(runs_finished=3, webhook_requests=1)
    # rate() sees only what a series gained after its first scrape: a second run, and a
    # second request, move every series the first ones made.
    create(manifest("TaskRun", "again", {"taskRef": {"name": "flaky"}, "payload": {"succeed_on": 1}}))
    finish("again", "Succeeded")
    scraped(runs_finished=4, webhook_requests=(prometheus.value("sum(durakube_webhook_requests_total)")
                                               or 0) + 1)

    empty = []
    for title, ref, expr in dashboard_queries():
        query = as_prometheus_query(expr, namespace)
        if not has_data(prometheus.query(query)) and (title, ref) not in QUIET:
            empty.append(f"{title} ({ref}): {query}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

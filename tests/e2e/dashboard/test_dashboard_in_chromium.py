"""`durakube dashboard` end to end: the CLI serves the pages from the real test bed and
Postgres, and Debian's Chromium (driven by Playwright, never its own browser) reads
them and clicks.

One namespace holds a run of every phase (succeeded after a retry and a suspension,
failed, running, queued, suspended on an event or a token, canceled) and a parent
with three children. Two dashboards serve it:
the cluster admin's, and a viewer's whose Role may read runs but not change them,
so an action the API refuses is shown as refused. The tests run in order: the
first ones read the phases the later ones change.

Screenshots of the runs list and of a run page are written to the folder named by
DURAKUBE_DASHBOARD_SCREENSHOTS when it is set (`docs/images` for the README).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import playwright.sync_api as playwright_api
import pytest
from helpers import InstalledOperator, wait_for

from devcluster import cluster as devcluster_cluster
from devcluster import kubeconfigs, ports
from durakube.client import Client, RunHandle

pytestmark = [pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
# Flags for a closed network: no background connections, no updates, no sync.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
expect = playwright_api.expect
# Bounds on waiting for a page or an element, generous for a machine shared with other
# test beds; nothing is asserted about how long anything took.
PAGE_MS = 90_000
expect.set_options(timeout=PAGE_MS)
DURAKUBE = str(Path(sys.executable).parent / "durakube")
SCREENSHOTS = os.environ.get("DURAKUBE_DASHBOARD_SCREENSHOTS")
# Long enough for a pod to start and the page's live refresh to show the change.
SEEN_MS = 180_000
# An event or a token waits up to acting.DELIVERY_WAIT_SECONDS for the operator's report.
ACTED_MS = 90_000
EVENT_KEY = "approval-7"
TEST_IMAGE = "ghcr.io/durakube/test-tasks:dev"


class Bed:
    """The namespace, its runs by role, and the two dashboards' addresses."""

    def __init__(self, namespace: str, runs: dict[str, RunHandle], children: list[str],
                 admin_url: str, viewer_url: str) -> None:
        self.namespace, self.runs, self.children = namespace, runs, children
        self.admin_url, self.viewer_url = admin_url, viewer_url

    def run_url(self, role: str, *, viewer: bool = False) -> str:
        base = self.viewer_url if viewer else self.admin_url
        return f"{base}/runs/{self.namespace}/{self.runs[role].name}"


@pytest.fixture(scope="module")
def board_namespace(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    core = kubernetes.client.CoreV1Api(kube)
    name = f"dash-{uuid.uuid4().hex[:8]}"
    core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": name}))
    wait_for(lambda: _has_default_service_account(core, name), 60, what="the default ServiceAccount")
    yield name
    core.delete_namespace(name)


def _has_default_service_account(core: kubernetes.client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except kubernetes.client.ApiException:
        return False
    return True


@pytest.fixture(scope="module")
def bed(cluster: devcluster_cluster.Cluster, kube: kubernetes.client.ApiClient,
        operator: InstalledOperator, board_namespace: str) -> Iterator[Bed]:
    namespace = board_namespace
    custom = kubernetes.client.CustomObjectsApi(kube)
    for task in ("monthly-report", "approve-invoice"):
        install_task(custom, namespace, task, "reporting")
    for task in ("broken", "nap", "await-event", "fan-out", "square"):
        install_task(custom, namespace, task, "behaviours")
    install_queue(custom, namespace, "paused", 0)
    viewer_kubeconfig = _viewer_kubeconfig(cluster, kube, namespace)
    with Client(kubeconfig=cluster.kubeconfig, namespace=namespace,
                database_url=operator.database_url) as client:
        runs = {
            "report": client.trigger("monthly-report", {"month": "2026-10"}, tags=["monthly"]),
            "failed": client.trigger("broken", {"item": "invoice-7"}),
            "to-cancel": client.trigger("nap", {"seconds": 600}, concurrency_key="tenant-a"),
            "to-keep": client.trigger("nap", {"seconds": 600}, concurrency_key="tenant-b"),
            "queued": client.trigger("nap", {"seconds": 1}, queue="paused"),
            "waiting": client.trigger("await-event", {"key": EVENT_KEY, "timeout": "1h"},
                                      concurrency_key="tenant-c"),
            "canceled": client.trigger("nap", {"seconds": 600}),
            "approval": client.trigger("approve-invoice", {"invoice": "INV-7"}),
            "parent": client.trigger("fan-out", {"seconds": 0}),
        }
        _wait_for_phase(client, runs["canceled"], "Running")
        client.cancel(runs["canceled"])
        expected = {"report": "Succeeded", "failed": "Failed", "to-cancel": "Running",
                    "to-keep": "Running", "queued": "Queued", "waiting": "Suspended",
                    "canceled": "Canceled", "approval": "Suspended", "parent": "Succeeded"}
        for role, phase in expected.items():
            _wait_for_phase(client, runs[role], phase)
    # The parent's children, as the operator named them.
    children = sorted(item["metadata"]["name"] for item in custom.list_namespaced_custom_object(
        "durakube.io", "v1alpha1", namespace, "taskruns",
        label_selector=f"durakube.io/parent-run-uid={runs['parent'].run_id}")["items"])
    assert len(children) == 3
    with tempfile.TemporaryDirectory(prefix="durakube-dashboard-") as folder:
        admin = _start_dashboard(cluster.kubeconfig, namespace, operator.database_url,
                                 Path(folder) / "admin.log")
        viewer = _start_dashboard(viewer_kubeconfig, namespace, operator.database_url,
                                  Path(folder) / "viewer.log")
        try:
            yield Bed(namespace, runs, children, admin[1], viewer[1])
        finally:
            for process, _ in (admin, viewer):
                process.terminate()
                process.wait(timeout=10)


def install_task(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str,
                 module: str) -> None:
    body = {"apiVersion": "durakube.io/v1alpha1", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": TEST_IMAGE, "entrypoint": name, "modules": [module]}}
    custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "tasks", body)


def install_queue(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str,
                  limit: int) -> None:
    body = {"apiVersion": "durakube.io/v1alpha1", "kind": "TaskQueue", "metadata": {"name": name},
            "spec": {"concurrencyLimit": limit}}
    custom.create_namespaced_custom_object("durakube.io", "v1alpha1", namespace, "taskqueues", body)


def _wait_for_phase(client: Client, handle: RunHandle, phase: str) -> None:
    wait_for(lambda: client.get(handle).phase == phase, 300, interval=0.5,
             what=f"run {handle.name} to be {phase}")


def _viewer_kubeconfig(cluster: devcluster_cluster.Cluster, kube: kubernetes.client.ApiClient,
                       namespace: str) -> Path:
    """A user who may read runs, tasks, queues, pods, logs and Events in `namespace`,
    and change nothing."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube)
    rules = [
        {"apiGroups": ["durakube.io"], "resources": ["taskruns", "tasks", "taskqueues", "taskevents"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": ["get", "list"]},
    ]
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "run-viewer"}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "run-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "run-viewer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": "run-viewer"}]})
    viewer = cluster.ca.issue("client-run-viewer", "run-viewer")
    return kubeconfigs.write(cluster.state_dir / f"viewer-{namespace}.kubeconfig", cluster.server,
                             cluster.ca.cert_path, viewer, namespace=namespace)


def _start_dashboard(kubeconfig: Path, namespace: str, database_url: str,
                     log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`durakube dashboard` as a user starts it; returns the process and its URL."""
    port = ports.free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [DURAKUBE, "dashboard", "--kubeconfig", str(kubeconfig), "-n", namespace,
             "--database-url", database_url, "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"durakube dashboard exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    wait_for(healthy, 90, what="the dashboard to answer")
    return process, url


@pytest.fixture(scope="module")
def browser(bed: Bed) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    profile = tempfile.mkdtemp(prefix="durakube-chromium-")
    with playwright_api.sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 900})
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    opened = browser.new_page()
    opened.set_default_timeout(PAGE_MS)
    # The Cancel button asks to confirm: a person would say yes.
    opened.on("dialog", lambda dialog: dialog.accept())
    yield opened
    opened.close()


def _screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def test_runs_list_shows_every_phase_with_counts_and_filters(bed: Bed, page: Any) -> None:
    page.goto(f"{bed.admin_url}/runs?namespace={bed.namespace}")
    rows = page.locator("table.runs tbody tr[data-run]")
    expect(rows).to_have_count(len(bed.runs) + len(bed.children))
    shown = {row.get_attribute("data-run"): row.get_attribute("data-phase")
             for row in rows.all()}
    assert shown == {bed.runs["report"].name: "Succeeded", bed.runs["failed"].name: "Failed",
                     bed.runs["to-cancel"].name: "Running", bed.runs["to-keep"].name: "Running",
                     bed.runs["queued"].name: "Queued", bed.runs["waiting"].name: "Suspended",
                     bed.runs["canceled"].name: "Canceled", bed.runs["approval"].name: "Suspended",
                     bed.runs["parent"].name: "Succeeded",
                     **dict.fromkeys(bed.children, "Succeeded")}
    counts = {chip.get_attribute("data-phase"): int(chip.locator(".count").inner_text())
              for chip in page.locator(".counts .chip[data-phase]").all()}
    assert {phase: n for phase, n in counts.items() if n} == {
        "Succeeded": 5, "Failed": 1, "Running": 2, "Queued": 1, "Suspended": 2, "Canceled": 1}
    # Newest first.
    created = [row.get_attribute("data-created") or "" for row in rows.all()]
    assert created == sorted(created, reverse=True) and all(created)
    _screenshot(page, "dashboard-runs.png")

    page.select_option("select[name=phase]", "Running")
    expect(rows).to_have_count(2)
    assert {row.get_attribute("data-phase") for row in rows.all()} == {"Running"}
    assert "phase=Running" in page.url  # the filter is in the address, to share or reload

    page.goto(f"{bed.admin_url}/runs?namespace={bed.namespace}&task=nap&key=tenant-b")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-run") == bed.runs["to-keep"].name

    page.goto(f"{bed.admin_url}/runs?namespace={bed.namespace}&tag=monthly")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-run") == bed.runs["report"].name

    # Every namespace (the admin may list them all): a column says whose each run is.
    page.goto(f"{bed.admin_url}/runs?namespace=*&tag=monthly")
    expect(page.locator("table.runs thead")).to_contain_text("Namespace")
    assert bed.runs["report"].name in [row.get_attribute("data-run") for row in rows.all()]
    page.goto(f"{bed.admin_url}/runs?namespace={bed.namespace}&tag=monthly")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-run") == bed.runs["report"].name
    # A chip narrows the list to its phase, keeping the other filters.
    page.goto(f"{bed.admin_url}/runs?namespace={bed.namespace}")
    page.click(".counts .chip[data-phase=Failed]")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-run") == bed.runs["failed"].name


def test_run_page_shows_the_timeline_attempts_and_wait(bed: Bed, page: Any) -> None:
    page.goto(bed.run_url("report"))
    expect(page.locator("#phase")).to_have_text("Succeeded")
    steps = page.locator("#timeline .gantt-row[data-kind=step]")
    assert [(row.get_attribute("data-name"), row.get_attribute("data-attempt"),
             row.get_attribute("data-replayed")) for row in steps.all()] == [
        ("fetch_orders", "1", "2,3"), ("sum_totals", "1", "2,3"), ("render_pdf", "2", "3"),
        ("email_report", "3", "")]
    assert steps.first.locator(".replayed").inner_text() == "↻ replayed in 2, 3"
    waits = page.locator("#timeline .gantt-row[data-kind=wait]")
    assert [(w.get_attribute("data-name"), w.get_attribute("data-attempt"))
            for w in waits.all()] == [("sleep", "2")]
    outcomes = [(row.get_attribute("data-attempt"), row.get_attribute("data-outcome"))
                for row in page.locator("#attempts tbody tr").all()]
    assert outcomes == [("1", "retry"), ("2", "suspended"), ("3", "succeeded")]
    assert "RetryableError" in page.locator("#attempts tbody tr").first.inner_text()
    assert '"revenue": 48211.5' in page.locator("#output pre").inner_text()
    assert '"month": "2026-10"' in page.locator("#payload pre").inner_text()
    assert page.locator("#logs details").count() >= 1
    assert "Succeeded" in page.locator("#events").inner_text()
    _screenshot(page, "dashboard-run.png")

    # A failed run shows its error with the traceback.
    page.goto(bed.run_url("failed"))
    expect(page.locator("#error")).to_contain_text("ValueError: cannot process invoice-7")
    assert "Traceback" in page.locator("#error pre.traceback").inner_text()
    assert page.locator("#attempts tbody tr").first.get_attribute("data-outcome") == "failed"

    # A suspended run says what it waits for and since when.
    page.goto(bed.run_url("waiting"))
    expect(page.locator("#waiting")).to_contain_text(f"Waiting for event {EVENT_KEY}")
    assert re.search(r"since \d{4}-\d\d-\d\d", page.locator("#waiting").inner_text())

    # A parent shows its children as a tree.
    page.goto(bed.run_url("parent"))
    expect(page.locator("#children li")).to_have_count(3)
    assert sorted(li.get_attribute("data-run") or ""
                  for li in page.locator("#children li").all()) == bed.children


def test_queues_and_tasks_pages_count_what_runs(bed: Bed, page: Any) -> None:
    page.goto(f"{bed.admin_url}/queues?namespace={bed.namespace}")
    paused = page.locator("tr.queue[data-queue=paused]")
    expect(paused).to_have_attribute("data-waiting", "1")
    assert paused.get_attribute("data-running") == "0"
    assert "paused" in paused.inner_text()
    default = page.locator("tr.queue[data-queue=default]")
    expect(default).to_have_attribute("data-running", "2")
    assert default.get_attribute("data-suspended") == "2"
    keys = {row.get_attribute("data-key"): (row.get_attribute("data-running"),
                                             row.get_attribute("data-suspended"))
            for row in page.locator("tr.key[data-queue=default]").all()}
    assert keys == {"tenant-a": ("1", "0"), "tenant-b": ("1", "0"), "tenant-c": ("0", "1")}

    _screenshot(page, "dashboard-queues.png")

    page.goto(f"{bed.admin_url}/tasks?namespace={bed.namespace}")
    rates = {row.get_attribute("data-task"): row.get_attribute("data-success")
             for row in page.locator("table.tasks tbody tr[data-task]").all()}
    assert rates["monthly-report"] == "1.000"
    assert rates["broken"] == "0.000"
    _screenshot(page, "dashboard-tasks.png")


def test_cancel_from_the_run_page_ends_the_run(bed: Bed, page: Any,
                                               kube: kubernetes.client.ApiClient) -> None:
    page.goto(bed.run_url("to-cancel"))
    expect(page.locator("#phase")).to_have_text("Running")
    page.click("button[name=cancel]")
    expect(page.locator("#flash .flash.ok")).to_contain_text("Cancel requested")
    # The live part of the page follows the run to its end, with no reload.
    expect(page.locator("#phase")).to_have_text("Canceled", timeout=SEEN_MS)
    body = kubernetes.client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "durakube.io", "v1alpha1", bed.namespace, "taskruns", bed.runs["to-cancel"].name)
    assert body["spec"]["cancel"] is True


def test_an_event_sent_from_the_page_resumes_the_waiting_run(bed: Bed, page: Any) -> None:
    page.goto(bed.run_url("waiting"))
    expect(page.locator("#phase")).to_have_text("Suspended")
    assert page.locator("#event-form input[name=key]").input_value() == EVENT_KEY
    page.fill("#event-form input[name=data]", '{"approved": true}')
    page.click("button[name=send-event]")
    expect(page.locator("#flash .flash.ok")).to_contain_text(f"Event '{EVENT_KEY}'",
                                                             timeout=ACTED_MS)
    expect(page.locator("#phase")).to_have_text("Succeeded", timeout=SEEN_MS)
    page.reload()
    assert '"approved": true' in page.locator("#output pre").inner_text()


def test_a_token_completed_from_the_page_resumes_the_run_without_showing_the_token(
        bed: Bed, page: Any) -> None:
    page.goto(bed.run_url("approval"))
    expect(page.locator("#waiting")).to_contain_text("Waiting for token wpt_")
    # Only the token's first characters are on the page: the token itself completes the wait.
    assert not re.search(r"wpt_[A-Za-z0-9_-]{8,}", page.content())
    page.fill("#token-form input[name=data]", '{"approved": true, "by": "ada"}')
    page.click("button[name=complete-token]")
    expect(page.locator("#flash .flash.ok")).to_contain_text("delivered", timeout=ACTED_MS)
    expect(page.locator("#phase")).to_have_text("Succeeded", timeout=SEEN_MS)
    page.reload()
    assert '"by": "ada"' in page.locator("#output pre").inner_text()


def test_a_forbidden_action_is_refused_and_shown(bed: Bed, page: Any,
                                                 kube: kubernetes.client.ApiClient) -> None:
    # The viewer sees the run...
    page.goto(bed.run_url("to-keep", viewer=True))
    expect(page.locator("#phase")).to_have_text("Running")
    # ...but the API refuses its cancel, and the page says so with the RBAC message.
    page.click("button[name=cancel]")
    refusal = page.locator("#flash .flash.error")
    expect(refusal).to_contain_text("Forbidden by Kubernetes RBAC")
    expect(refusal).to_contain_text('User "run-viewer" cannot patch resource "taskruns"')
    assert refusal.get_attribute("data-status") == "403"
    page.fill("#event-form input[name=key]", "approval-8")
    page.click("button[name=send-event]")
    expect(refusal).to_contain_text('cannot create resource "taskevents"')
    body = kubernetes.client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "durakube.io", "v1alpha1", bed.namespace, "taskruns", bed.runs["to-keep"].name)
    assert not body["spec"].get("cancel")
    assert (body.get("status") or {}).get("phase") == "Running"

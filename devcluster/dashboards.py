"""The chart's Grafana dashboard, as code: `make dashboards` writes
charts/durakube/dashboards/durakube.json from this module.

Built with grafana-foundation-sdk (a dev dependency: only this generator needs it;
the chart ships the JSON). Every query reads the operator's metrics
(operator/durakube_operator/metrics.py) and filters on the `namespace` and `queue`
variables where the metric has those labels. tests/unit/chart/test_chart_dashboard.py
fails when the committed JSON is stale, and tests/e2e/operator/test_metrics.py runs
every panel's queries against a real Prometheus scraping the operator.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

UID = "durakube-operator"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")

# The label filters of run and queue series, and of series that only know the namespace.
RUNS = 'namespace=~"$namespace", queue=~"$queue"'
NAMESPACES = 'namespace=~"$namespace"'
RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Chart:
    """One time-series panel: its title, what it shows, its unit and queries."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 8


def quantiles(metric: str, labels: str, by: str = "", scale: tuple[float, ...] = (0.5, 0.9, 0.99)
              ) -> tuple[Query, ...]:
    """One query per quantile of histogram `metric`, summed over everything but `by`."""
    keep = f"{by}, le" if by else "le"
    prefix = "{{" + by + "}} " if by else ""
    return tuple(
        Query(f"histogram_quantile({q}, sum by ({keep}) (rate({metric}_bucket{{{labels}}}{RATE})))",
              f"{prefix}p{round(q * 100)}")
        for q in scale)


ROWS: tuple[tuple[str, tuple[Chart, ...]], ...] = (
    ("Runs", (
        Chart("Runs started and finished", "Runs taken up, and runs that reached a final phase "
              "by phase (Succeeded, Failed, TimedOut, Canceled, Expired), per second.", "short", (
                  Query(f"sum(rate(durakube_runs_started_total{{{RUNS}}}{RATE}))", "started"),
                  Query(f"sum by (outcome) (rate(durakube_runs_finished_total{{{RUNS}}}{RATE}))",
                        "{{outcome}}"))),
        Chart("Run duration", "From TaskRun creation to its final phase.", "s",
              quantiles("durakube_run_duration_seconds", RUNS)),
        Chart("Retries by reason", "Attempts that ended and will be tried again, per second.",
              "short", (
                  Query(f"sum by (reason) (rate(durakube_retries_total{{{RUNS}}}{RATE}))",
                        "{{reason}}"),)),
        Chart("Attempts by outcome", "Attempts that ended, by the outcome their worker recorded "
              "(none: the pod ended without one), per second.", "short", (
                  Query(f"sum by (outcome) (rate(durakube_attempts_finished_total{{{RUNS}}}{RATE}))",
                        "{{outcome}}"),)),
        Chart("Step duration per task", "How long the steps of each task ran (90th percentile), "
              "from the steps recorded in Postgres.", "s",
              quantiles("durakube_step_duration_seconds", RUNS, by="task", scale=(0.9,)), width=16),
    )),
    ("Queues", (
        Chart("Queue slots: running, waiting, suspended and limit", "Per queue: slots in use, "
              "runs waiting for one, runs suspended in a long wait, and the concurrency limit.",
              "short", (
                  Query(f"sum by (namespace, queue) (durakube_queue_running{{{RUNS}}})",
                        "{{namespace}}/{{queue}} running"),
                  Query(f"sum by (namespace, queue) (durakube_queue_waiting{{{RUNS}}})",
                        "{{namespace}}/{{queue}} waiting"),
                  Query(f"sum by (namespace, queue) (durakube_queue_suspended{{{RUNS}}})",
                        "{{namespace}}/{{queue}} suspended"),
                  Query(f"max by (namespace, queue) (durakube_queue_concurrency_limit{{{RUNS}}})",
                        "{{namespace}}/{{queue}} limit")), width=12),
        Chart("Queue wait", "From entering a queue's line to getting a slot.", "s",
              quantiles("durakube_queue_wait_seconds", RUNS), width=12),
        Chart("Attempt pod start latency", "From an attempt being due (TaskRun created, delay or "
              "back-off over) to its pod created, time in the queue's line included.", "s",
              quantiles("durakube_attempt_pod_created_seconds", RUNS), width=12),
    )),
    ("Operator", (
        Chart("Reconciles and errors", "Reconcile passes per second, and those that raised by "
              "reason (retried after a back-off).", "short", (
                  Query(f"sum(rate(durakube_reconciles_total{{{NAMESPACES}}}{RATE}))", "reconciles"),
                  Query(f"sum by (reason) (rate(durakube_reconcile_errors_total{{{NAMESPACES}}}{RATE}))",
                        "error {{reason}}"))),
        Chart("Work queue", "Run keys ready for a worker, keys waiting for a deadline, and how "
              "long a ready key waited for a worker (90th percentile, seconds on the right).",
              "short", (
                  Query("sum(durakube_workqueue_depth)", "ready"),
                  Query("sum(durakube_workqueue_delayed)", "delayed"),
                  *quantiles("durakube_workqueue_wait_seconds", "", by="priority", scale=(0.9,)))),
        Chart("Kubernetes API calls", "Calls to the API server per second, by verb, resource and "
              "status class.", "reqps", (
                  Query(f"sum by (verb, resource, code) (rate(durakube_api_requests_total{RATE}))",
                        "{{verb}} {{resource}} {{code}}"),)),
        Chart("Kubernetes API errors", "Calls answered with anything but 2xx (or not answered), "
              "per second. A 404 on a read or a 409 on a create is often expected.", "reqps", (
                  Query("sum by (verb, resource, code) "
                        f"(rate(durakube_api_requests_total{{code!=\"2xx\"}}{RATE}))",
                        "{{verb}} {{resource}} {{code}}"),)),
        Chart("Kubernetes API latency", "How long one call to the API server took.", "s",
              quantiles("durakube_api_request_duration_seconds", "", by="verb", scale=(0.5, 0.99))),
        Chart("Postgres latency", "How long one statement of the operator took, by kind.", "s",
              quantiles("durakube_postgres_query_duration_seconds", "", by="statement",
                        scale=(0.5, 0.99))),
        Chart("Postgres reachable", "Per replica: 1 when its last ping of Postgres was answered.",
              "short", (Query("durakube_postgres_up", "{{instance}}"),)),
        Chart("Webhook requests", "Requests to the webhook server per second, by route and "
              "status.", "reqps", (
                  Query(f"sum by (route, code) (rate(durakube_webhook_requests_total{RATE}))",
                        "{{route}} {{code}}"),)),
        Chart("Leader", "Per replica: 1 on the one that holds the Lease and reconciles. Exactly "
              "one line should be at 1.", "short", (
                  Query("durakube_operator_leader", "{{instance}}"),
                  Query("count by (version) (durakube_build_info)", "replicas of {{version}}"))),
    )),
)


def build_panel(chart: Chart, panel_id: int) -> timeseries.Panel:
    panel = (timeseries.Panel().id(panel_id).title(chart.title).description(chart.description)
             .datasource(DATASOURCE).unit(chart.unit).span(chart.width).height(8)
             .fill_opacity(10).line_width(1)
             .legend(common.VizLegendOptions().show_legend(True)
                     .display_mode(common_models.LegendDisplayMode.LIST)
                     .placement(common_models.LegendPlacement.BOTTOM))
             .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI)
                      .sort(common_models.SortOrder.DESCENDING)))
    for index, query in enumerate(chart.queries):
        panel.with_target(prometheus.Dataquery().expr(query.expr).legend_format(query.legend)
                          .ref_id(chr(ord("A") + index)))
    return panel


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    board = (dashboard.Dashboard("Durakube").uid(UID)
             .description("Runs, queues and the health of the Durakube operator.")
             .tags(["durakube"]).time("now-6h", "now").refresh("30s").timezone("browser")
             .tooltip(models.DashboardCursorSync.CROSSHAIR)
             .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                            .type("prometheus"))
             .with_variable(dashboard.QueryVariable("namespace").label("Namespace")
                            .datasource(DATASOURCE)
                            .query("label_values(durakube_queue_concurrency_limit, namespace)")
                            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                            .multi(True).include_all(True).all_value(".*")
                            .sort(models.VariableSort.ALPHABETICAL_ASC))
             .with_variable(dashboard.QueryVariable("queue").label("Queue")
                            .datasource(DATASOURCE)
                            .query('label_values(durakube_queue_concurrency_limit{namespace=~"$namespace"}'
                                   ", queue)")
                            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                            .multi(True).include_all(True).all_value(".*")
                            .sort(models.VariableSort.ALPHABETICAL_ASC)))
    panel_id = 0
    for title, charts in ROWS:
        panel_id += 1
        board.with_row(dashboard.Row(title).id(panel_id))
        for chart in charts:
            panel_id += 1
            board.with_panel(build_panel(chart, panel_id))
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def render() -> str:
    """The dashboard's JSON as committed: sorted keys, two-space indents, a final newline."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m devcluster.dashboards <path of the dashboard JSON>", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

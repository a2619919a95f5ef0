"""The chart's Grafana dashboard: the committed JSON is what `make dashboards` generates,
and its queries read only metrics the operator serves."""

from __future__ import annotations

import json
import re

import prometheus_client
from charting import CHART

from devcluster import dashboards
from durakube_operator import metrics

COMMITTED = CHART / "dashboards" / "durakube.json"


def served_metric_names() -> set[str]:
    """The series names the operator's registry exposes (counters with `_total`,
    histograms with `_bucket`, `_count` and `_sum`), labelled series not yet seen included."""
    assert metrics.LEADER is not None  # the import registers the operator's metrics
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    return {family.name + suffix for family in prometheus_client.REGISTRY.collect()
            for suffix in suffixes.get(family.type, ("",))}


def panel_queries() -> list[tuple[str, str]]:
    board = json.loads(COMMITTED.read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"]
            for target in panel.get("targets", [])]


def test_the_committed_dashboard_is_what_make_dashboards_generates() -> None:
    assert COMMITTED.read_text() == dashboards.render(), \
        "charts/durakube/dashboards/durakube.json is stale: run `make dashboards` and commit it"


def test_every_panel_has_a_query() -> None:
    board = json.loads(COMMITTED.read_text())
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel.get("targets"), f"panel {panel['title']!r} has no query"


def test_every_query_reads_metrics_the_operator_serves() -> None:
    served = served_metric_names()
    for title, expr in panel_queries():
        names = set(re.findall(r"\bdurakube_[a-z_]+\b", expr))
        assert names, f"{title}: {expr} reads no durakube_ metric"
        assert names <= served, f"{title}: {sorted(names - served)} are not served"

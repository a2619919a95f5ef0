"""The chart's alerts, run by promtool: the rendered rules are valid, and each alert
fires on the series that should make it fire and stays quiet on others (alerts.test.yaml).

promtool comes from Debian's prometheus package (`make prometheus`). The rules are those
`helm template` renders for the release "durakube", so what is tested is what ships.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from charting import one, render

HERE = Path(__file__).resolve().parent
MONITORING = ("monitoring.coreos.com/v1",)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("the alerts' tests need promtool: `make prometheus` installs it")
    return path


def rule_groups() -> list[dict[str, Any]]:
    rule = one(render("default-values.yaml", sets={"prometheusRule.enabled": "true"},
                      api_versions=MONITORING), "PrometheusRule")
    return list(rule["spec"]["groups"])


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    rules = tmp_path / "durakube-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    result = run_promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_its_series_and_only_there(tmp_path: Path) -> None:
    groups = rule_groups()
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "durakube-rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    tests = tmp_path / "alerts.test.yaml"
    shutil.copy(HERE / "alerts.test.yaml", tests)
    result = run_promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_test() -> None:
    alerts = {rule["alert"] for group in rule_groups() for rule in group["rules"]}
    cases = yaml.safe_load((HERE / "alerts.test.yaml").read_text())["tests"]
    firing = {test["alertname"] for case in cases for test in case["alert_rule_test"]
              if test["exp_alerts"]}
    assert firing == alerts

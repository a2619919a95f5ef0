"""The chart's `tracing` values: off by default, and what the operator reads when set."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from charting import environment, helm, render, template_args

from durakube_operator import settings as settings_module

ENDPOINT = "http://otel-collector.observability:4318"


def operator_settings(env: dict[str, object]) -> settings_module.Settings:
    """The operator's settings from the rendered env (secrets from files aside)."""
    plain = {name: value for name, value in env.items()
             if isinstance(value, str) and not name.endswith("_FILE")}
    return settings_module.Settings.from_environ({**plain, "DURAKUBE_DATABASE_URL": "postgresql://x/y"})


def test_traces_are_off_by_default() -> None:
    env = environment(render("default-values.yaml"))
    assert "DURAKUBE_OTLP_ENDPOINT" not in env
    assert not operator_settings(env).tracing


def test_an_endpoint_turns_traces_on_with_its_sample_ratio(tmp_path: Path) -> None:
    # A file, not --set: helm's --set reads 0.25 as a string.
    values = tmp_path / "tracing-values.yaml"
    values.write_text(yaml.safe_dump({"tracing": {"otlpEndpoint": ENDPOINT, "sampleRatio": 0.25}}))
    env = environment(render("default-values.yaml", values))
    assert env["DURAKUBE_OTLP_ENDPOINT"] == ENDPOINT
    settings = operator_settings(env)
    assert settings.tracing
    assert settings.otlp_endpoint == ENDPOINT
    assert settings.trace_sample_ratio == 0.25


def test_the_all_on_scenario_traces() -> None:
    env = environment(render("all-on-values.yaml"))
    assert operator_settings(env).trace_sample_ratio == 0.5


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("tracing.otlpEndpoint", "collector:4318", "/tracing/otlpEndpoint"),
    ("tracing.sampleRatio", "1.5", "/tracing/sampleRatio"),
    ("tracing.endpoint", "http://x", "additional properties 'endpoint' not allowed"),
], ids=["not-a-url", "ratio-over-one", "unknown-key"])
def test_bad_tracing_values_are_refused(key: str, value: str, problem: str) -> None:
    result = helm("template", *template_args("default-values.yaml", sets={key: value}), check=False)
    assert result.returncode != 0
    assert problem in result.stderr

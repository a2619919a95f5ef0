"""The CRDs in crds/ (and the chart's CRD templates) are exactly what the pydantic models
generate."""

from __future__ import annotations

from pathlib import Path

import yaml

from durakube import crds, resources

ROOT = Path(__file__).resolve().parents[3]


CHART_CRDS = ROOT / "charts" / "durakube" / "templates" / "crds"


def test_committed_crds_match_the_models() -> None:
    for name, text in crds.render().items():
        path = ROOT / "crds" / name
        assert path.exists(), f"{path} is missing: run `make crds`"
        assert path.read_text() == text, f"{path} is stale: run `make crds`"


def test_chart_crd_templates_match_the_models() -> None:
    templates = crds.render_chart_templates()
    assert {path.name for path in CHART_CRDS.iterdir()} == set(templates), (
        f"{CHART_CRDS} holds other files than the generated templates: run `make crds`")
    for name, text in templates.items():
        assert (CHART_CRDS / name).read_text() == text, f"{CHART_CRDS / name} is stale: run `make crds`"


def test_chart_crd_templates_hold_the_same_spec() -> None:
    # Outside its template lines, each chart template is the CRD of crds/ (which
    # tests/unit/chart renders through helm too).
    for crd in crds.definitions().values():
        text = crds.render_chart_templates()[f"{crd['spec']['names']['plural']}.yaml"]
        spec = text[text.index("\nspec:\n") + 1:text.rindex("{{- end }}")]
        assert yaml.safe_load(spec) == {"spec": crd["spec"]}


def test_the_chart_has_no_crds_folder() -> None:
    # helm installs a chart's crds/ once and never upgrades it: the templates replace it.
    assert not (ROOT / "charts" / "durakube" / "crds").exists()


def _schema(plural: str) -> dict:
    crd = yaml.safe_load(crds.render()[f"{plural}.durakube.io.yaml"].split("\n", 1)[1])
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_every_model_field_is_in_the_schema_by_its_wire_name() -> None:
    spec = _schema("taskruns")["properties"]["spec"]["properties"]
    assert set(spec) == {field.alias or name for name, field in
                         resources.TaskRunSpec.model_fields.items()}
    status = _schema("taskruns")["properties"]["status"]["properties"]
    assert {"phase", "conditions", "observedGeneration", "attempt", "podName", "currentStep",
            "completedSteps", "startTime", "completionTime", "nextAttemptAt", "lastError",
            "output"} <= set(status)


def test_schema_is_structural() -> None:
    def walk(node: dict, path: str) -> None:
        assert "$ref" not in node and "anyOf" not in node, path
        assert "type" in node, f"{path} has no type"
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    for plural in ("tasks", "taskruns"):
        walk(_schema(plural), plural)


def test_durations_are_validated_by_pattern() -> None:
    timeout = _schema("taskruns")["properties"]["spec"]["properties"]["timeout"]
    assert timeout["pattern"] == resources.DURATION_PATTERN

"""values.yaml documents every key, values.schema.json types every key, and the schema
refuses bad values with a message that names the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from charting import BAD_VALUES, CHART, CI, NAMESPACE, helm, template_args

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):(?: |$)")

# Each bad values file and what helm must say about it.
REFUSALS = {
    "bad-wrong-type.yaml": "at '/replicaCount': got string, want integer",
    "bad-negative-replicas.yaml": "at '/replicaCount': minimum: got -1, want 0",
    "bad-missing-database.yaml": "at '/database/url': minLength: got 0, want 1",
    "bad-unknown-key.yaml": "additional properties 'replicas' not allowed",
}


def documented_keys(path: Path) -> list[tuple[tuple[str, ...], list[str]]]:
    """Each key of a block-style YAML file with its path and the comment lines just above it
    (at its own indentation). List items are not keys."""
    keys: list[tuple[tuple[str, ...], list[str]]] = []
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            comments = []
            continue
        if stripped.startswith("#"):
            comments.append(line)
            continue
        match = KEY.match(line)
        if match is None:  # a list item or a continuation line
            comments = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        keys.append(((*[key for _, key in stack], match["key"]),
                     [c.strip() for c in comments if len(c) - len(c.lstrip()) == indent]))
        stack.append((indent, match["key"]))
        comments = []
    return keys


def schema_node(path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema of a values path; None when an ancestor is free-form (a Kubernetes object
    the chart passes through, such as resources or affinity)."""
    node = SCHEMA
    for key in path:
        if "properties" not in node:
            return None
        assert key in node["properties"], f"{'.'.join(path)} is not in values.schema.json"
        node = node["properties"][key]
    return node


def chart_keys() -> list[tuple[tuple[str, ...], list[str]]]:
    """The keys the chart defines (not those inside pass-through Kubernetes objects)."""
    return [(path, comment) for path, comment in documented_keys(CHART / "values.yaml")
            if schema_node(path[:-1]) is not None and "properties" in schema_node(path[:-1])]


def test_every_values_key_has_a_sentence_and_an_example() -> None:
    keys = chart_keys()
    assert len(keys) > 60
    for path, comment in keys:
        name = ".".join(path)
        text = " ".join(line.lstrip("# ") for line in comment)
        assert comment, f"{name} in values.yaml has no comment"
        assert re.match(r"[A-Z].*\.", text), f"{name}: the comment is not a sentence: {text!r}"
        if not schema_node(path).get("properties"):  # a section's keys carry the examples
            assert "Example:" in text, f"{name}: the comment gives no example"


def test_every_values_key_is_in_the_schema() -> None:
    for path, _ in chart_keys():
        assert schema_node(path) is not None


def test_every_schema_key_is_in_values_yaml() -> None:
    in_values = {path for path, _ in chart_keys()}

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        for key, child in node.get("properties", {}).items():
            if "type" in child or "$ref" in child:  # not a oneOf branch's constraint
                assert (*path, key) in in_values, f"{'.'.join((*path, key))} is not in values.yaml"
                walk(child, (*path, key))

    walk(SCHEMA, ())


def test_schema_refuses_unknown_keys_at_every_level() -> None:
    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("properties") and "type" in node:
            assert node.get("additionalProperties") is False, f"{path or '.'} accepts unknown keys"
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")

    walk(SCHEMA, "")
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_every_bad_values_file_has_an_expected_refusal() -> None:
    assert {path.name for path in BAD_VALUES} == set(REFUSALS)


@pytest.mark.parametrize("name", REFUSALS)
@pytest.mark.parametrize("command", ["template", "lint"])
def test_schema_refuses_bad_values_naming_the_field(name: str, command: str) -> None:
    if command == "template":
        result = helm("template", *template_args(CI / name), check=False)
    else:
        result = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE,
                      "--values", str(CI / name), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr + result.stdout
    assert REFUSALS[name] in result.stderr + result.stdout


def test_missing_database_names_both_ways_to_give_it() -> None:
    result = helm("template", *template_args(CI / "bad-missing-database.yaml"), check=False)
    assert "at '/database': 'oneOf' failed, none matched" in result.stderr
    assert "at '/database/existingSecret': minLength: got 0, want 1" in result.stderr


def test_database_given_twice_is_refused() -> None:
    result = helm("template", *template_args("default-values.yaml", sets={
        "database.existingSecret": "durakube-postgres"}), check=False)
    assert result.returncode != 0
    assert "at '/database/url': maxLength: got" in result.stderr


@pytest.mark.parametrize(("setting", "message"), [
    ("ports.health=0", "at '/ports/health': minimum: got 0, want 1"),
    ("ports.metrics=70000", "at '/ports/metrics': maximum: got 70,000, want 65,535"),
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
    ("operator.workers=0", "at '/operator/workers': minimum: got 0, want 1"),
    ("watchNamespaces={Team_A}", "at '/watchNamespaces/0': 'Team_A' does not match pattern"),
    ("crds.install=maybe", "at '/crds/install': got string, want boolean"),
    ("operator.ttlSecondsAfterFinished=-1",
     "at '/operator/ttlSecondsAfterFinished': minimum: got -1, want 0"),
    ("operator.historyRetention=soon", "at '/operator/historyRetention': 'soon' does not match"),
], ids=lambda value: value.split("=")[0] if "=" in value else None)
def test_schema_refuses_other_bad_settings(setting: str, message: str) -> None:
    key, value = setting.split("=", 1)
    result = helm("template", *template_args("default-values.yaml", sets={key: value}), check=False)
    assert result.returncode != 0
    assert message in result.stderr

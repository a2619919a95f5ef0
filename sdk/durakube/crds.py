"""Generates the CustomResourceDefinitions in `crds/` from `durakube.resources`.

Pydantic's JSON schema is turned into a Kubernetes *structural* schema: references
inlined, optional fields unwrapped from `anyOf [X, null]`, free-form objects marked
`x-kubernetes-preserve-unknown-fields`, titles dropped. `python -m durakube.crds
DIR... [--chart CHART]` writes the files, and the Helm chart's CRD templates
(`CHART/templates/crds/<plural>.yaml`: the same definitions behind `crds.install`,
with the chart's labels and, under `crds.keep`, helm's keep policy); a test fails
when the committed files are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from durakube import resources

CATEGORY = "durakube"

# Keys of JSON schema that a structural schema keeps as they are.
_KEPT = ("description", "pattern", "minimum", "maximum", "minLength", "maxLength", "maxItems",
         "minItems", "enum", "format", "default", "x-kubernetes-validations")


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI v3 structural schema of `model` (by alias, i.e. camelCase)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.pop("$defs", {})
    return _convert(schema, definitions)


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, definitions)
    if "anyOf" in node:
        # Optional[X] is anyOf [X, null]: an omitted field, which structural schemas express
        # by leaving it out of `required`.
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _convert({**options[0], **rest}, definitions)
    result: dict[str, Any] = {k: node[k] for k in _KEPT if k in node}
    if "default" in result and result["default"] in ({}, [], None):
        del result["default"]
    if "const" in node:
        result["enum"] = [node["const"]]
    kind = node.get("type")
    if kind is None and "enum" in node:
        kind = "string"
    if kind == "object":
        result["type"] = "object"
        properties = node.get("properties")
        if properties:
            result["properties"] = {name: _convert(sub, definitions) for name, sub in properties.items()}
            if node.get("required"):
                result["required"] = list(node["required"])
        elif isinstance(node.get("additionalProperties"), dict) and node["additionalProperties"]:
            result["additionalProperties"] = _convert(node["additionalProperties"], definitions)
        else:
            result["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        result["type"] = "array"
        result["items"] = _convert(node.get("items", {"type": "object"}), definitions)
    elif kind in ("string", "integer", "number", "boolean"):
        result["type"] = kind
        if kind == "string" and node.get("format") == "date-time":
            result["format"] = "date-time"
    else:
        raise ValueError(f"no structural type for schema node: {node}")
    return result


def _definition(kind: str, plural: str, short_names: list[str], spec: type[BaseModel],
                status: type[BaseModel] | None, columns: list[dict[str, Any]]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": structural_schema(spec),
    }
    version: dict[str, Any] = {
        "name": resources.VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {
            "type": "object",
            "description": (spec.__doc__ or kind).strip().splitlines()[0],
            "required": ["spec"],
            "properties": properties,
        }},
        "additionalPrinterColumns": columns,
    }
    if status is not None:
        properties["status"] = structural_schema(status)
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{resources.GROUP}"},
        "spec": {
            "group": resources.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "versions": [version],
        },
    }


def _column(name: str, path: str, kind: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def definitions() -> dict[str, dict[str, Any]]:
    """File name -> CRD object, for every resource of the group."""
    age = _column("Age", ".metadata.creationTimestamp", "date")
    return {
        "tasks.durakube.io.yaml": _definition(
            "Task", "tasks", ["dtask"], resources.TaskSpec, None, [
                _column("Image", ".spec.image"),
                _column("Entrypoint", ".spec.entrypoint"),
                _column("Queue", ".spec.queue"),
                age,
            ]),
        "taskqueues.durakube.io.yaml": _definition(
            "TaskQueue", "taskqueues", ["tq"], resources.TaskQueueSpec, resources.TaskQueueStatus, [
                _column("Limit", ".spec.concurrencyLimit", "integer"),
                _column("Per Key", ".spec.concurrencyLimitPerKey", "integer"),
                _column("Paused", ".spec.paused", "boolean"),
                _column("Running", ".status.running", "integer"),
                _column("Queued", ".status.queued", "integer"),
                age,
            ]),
        "taskevents.durakube.io.yaml": _definition(
            "TaskEvent", "taskevents", ["tev"], resources.TaskEventSpec, resources.TaskEventStatus, [
                _column("Key", ".spec.key"),
                _column("Phase", ".status.phase"),
                _column("Delivered To", ".status.deliveredTo", "integer"),
                age,
            ]),
        "taskschedules.durakube.io.yaml": _definition(
            "TaskSchedule", "taskschedules", ["tsch"], resources.TaskScheduleSpec,
            resources.TaskScheduleStatus, [
                _column("Schedule", ".spec.schedule"),
                _column("Interval", ".spec.interval"),
                _column("Time Zone", ".spec.timeZone", priority=1),
                _column("Task", ".spec.taskRef.name"),
                _column("Paused", ".spec.paused", "boolean"),
                _column("Last", ".status.lastScheduleTime", "date"),
                # A string, not a date: kubectl shows a future date as "<invalid>".
                _column("Next", ".status.nextScheduleTime"),
                _column("Last Run", ".status.lastRunName"),
                _column("Ready", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
                age,
            ]),
        "taskruns.durakube.io.yaml": _definition(
            "TaskRun", "taskruns", ["tr", "dtr"], resources.TaskRunSpec, resources.TaskRunStatus, [
                _column("Phase", ".status.phase"),
                _column("Task", ".spec.taskRef.name"),
                _column("Queue", ".spec.queue"),
                _column("Attempt", ".status.attempt", "integer"),
                _column("Step", ".status.currentStep"),
                _column("Reason", '.status.conditions[?(@.type=="Succeeded")].reason'),
                age,
            ]),
    }


_HEADER = "# Generated from sdk/durakube/resources.py by `make crds`; do not edit.\n"

# The chart's CRD template around the generated spec. The CRDs are templates rather than
# files in the chart's crds/ folder, which helm installs once and never upgrades; the keep
# policy spares them (and so every run) when the release is uninstalled.
_CHART_METADATA = """\
{{{{- if .Values.crds.install }}}}
{header}apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {name}
  labels:
    {{{{- include "durakube.labels" . | nindent 4 }}}}
    app.kubernetes.io/component: crds
  {{{{- if .Values.crds.keep }}}}
  annotations:
    helm.sh/resource-policy: keep
  {{{{- end }}}}
"""


def render() -> dict[str, str]:
    """File name -> YAML text."""
    return {name: _HEADER + yaml.safe_dump(crd, sort_keys=False, width=100)
            for name, crd in definitions().items()}


def render_chart_templates() -> dict[str, str]:
    """File name (`<plural>.yaml`) -> the chart's template of that CRD."""
    templates = {}
    for crd in definitions().values():
        head = _CHART_METADATA.format(header=_HEADER, name=crd["metadata"]["name"])
        spec = yaml.safe_dump({"spec": crd["spec"]}, sort_keys=False, width=100)
        if "{{" in spec or "}}" in spec:
            # A description quoting a template would be read by helm as one.
            raise ValueError(f"{crd['metadata']['name']} holds template delimiters")
        templates[f"{crd['spec']['names']['plural']}.yaml"] = head + spec + "{{- end }}\n"
    return templates


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    chart = None
    if "--chart" in args:
        at = args.index("--chart")
        chart = Path(args[at + 1])
        del args[at:at + 2]
    folders = [Path(p) for p in args] or ([] if chart else [Path("crds")])
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in render().items():
            (folder / name).write_text(text)
    if chart is not None:
        folder = chart / "templates" / "crds"
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in render_chart_templates().items():
            (folder / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Validation of a TaskRun against its Task: problems become reasons, never exceptions."""

from __future__ import annotations

from typing import Any

import pytest

from durakube import resources
from durakube_operator import validating

TASK: dict[str, Any] = {
    "metadata": {"name": "t", "namespace": "n"},
    "spec": {"image": "i", "entrypoint": "t", "inputSchema": {
        "type": "object", "required": ["documentId"],
        "properties": {"documentId": {"type": "string", "pattern": "^[a-z-]+$"},
                       "pages": {"type": "integer", "minimum": 1}}}},
}


def run(payload: dict[str, Any], **spec: Any) -> resources.TaskRun:
    return resources.TaskRun.model_validate({
        "metadata": {"name": "r", "namespace": "n", "uid": "u"},
        "spec": {"taskRef": {"name": "t"}, "payload": payload, **spec}})


@pytest.mark.parametrize(("payload", "spec", "reason", "fragment"), [
    ({"documentId": "ok"}, {}, None, None),
    ({}, {}, "InvalidPayload", 'payload: "documentId" is a required property'),
    ({"documentId": "UPPER"}, {}, "InvalidPayload", "does not match"),
    ({"documentId": "ok", "pages": 0}, {}, "InvalidPayload", "payload.pages: 0 is less than the minimum"),
    ({"documentId": "ok", "pages": True}, {}, "InvalidPayload", 'is not of type "integer"'),
    ({"documentId": "ok"}, {"retry": {"minTimeout": "10s", "maxTimeout": "1s"}}, "Invalid",
     "min_timeout"),
    ({"documentId": "ok"}, {"timeout": "0s"}, "Invalid", "longer than zero"),
], ids=["valid", "missing", "pattern", "minimum", "bool-is-not-int", "retry-order", "zero-timeout"])
def test_run_problems(payload: dict[str, Any], spec: dict[str, Any], reason: str | None,
                      fragment: str | None) -> None:
    problem = validating.validate_run(run(payload, **spec), TASK)
    if reason is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.reason == reason
        assert fragment in problem.message


def test_invalid_task_is_reported_not_raised() -> None:
    broken = {"metadata": {"name": "t"}, "spec": {"image": "", "entrypoint": "t"}}
    problem = validating.validate_run(run({}), broken)
    assert problem is not None and problem.reason == "Invalid"
    assert "Task 't' is invalid" in problem.message


def test_task_with_an_invalid_input_schema_is_reported_not_raised() -> None:
    broken = {**TASK, "spec": {**TASK["spec"], "inputSchema": {"type": "no-such-type"}}}
    problem = validating.validate_run(run({"documentId": "ok"}), broken)
    assert problem is not None and problem.reason == "Invalid"
    assert "not a valid JSON Schema" in problem.message

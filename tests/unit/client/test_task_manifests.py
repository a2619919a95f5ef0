"""`durakube manifests`: Task objects generated from the @task decorators of a module."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from durakube import resources, tasks
from durakube.client import manifests

MODULE = textwrap.dedent('''
    from pydantic import BaseModel, Field

    import durakube

    class Invoice(BaseModel):
        invoice_id: str = Field(alias="invoiceId", pattern="^inv-[0-9]+$")
        amount: float = 0

    @durakube.task(id="bill_customer", queue="billing", timeout="90s",
                   retry=durakube.Retry(max_attempts=5, factor=3, min_timeout=0.5,
                                        max_timeout="2m", randomize=False, on=[TimeoutError]))
    async def bill(ctx: durakube.TaskContext, payload: Invoice) -> dict:
        return {}

    @durakube.task()
    async def plain(ctx: durakube.TaskContext, payload: dict) -> None:
        return None
''')


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tasks.Registry:
    (tmp_path / "billing_tasks.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = tasks.Registry()
    monkeypatch.setattr(tasks, "_DEFAULT_REGISTRY", registry)
    return registry


def test_every_task_of_the_module_becomes_a_valid_task(module: tasks.Registry) -> None:
    found = manifests.build_task_manifests("billing_tasks", image="ghcr.io/acme/billing:1.0",
                                           registry=module)
    assert [body["metadata"]["name"] for body in found] == ["bill-customer", "plain"]
    bill = found[0]
    assert bill["spec"]["entrypoint"] == "bill_customer"
    assert bill["spec"]["image"] == "ghcr.io/acme/billing:1.0"
    assert bill["spec"]["modules"] == ["billing_tasks"]
    assert bill["spec"]["queue"] == "billing"
    assert bill["spec"]["timeout"] == "90s"
    assert bill["spec"]["retry"] == {"maxAttempts": 5, "factor": 3.0, "minTimeout": "500ms",
                                     "maxTimeout": "120s", "randomize": False,
                                     "on": ["TimeoutError"]}
    schema = bill["spec"]["inputSchema"]
    assert schema["required"] == ["invoiceId"]  # by alias, as payloads are written
    assert schema["properties"]["invoiceId"]["pattern"] == "^inv-[0-9]+$"
    assert "inputSchema" not in found[1]["spec"]
    for body in found:
        resources.Task.model_validate(body)

"""Payloads over the inline limit go to Postgres and the TaskRun carries only a reference.

The client runs with a kubeconfig pointing nowhere and a fake API object (a few
lines) standing in for the Kubernetes calls; Postgres is the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from durakube import store
from durakube.client import AsyncClient, manifests
from durakube.store import payloads


class FakeApi:
    """Records created TaskRuns; every Task exists."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    async def get_task(self, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": {"image": "i", "entrypoint": name}}

    async def create_taskrun(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        meta = body["metadata"]
        return {**body, "metadata": {**meta, "name": meta.get("name") or meta["generateName"] + "a1b2c",
                                     "namespace": namespace, "uid": "u-1"}}

    async def close(self) -> None:
        pass


@pytest.fixture
async def client(kubeconfig: Path, database_dsn: str) -> AsyncIterator[tuple[AsyncClient, FakeApi]]:
    pool = await store.connect(database_dsn)
    await store.migrate(pool)
    await pool.close()
    made = AsyncClient(kubeconfig=kubeconfig,
                       database_url=database_dsn)
    fake = FakeApi()
    made._session.api = fake  # type: ignore[assignment]
    try:
        yield made, fake
    finally:
        await made.aclose()


def test_the_inline_limit_is_on_the_encoded_json() -> None:
    limit = payloads.INLINE_LIMIT_BYTES
    overhead = payloads.encoded_size({"b": ""})
    assert manifests.fits_inline({"b": "x" * (limit - overhead)})
    assert not manifests.fits_inline({"b": "x" * (limit - overhead + 1)})


async def test_small_payload_travels_inline(client: tuple[AsyncClient, FakeApi]) -> None:
    made, fake = client
    assert made.namespace == "team-a"  # from the kubeconfig context
    await made.trigger("echo", {"n": 1})
    assert fake.created[0]["spec"]["payload"] == {"n": 1}
    assert "payloadRef" not in fake.created[0]["spec"]


async def test_large_payload_goes_to_postgres_by_reference(
        client: tuple[AsyncClient, FakeApi]) -> None:
    made, fake = client
    payload = {"blob": "y" * (payloads.INLINE_LIMIT_BYTES + 10)}
    await made.trigger("echo", payload)
    spec = fake.created[0]["spec"]
    assert "payload" not in spec
    assert spec["payloadRef"] == payloads.reference_of(payload)
    assert await payloads.get_payload(await made._session.database("test"), spec["payloadRef"]) == payload


def test_taskrun_bodies_carry_options_and_tags_as_labels() -> None:
    body = manifests.build_taskrun("process_document", name="r-1", payload={"a": 1}, queue="bulk",
                                   concurrency_key="t1", priority=3, idempotency_key="k",
                                   delay=90, ttl="10m", tags=["nightly", "team.a"])
    assert body["spec"] == {"taskRef": {"name": "process-document"}, "payload": {"a": 1},
                            "queue": "bulk", "concurrencyKey": "t1", "priority": 3,
                            "delay": "90s", "ttl": "10m"}
    assert body["metadata"]["annotations"] == {"durakube.io/idempotency-key": "k"}
    assert body["metadata"]["labels"]["durakube.io/tag-nightly"] == "true"
    assert manifests.read_tags(body["metadata"]["labels"]) == ["nightly", "team.a"]
    with pytest.raises(ValueError, match="cannot be a label name"):
        manifests.label_tags(["no spaces"])

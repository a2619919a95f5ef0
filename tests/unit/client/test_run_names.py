"""TaskRun names: deterministic per (task, idempotency key), random without one, always valid."""

from __future__ import annotations

import re

import pytest

from durakube import resources
from durakube.client import manifests


def test_same_task_and_key_give_the_same_name() -> None:
    assert manifests.derive_run_name("echo", "order-1") == manifests.derive_run_name("echo", "order-1")
    assert manifests.derive_run_name("echo", "order-1") == "echo-" + manifests.key_digest("order-1")


@pytest.mark.parametrize(("a", "b"), [
    (("echo", "order-1"), ("echo", "order-2")),
    (("echo", "order-1"), ("greet", "order-1")),
], ids=["other-key", "other-task"])
def test_another_task_or_key_gives_another_name(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert manifests.derive_run_name(*a) != manifests.derive_run_name(*b)


def test_without_a_key_every_name_is_new() -> None:
    names = {manifests.derive_run_name("echo") for _ in range(1000)}
    assert len(names) == 1000


@pytest.mark.parametrize("task", ["echo", "process_document", "a" * 200, "x.y-z"])
@pytest.mark.parametrize("key", [None, "k", "ünïcode key with spaces / and more" * 20])
def test_names_are_valid_object_names_short_enough_for_pod_names(task: str, key: str | None) -> None:
    name = manifests.derive_run_name(task, key)
    assert re.match(resources.NAME_PATTERN, name), name
    assert len(name) <= 53  # "-<attempt>" still fits a 63-character pod name / label value


def test_task_ids_with_underscores_name_dashed_task_objects() -> None:
    assert manifests.task_object_name("process_document") == "process-document"

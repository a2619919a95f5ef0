"""The operator's log format: DURAKUBE_LOG_FORMAT or --log-format, through its real
entry point's set-up (the replica itself replaced by one that logs and returns)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from durakube_operator import main, operating, settings


@pytest.fixture
def replica(monkeypatch: pytest.MonkeyPatch) -> list[settings.Settings]:
    """Stands in for `operating.operate`: logs as kopf's object loggers and ours do."""
    seen: list[settings.Settings] = []

    async def operate(config: settings.Settings) -> int:
        seen.append(config)
        logging.getLogger("durakube_operator.acting").info("adopting existing pod %s", "p-1")
        logging.getLogger("kopf.objects").warning(
            "handler failed", extra={"k8s_skip": False,
                                     "k8s_ref": {"namespace": "ns", "name": "run-1"}})
        return 0

    monkeypatch.setattr(operating, "operate", operate)
    monkeypatch.setenv("DURAKUBE_DATABASE_URL", "postgresql://db/durakube")
    yield seen
    logging.getLogger().handlers.clear()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_json_format_writes_one_parseable_object_per_record(
        replica: list[settings.Settings], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], how: str) -> None:
    argv: list[str] = []
    if how == "flag":
        argv = ["--log-format", "json"]
    else:
        monkeypatch.setenv("DURAKUBE_LOG_FORMAT", "json")
    assert main.main(argv) == 0
    assert replica[0].log_format == "json"
    records: list[dict[str, Any]] = [json.loads(line)
                                     for line in capsys.readouterr().err.splitlines()]
    ours, kopfs = records
    assert (ours["level"], ours["logger"], ours["message"]) == (
        "INFO", "durakube_operator.acting", "adopting existing pod p-1")
    assert kopfs["object"] == {"namespace": "ns", "name": "run-1"} and "k8s_skip" not in kopfs


def test_plain_format_is_the_default(replica: list[settings.Settings],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main([]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith(" INFO durakube_operator.acting: adopting existing pod p-1")


def test_a_bad_format_stops_the_operator_naming_the_variable(
        replica: list[settings.Settings], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DURAKUBE_LOG_FORMAT", "xml")
    assert main.main([]) == 2
    assert "DURAKUBE_LOG_FORMAT" in capsys.readouterr().err
    assert replica == []

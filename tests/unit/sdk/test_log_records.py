"""ctx.logger's records and the two formats: what a record carries, in and out of steps."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from durakube import current, logs


class FakeContext:
    run_id = "run-9"
    attempt = 3


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture(autouse=True)
def info_level() -> Iterator[None]:
    """Records at INFO and above reach the handlers, whatever other tests left."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(level)


def handler_for(stream: io.StringIO, log_format: logs.LogFormat) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(log_format))
    handler.addFilter(logs.RunFilter())
    return handler


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_task_logger_records_carry_run_attempt_and_the_running_step(
        stream: io.StringIO, log_format: logs.LogFormat) -> None:
    logger = logs.task_logger("report", "run-1", 2)
    handler = handler_for(stream, log_format)
    logger.logger.addHandler(handler)
    try:
        logger.info("outside")
        with current.entered_step(4, "embed"):
            logger.warning("inside %s", "embed", extra={"rows": 12})
    finally:
        logger.logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    if log_format == "plain":
        assert lines[0].endswith("INFO durakube.task.report [run=run-1 attempt=2 step=None]: outside")
        assert lines[1].endswith("[run=run-1 attempt=2 step=embed]: inside embed")
        return
    outside, inside = (json.loads(line) for line in lines)
    assert (outside["run_id"], outside["attempt"], "step" in outside) == ("run-1", 2, False)
    assert (inside["run_id"], inside["attempt"], inside["step"]) == ("run-1", 2, "embed")
    assert (inside["level"], inside["message"], inside["rows"]) == ("WARNING", "inside embed", 12)


def test_any_logger_in_a_running_task_is_stamped_with_its_run(stream: io.StringIO) -> None:
    logger = logging.getLogger("some.library")
    handler = handler_for(stream, "json")
    logger.addHandler(handler)
    try:
        logger.info("no task runs")
        with current.activated(FakeContext()), current.entered_step(1, "fetch"):  # type: ignore[arg-type]
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    idle, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "run_id" not in idle
    assert (failed["run_id"], failed["attempt"], failed["step"]) == ("run-9", 3, "fetch")
    assert "ValueError: boom" in failed["exception"]

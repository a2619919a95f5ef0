"""Log records of tasks and of Durakube's processes: the task logger and the two formats.

`ctx.logger` (`task_logger`) is a logger whose records carry the run id, the
attempt and the step running when the record was made (`run_id`, `attempt`,
`step`; `step` is None between steps). The worker and the operator write their
records to stderr in one of two formats (`configure`):

- `plain` (the default): `time level logger [run=... attempt=... step=...]: message`,
  the bracket only on records that carry a run;
- `json`: one JSON object per line, with `time` (UTC, ISO 8601), `level`,
  `logger`, `message`, `run_id`, `attempt` and `step` when known, `exception` (a
  traceback) when there is one, and any other field given with `extra=`.

Chosen with `DURAKUBE_LOG_FORMAT` or `--log-format` (worker and operator alike).
In the worker, `RunFilter` stamps the running attempt onto every record, so the
records of the task's own `logging.getLogger(...)` loggers carry the run too.

Formats and stamps records only: where they go (the pod's stderr, and from there
the attempt's stored log) is the worker's business (`capturing`).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from durakube import current

LogFormat = Literal["plain", "json"]
LOG_FORMATS: tuple[str, ...] = ("plain", "json")

# The attributes every LogRecord has: anything else on a record came with `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}
_RUN_FIELDS = ("run_id", "attempt", "step")
# Set by the formatters and kopf's object loggers, not by whoever logged.
_NOT_EXTRA = frozenset({*_RUN_FIELDS, "run", "k8s_skip"})


class TaskLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """`ctx.logger`: a logger whose records carry the run, the attempt and the step
    running at the moment of the call."""

    def __init__(self, logger: logging.Logger, run_id: str, attempt: int) -> None:
        super().__init__(logger, {"run_id": run_id, "attempt": attempt})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        active = current.active_step()
        fields = {**(self.extra or {}), "step": active[1] if active is not None else None}
        kwargs["extra"] = {**fields, **(kwargs.get("extra") or {})}
        return msg, kwargs


def task_logger(task_id: str, run_id: str, attempt: int) -> TaskLogger:
    """The logger of one attempt of task `task_id` (named `durakube.task.<task_id>`)."""
    return TaskLogger(logging.getLogger(f"durakube.task.{task_id}"), run_id, attempt)


class RunFilter(logging.Filter):
    """Stamps the run, attempt and step of the task running in this asyncio task (if any)
    onto records that do not carry them yet. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run_id", None) is None:
            ctx = current.current()
            if ctx is not None:
                active = current.active_step()
                record.run_id = ctx.run_id
                record.attempt = ctx.attempt
                record.step = active[1] if active is not None else None
        return True


class PlainFormatter(logging.Formatter):
    """`time level logger [run=... attempt=... step=...]: message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(run)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        record.run = "" if run_id is None else (
            f" [run={run_id} attempt={getattr(record, 'attempt', None)}"
            f" step={getattr(record, 'step', None)}]")
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _RUN_FIELDS:
            if getattr(record, name, None) is not None:
                entry[name] = getattr(record, name)
        for name, value in record.__dict__.items():
            # kopf's object loggers add k8s_skip and k8s_ref: the reference is worth keeping.
            if name in _RECORD_ATTRIBUTES or name in entry or name in _NOT_EXTRA:
                continue
            entry["object" if name == "k8s_ref" else name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else PlainFormatter()


def configure(log_format: LogFormat = "plain", level: int | str = logging.INFO) -> None:
    """Sends the records of every logger to stderr in `log_format`, each stamped with the
    running task's run (`RunFilter`); replaces the root logger's handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RunFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

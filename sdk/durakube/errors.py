"""The error vocabulary of Durakube, as data.

Every error Durakube raises derives from `DurakubeError`: a stable `code` (the
class name, CamelCase, reused as a reason by the operator), structured `fields`,
an actionable message, and `to_json()` / `from_json()` so that an error recorded
in Postgres by one pod is re-raised, as the same class, by the next.

Errors raised by user code are data too: `describe_exception` turns any exception
into the JSON shape every recorded error has, and `rebuild_exception` turns that
JSON back into an exception to re-raise on replay.

The JSON shape (what `steps.error`, `attempts.error` and `runs.error` hold, and
what the TaskRun's `lastError` previews):

    {"type": "ValueError", "message": "...", "retryable": false,
     "code": "StepFailed", "fields": {...}, "traceback": "..."}

`type` is the qualified name of the exception the user sees (builtins unqualified);
`code` and `fields` are present for Durakube errors only.

This module imports nothing else from Durakube: every other module may import it.
"""

from __future__ import annotations

import traceback as tracebacks
from datetime import datetime
from typing import Any, ClassVar

# Recorded tracebacks keep the innermost lines only: the JSON row stays small.
TRACEBACK_TAIL_LINES = 12
TRACEBACK_TAIL_CHARS = 2000

_BY_CODE: dict[str, type[DurakubeError]] = {}


class DurakubeError(Exception):
    """The base of every Durakube error: a code, structured fields, a message."""

    code: ClassVar[str] = "DurakubeError"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.traceback: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = cls.__name__
        _BY_CODE[cls.code] = cls

    @property
    def fields(self) -> dict[str, Any]:
        """The structured, JSON-ready fields; subclasses list theirs."""
        return {}

    @property
    def type_name(self) -> str:
        """The exception type the user sees, as recorded in the `type` key."""
        return qualified_name(type(self))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type_name,
            "message": self.message,
            "retryable": self.retryable,
            "code": self.code,
            "fields": self.fields,
        }
        if self.traceback is not None:
            data["traceback"] = self.traceback
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DurakubeError:
        """Rebuilds the error `to_json` described, as its own class."""
        kind = _BY_CODE.get(str(data.get("code")), DurakubeError)
        error = kind._from_fields(str(data.get("message", "")), dict(data.get("fields") or {}))
        error.traceback = data.get("traceback")
        return error

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(message)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, DurakubeError)
            and (other.message, other.fields) == (self.message, self.fields)
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message))


_BY_CODE[DurakubeError.code] = DurakubeError


class RetryableError(DurakubeError):
    """Raise to ask for another attempt, optionally not before `retry_at`."""

    retryable = True

    def __init__(self, message: str, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at

    @property
    def fields(self) -> dict[str, Any]:
        return {"retry_at": self.retry_at.isoformat() if self.retry_at else None}

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        retry_at = fields.get("retry_at")
        return cls(message, datetime.fromisoformat(retry_at) if retry_at else None)


class PermanentError(DurakubeError):
    """Raise to fail the run at once, whatever the retry policy says."""


class NonDeterministicReplay(DurakubeError):
    """On replay, the task reached a recorded step under a different name."""

    def __init__(self, seq: int, recorded_name: str, current_name: str) -> None:
        super().__init__(
            f"step {seq} was {recorded_name!r} when recorded but is {current_name!r} now: "
            "task code must take the same path on replay (branch on step results and "
            "ctx.state, not on time, randomness or the environment)"
        )
        self.seq = seq
        self.recorded_name = recorded_name
        self.current_name = current_name

    @property
    def fields(self) -> dict[str, Any]:
        return {"seq": self.seq, "recorded_name": self.recorded_name,
                "current_name": self.current_name}

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(int(fields["seq"]), str(fields["recorded_name"]), str(fields["current_name"]))


class NonSerializableState(DurakubeError):
    """A step result, the task output or ctx.state holds a value JSON cannot carry."""

    def __init__(self, where: str, value_type: str, path: str = "") -> None:
        at = f" at {path}" if path else ""
        super().__init__(
            f"{where} holds a value of type {value_type!r}{at}, which cannot be checkpointed: "
            "return JSON values (dict with str keys, list, str, int, float, bool, None) "
            "or pydantic models"
        )
        self.where = where
        self.value_type = value_type
        self.path = path

    @property
    def fields(self) -> dict[str, Any]:
        return {"where": self.where, "value_type": self.value_type, "path": self.path}

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(str(fields["where"]), str(fields["value_type"]), str(fields.get("path", "")))


class TaskNotFound(DurakubeError):
    """The run names a task id no imported module registered."""

    def __init__(self, task_id: str, known: list[str]) -> None:
        listed = ", ".join(repr(k) for k in sorted(known)) or "none"
        super().__init__(
            f"task {task_id!r} is not registered (registered: {listed}): check that "
            "DURAKUBE_TASK_MODULES (or --module) imports the module defining it"
        )
        self.task_id = task_id
        self.known = sorted(known)

    @property
    def fields(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "known": self.known}

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(str(fields["task_id"]), list(fields.get("known") or []))


class RunNotFound(DurakubeError):
    """The worker was started for a run id that Postgres does not know."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id!r} is not in the database: the operator registers a run "
            "before it starts a pod; check DURAKUBE_RUN_ID and DURAKUBE_DATABASE_URL"
        )
        self.run_id = run_id

    @property
    def fields(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(str(fields["run_id"]))


class InvalidPayload(DurakubeError):
    """The run's payload does not validate against the task's input model."""

    def __init__(self, task_id: str, detail: str) -> None:
        super().__init__(f"payload of task {task_id!r} is invalid: {detail}")
        self.task_id = task_id
        self.detail = detail

    @property
    def fields(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "detail": self.detail}

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(str(fields["task_id"]), str(fields["detail"]))


class InvalidDuration(DurakubeError, ValueError):
    """A duration string is not of the form "30s", "10m", "2h", "7d" or "1h30m"."""

    def __init__(self, text: str) -> None:
        super().__init__(
            f"invalid duration {text!r}: expected seconds as a number, or a string such as "
            "'500ms', '30s', '10m', '2h', '7d' or '1h30m'"
        )
        self.text = text

    @property
    def fields(self) -> dict[str, Any]:
        return {"text": self.text}

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(str(fields["text"]))


class AttemptTimedOut(DurakubeError):
    """The attempt ran longer than the task's timeout; the next one resumes from the checkpoints."""

    retryable = True

    def __init__(self, timeout_seconds: float) -> None:
        super().__init__(
            f"attempt ran longer than the task's timeout of {timeout_seconds:g}s: the next "
            "attempt resumes from the last checkpoint; raise the timeout or split the work "
            "into more steps"
        )
        self.timeout_seconds = timeout_seconds

    @property
    def fields(self) -> dict[str, Any]:
        return {"timeout_seconds": self.timeout_seconds}

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(float(fields["timeout_seconds"]))


class StepFailed(DurakubeError):
    """A step raised a user exception; carries that exception's type and message.

    Raised both when the step first fails (chained to the original exception) and
    when the recorded failure is replayed, so task code sees the same exception on
    both paths: catch `StepFailed` and look at `.type`, not at the original class.
    """

    def __init__(self, step: str, seq: int, type: str, message: str,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.step = step
        self.seq = seq
        self.type = type
        self.step_retryable = retryable

    @property
    def type_name(self) -> str:
        return self.type

    @property
    def fields(self) -> dict[str, Any]:
        return {"step": self.step, "seq": self.seq, "type": self.type,
                "retryable": self.step_retryable}

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["retryable"] = self.step_retryable
        return data

    @classmethod
    def _from_fields(cls, message: str, fields: dict[str, Any]) -> DurakubeError:
        return cls(str(fields["step"]), int(fields["seq"]), str(fields["type"]), message,
                   bool(fields.get("retryable", False)))

    def __str__(self) -> str:
        return f"step {self.seq} {self.step!r} failed with {self.type}: {self.message}"


def qualified_name(kind: type[BaseException]) -> str:
    """`module.QualName` of an exception type; builtins go unqualified ("ValueError")."""
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def qualified_name_of(value: object) -> str:
    """The qualified name of `value`'s type ("datetime.datetime", "int")."""
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def traceback_tail(error: BaseException) -> str:
    """The innermost lines of the error's traceback, bounded in size."""
    lines = "".join(tracebacks.format_exception(error)).rstrip().splitlines()
    return "\n".join(lines[-TRACEBACK_TAIL_LINES:])[-TRACEBACK_TAIL_CHARS:]


def describe_exception(error: BaseException, retryable: bool | None = None) -> dict[str, Any]:
    """Any exception as recorded JSON; `retryable` overrides the error's own flag."""
    if isinstance(error, DurakubeError):
        data = error.to_json()
    else:
        data = {"type": qualified_name(type(error)), "message": str(error) or repr(error),
                "retryable": False}
    if retryable is not None:
        data["retryable"] = retryable
    data.setdefault("traceback", traceback_tail(error))
    return data


def rebuild_exception(data: dict[str, Any]) -> DurakubeError:
    """The exception to re-raise for a recorded error.

    Durakube errors come back as their own class; any other recorded error comes
    back as `StepFailed` carrying the original type and message (the original
    class may not be importable, nor constructible from a message).
    """
    if data.get("code") in _BY_CODE:
        return DurakubeError.from_json(data)
    fields = dict(data.get("fields") or {})
    error = StepFailed(str(fields.get("step", "")), int(fields.get("seq", 0)),
                       str(data.get("type", "Exception")), str(data.get("message", "")),
                       bool(data.get("retryable", False)))
    error.traceback = data.get("traceback")
    return error

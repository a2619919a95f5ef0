"""The error vocabulary of Durakube, as data.

Every error Durakube raises derives from `DurakubeError`: a stable `code` (the
class name, CamelCase, reused as a reason by the operator), structured `fields`,
an actionable message, and `to_json()` / `from_json()` so that an error recorded
in Postgres by one pod is re-raised, as the same class, by the next.

One mechanism serves every class, here and in the modules that define their own
errors (`waiting`, `triggering`, `store.waitpoints`, `client.failures`, user task
modules): the fields are the keyword arguments the error was built with,
recorded by `DurakubeError.__new__`, and an error is rebuilt as `cls(**fields)`,
each field read back through its parameter's annotation (a `datetime` from its
ISO string). A subclass only writes `__init__`. Since a recorded error names its
class by code, a second class taking a code already taken fails at its creation.

Errors raised by user code are data too: `describe_exception` turns any exception
into the JSON shape every recorded error has, and `rebuild_exception` turns that
JSON back into an exception to re-raise on replay.

The JSON shape (what `steps.error`, `attempts.error` and `runs.error` hold, and
what the TaskRun's `lastError` previews):

    {"type": "ValueError", "message": "...", "retryable": false,
     "code": "StepFailed", "fields": {...}, "traceback": "..."}

`type` is the qualified name of the exception the user sees (builtins unqualified);
`code` and `fields` are present for Durakube errors only.

This module imports nothing else from Durakube (pydantic only): every other module may
import it.
"""

from __future__ import annotations

import inspect
import traceback as tracebacks
import typing
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, Self

import pydantic
import pydantic_core

# Recorded tracebacks keep the innermost lines only: the JSON row stays small.
TRACEBACK_TAIL_LINES = 12
TRACEBACK_TAIL_CHARS = 2000

_BY_CODE: dict[str, type[DurakubeError]] = {}
_TYPES: dict[type[DurakubeError], dict[str, pydantic.TypeAdapter[Any]]] = {}


class DurakubeError(Exception):
    """The base of every Durakube error: a code, structured fields, a message.

    A subclass declares its fields as the named parameters of its `__init__`,
    which builds the message. The base records the arguments each error is built
    with, so that any error comes back from JSON (or a pickle) as
    `cls(**fields)`, with no per-class code. A parameter called `message` is the
    message itself: the JSON keeps it at the top level, not among the fields.
    """

    code: ClassVar[str] = "DurakubeError"
    retryable: ClassVar[bool] = False
    _signature: ClassVar[inspect.Signature]
    _arguments: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # No arguments up the chain: OSError's __new__ would read them as (errno, strerror).
        error = super().__new__(cls)
        bound = cls._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        error._arguments = dict(bound.arguments)
        return error

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # OSError's __init__ ignores its arguments once __new__ is overridden: set them here.
        self.args = (message,)
        self.message = message
        self.traceback: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)

    @property
    def fields(self) -> dict[str, Any]:
        """The arguments the error was built with, but its message, as JSON values."""
        return {name: pydantic_core.to_jsonable_python(value, fallback=repr)
                for name, value in self._arguments.items() if name != "message"}

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
        """Rebuilds the error `to_json` described, as the class registered for its code.

        Raises `TypeError` or `ValueError` when the fields no longer fit the
        class's parameters (a row recorded by an older version of it).
        """
        kind = _BY_CODE.get(str(data.get("code")), DurakubeError)
        error = kind._rebuild(str(data.get("message", "")), dict(data.get("fields") or {}))
        error.traceback = data.get("traceback")
        return error

    @classmethod
    def _rebuild(cls, message: str, fields: dict[str, Any]) -> Self:
        types = _parameter_types(cls)
        # Fields the class no longer takes are dropped, as older rows may hold some.
        arguments = {name: types[name].validate_python(value)
                     for name, value in fields.items() if name in types}
        if "message" in types:
            arguments["message"] = message
        return cls(**arguments)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its arguments: the default would call cls(*self.args), i.e. cls(message).
        return (_construct, (type(self), self._arguments), self.__dict__)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, DurakubeError)
            and (other.message, other.fields) == (self.message, self.fields)
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message))


def codes() -> Mapping[str, type[DurakubeError]]:
    """Every error code and the class it rebuilds as (read-only)."""
    return MappingProxyType(_BY_CODE)


def _register(kind: type[DurakubeError]) -> None:
    """Gives `kind` its code and checks that it can be rebuilt.

    Durakube's own errors are coded by class name (the code doubles as the CamelCase
    reason in a run's status); a user's subclass by its qualified name, so two task
    modules may each define an error of the same name.
    """
    own = kind.__module__ == "durakube" or kind.__module__.startswith("durakube.")
    code = kind.__name__ if own else qualified_name(kind)
    existing = _BY_CODE.get(code)
    # The same module and name again is a reload, not a second class.
    if existing is not None and qualified_name(existing) != qualified_name(kind):
        raise TypeError(
            f"error code {code!r} of {qualified_name(kind)} is already taken by "
            f"{qualified_name(existing)}: recorded errors are rebuilt by their code, so each "
            "of Durakube's error classes needs a class name of its own")
    parameters = list(inspect.signature(kind.__init__).parameters.values())[1:]
    positional_only = [p.name for p in parameters if p.kind not in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    if positional_only:
        raise TypeError(
            f"{qualified_name(kind)}.__init__ takes {', '.join(positional_only)} without a "
            "name: errors are rebuilt as cls(**fields), so every parameter needs a name")
    kind.code = code
    kind._signature = inspect.Signature(parameters)
    _BY_CODE[code] = kind


def _parameter_types(kind: type[DurakubeError]) -> dict[str, pydantic.TypeAdapter[Any]]:
    """A validator per parameter of `kind`, from its annotations, to read fields back."""
    # Built on first use, not at class creation: annotations may name what is defined later.
    types = _TYPES.get(kind)
    if types is None:
        hints = typing.get_type_hints(kind.__init__)
        types = {name: pydantic.TypeAdapter(hints.get(name, Any))
                 for name in kind._signature.parameters}
        _TYPES[kind] = types
    return types


def _construct(kind: type[DurakubeError], arguments: dict[str, Any]) -> DurakubeError:
    return kind(**arguments)


_register(DurakubeError)


class RetryableError(DurakubeError):
    """Raise to ask for another attempt, optionally not before `retry_at`."""

    retryable = True

    def __init__(self, message: str, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


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


class ValueRefused(DurakubeError):
    """A value is too large or shaped so that it cannot be stored (`durakube.limits`)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where} {problem}")
        self.where = where
        self.problem = problem


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


class RunNotFound(DurakubeError):
    """The worker was started for a run id that Postgres does not know."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id!r} is not in the database: the operator registers a run "
            "before it starts a pod; check DURAKUBE_RUN_ID and DURAKUBE_DATABASE_URL"
        )
        self.run_id = run_id


class InvalidPayload(DurakubeError):
    """The run's payload does not validate against the task's input model."""

    def __init__(self, task_id: str, detail: str) -> None:
        super().__init__(f"payload of task {task_id!r} is invalid: {detail}")
        self.task_id = task_id
        self.detail = detail


class InvalidDuration(DurakubeError, ValueError):
    """A duration string is not of the form "30s", "10m", "2h", "7d" or "1h30m"."""

    def __init__(self, text: str) -> None:
        super().__init__(
            f"invalid duration {text!r}: expected seconds as a number, or a string such as "
            "'500ms', '30s', '10m', '2h', '7d' or '1h30m'"
        )
        self.text = text


class StoreUnavailable(DurakubeError):
    """Postgres could not be reached to record a checkpoint: the attempt ends without an
    outcome and the run resumes from its last checkpoint in a new pod. A task that
    catches it gains nothing: every later step raises it again."""

    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"the run's checkpoints cannot be recorded: {detail}")
        self.detail = detail


class AttemptRevoked(StoreUnavailable):
    """Postgres refused the attempt's credential: a newer attempt started, this one's
    outcome is recorded, the run is over, or the secret is wrong. Like a lost store,
    nothing more is recorded and the pod ends; the operator decides what follows."""

    def __init__(self, run_id: str, attempt: int) -> None:
        super().__init__(f"attempt {attempt} of run {run_id} is no longer the run's live "
                         "attempt (or its secret is wrong), so Postgres refuses its writes")
        self.run_id, self.attempt = run_id, attempt


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

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["retryable"] = self.step_retryable
        return data

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
    class may not be importable, nor constructible from a message). So does a
    Durakube error whose recorded fields no longer fit its class: replay never
    crashes on a recorded row.
    """
    if data.get("code") in _BY_CODE:
        try:
            return DurakubeError.from_json(data)
        except (TypeError, ValueError):
            pass
    fields = dict(data.get("fields") or {})
    seq = fields.get("seq")
    error = StepFailed(str(fields.get("step", "")), seq if isinstance(seq, int) else 0,
                       str(data.get("type", "Exception")), str(data.get("message", "")),
                       bool(data.get("retryable", False)))
    error.traceback = data.get("traceback")
    return error

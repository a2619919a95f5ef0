"""Typed settings read from DURAKUBE_* environment variables.

`Settings` is the base of every such model: the worker's `WorkerSettings` here,
and the operator's own settings (which subclass it). A model names its fields;
this module maps each to its variable (`DURAKUBE_` + the field name in capitals,
unless the field gives an alias), reads a secret (a field declared `repr=False`)
from the file named by `<VARIABLE>_FILE` instead when that is set (as a mounted
Secret gives it), and turns every problem into one `SettingsError` naming the
variables, never echoing a secret.

Variable names match in any case, and an empty variable counts as unset. Reads
the environment only in `from_environ`; a model built from keyword arguments
reads nothing else. Plain pydantic, no settings library: every attempt pod's
worker starts by reading its settings, and pydantic-settings added about 30 ms of
CPU to that start. Imports no other Durakube module, so both the worker and the
operator can use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import pydantic

PREFIX = "DURAKUBE_"
FILE_SUFFIX = "_FILE"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names each variable at fault."""


def _split_names(value: Any) -> Any:
    """"a, b,,c" -> ("a", "b", "c"): a comma-separated variable, blanks and repeats dropped."""
    if isinstance(value, str):
        return tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    return value


# A list of names in one variable, comma-separated.
Names = Annotated[tuple[str, ...], pydantic.BeforeValidator(_split_names)]


# Short phrases for the errors that settings meet most; others keep pydantic's own words.
_PROBLEMS = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "greater_than_equal": "must be at least {ge:g}",
    "greater_than": "must be greater than {gt:g}",
    "less_than_equal": "must be at most {le:g}",
}


class Settings(pydantic.BaseModel):
    """The base of Durakube's settings models: DURAKUBE_ variables, secrets from files."""

    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, validate_default=True,
        validate_by_name=True, validate_by_alias=True)

    @classmethod
    def secret_fields(cls) -> set[str]:
        """The fields declared `repr=False`: secrets, which may come from the file named by
        <VARIABLE>_FILE and are never shown, in a repr or in an error."""
        return {name for name, field in cls.model_fields.items() if not field.repr}

    @classmethod
    def variables_of(cls, field: str) -> tuple[str, ...]:
        """The environment variables a field is read from, the first set one winning."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, str):
            return (alias,)
        if isinstance(alias, pydantic.AliasChoices):
            names = tuple(choice for choice in alias.choices if isinstance(choice, str))
            if names:
                return names
        return (PREFIX + field.upper(),)

    @classmethod
    def variable_of(cls, field: str) -> str:
        """The environment variable a field is read from (the first, if it has several)."""
        return cls.variables_of(field)[0]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings from `environ` (default: os.environ); SettingsError names what is wrong."""
        try:
            return cls.model_validate(cls._read(os.environ if environ is None else environ))
        except pydantic.ValidationError as error:
            raise SettingsError(cls._describe(error.errors())) from None

    @classmethod
    def _read(cls, environ: Mapping[str, str]) -> dict[str, str]:
        """Each field's value in `environ` by field name, where a secret's
        `<VARIABLE>_FILE` stands for the variable; fields set nowhere are left out."""
        variables = {name.upper(): value for name, value in environ.items() if value != ""}
        secrets = cls.secret_fields()
        values: dict[str, str] = {}
        for field in cls.model_fields:
            for variable in cls.variables_of(field):
                value = variables.get(variable.upper())
                if field in secrets:
                    value = _from_file(variable, value, variables.get(variable.upper() + FILE_SUFFIX))
                if value is not None:
                    values[field] = value
                    break
        return values

    @classmethod
    def _describe(cls, errors: Sequence[Any]) -> str:
        """One message for all problems: the missing variables, then each bad value."""
        by_alias = {cls.variable_of(name).lower(): name for name in cls.model_fields}
        missing: list[str] = []
        problems: list[str] = []
        for error in errors:
            located = str(error["loc"][0]) if error["loc"] else ""
            field = by_alias.get(located.lower(), located)
            variable = cls.variable_of(field) if field in cls.model_fields else located
            if error["type"] == "missing":
                missing.append(variable)
                continue
            problem = _PROBLEMS.get(error["type"])
            problem = (problem.format(**error.get("ctx", {})) if problem
                       else str(error["msg"]).replace("Input should be", "must be"))
            shown = "" if field in cls.secret_fields() else f", got {error['input']!r}"
            problems.append(f"{variable} {problem}{shown}")
        if missing:
            problems.insert(0, f"missing environment variables: {', '.join(missing)}")
        return "; ".join(problems)


def _from_file(variable: str, value: str | None, path: str | None) -> str | None:
    """A secret's value: the variable's, or the contents of the file its `_FILE` names."""
    if path is None:
        return value
    if value is not None:
        raise SettingsError(f"{variable} and {variable}{FILE_SUFFIX} are both set: set one")
    try:
        # A file written by hand or by `kubectl create secret` often ends in a newline.
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise SettingsError(f"{variable}{FILE_SUFFIX}: cannot read {path}: "
                            f"{error.strerror or error}") from None


DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


class WorkerSettings(Settings):
    """What the operator tells one attempt pod's worker (see `durakube.worker`)."""

    run_id: str
    attempt: int = pydantic.Field(ge=1)
    database_url: str = pydantic.Field(repr=False)
    # The attempt's secret, which Postgres checks on every call of the worker.
    attempt_secret: str = pydantic.Field(min_length=1, repr=False)
    # Modules that register the tasks; the worker's --module flags add to them.
    task_modules: Names = ()
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH
    pod_name: str | None = pydantic.Field(
        default=None, validation_alias=pydantic.AliasChoices("DURAKUBE_POD_NAME", "HOSTNAME"))
    # asyncpg's statement cache; 0 behind PgBouncer in transaction mode. None: asyncpg's default.
    statement_cache_size: int | None = pydantic.Field(default=None, ge=0)
    # The TaskRun's or the Task's spec.retry as JSON of `durakube.retry.Retry`, which the
    # worker validates (this module imports no other); unset when neither spec has one.
    retry_policy: str | None = None
    # How records are written: plain lines or JSON objects (`durakube.logs`).
    log_format: Literal["plain", "json"] = "plain"
    # How long a checkpoint is tried again while Postgres is unreachable (seconds).
    store_retry_seconds: float = pydantic.Field(default=60.0, ge=0)
    # Compensation mode: run the run's recorded compensations, not the task
    # (`durakube.compensating`); the operator sets it once the run failed for good.
    compensating: bool = False

"""The errors the client raises: each names what went wrong and what to do about it.

Every class is a `durakube.errors.DurakubeError` (a code, structured fields, a JSON
round trip) and, where Python has a fitting built-in, that built-in too, so that
callers may catch `TimeoutError`, `PermissionError`, `ConnectionError` or
`LookupError` without knowing Durakube. A missing run is `TaskRunNotFound`, which
is a `durakube.errors.RunNotFound`; an invalid payload is
`durakube.errors.InvalidPayload` itself.

Pure data: no I/O, and nothing of the step engine. Raised by `clients`, `kubeapi` and
`history`.
"""

from __future__ import annotations

from durakube import errors


class UnknownTask(errors.DurakubeError, LookupError):
    """No Task object of that name exists in the namespace."""

    def __init__(self, task: str, namespace: str, known: list[str] | None = None) -> None:
        listed = ", ".join(repr(name) for name in sorted(known or [])) or "none"
        super().__init__(
            f"no Task {task!r} in namespace {namespace!r} (Tasks there: {listed}): create it "
            f"first, e.g. `durakube manifests MODULE | kubectl apply -n {namespace} -f -`")
        self.task = task
        self.namespace = namespace
        self.known = sorted(known or [])


class UnregisteredFunction(errors.DurakubeError, LookupError):
    """A function was given as the task, but no @task registered it."""

    def __init__(self, function: str) -> None:
        super().__init__(
            f"{function} is not a registered task: decorate it with @durakube.task, or pass "
            "the task id as a string")
        self.function = function


class TaskRunNotFound(errors.RunNotFound, LookupError):
    """Neither the API nor the run history knows this run."""

    def __init__(self, run: str, namespace: str = "") -> None:
        errors.DurakubeError.__init__(
            self, f"no TaskRun {run!r} in namespace {namespace!r}, and no run of that name or "
                  "id in the run history" if namespace else f"no run {run!r}")
        self.run_id = run
        self.namespace = namespace


class CannotFork(errors.DurakubeError, ValueError):
    """A fork was asked from a step it cannot start from (`store.steps.fork_refusal`)."""

    def __init__(self, run: str, step: int, reason: str) -> None:
        super().__init__(f"cannot fork run {run!r} from step {step}: {reason}")
        self.run = run
        self.step = step
        self.reason = reason


class PermissionDenied(errors.DurakubeError, PermissionError):
    """The Kubernetes API refused a request (403): the RBAC message says which rule."""

    def __init__(self, action: str, detail: str) -> None:
        super().__init__(
            f"permission denied to {action}: {detail} (grant the verb on the resource to your "
            "user or service account with a Role and RoleBinding)")
        self.action = action
        self.detail = detail


class DatabaseUnreachable(errors.DurakubeError, ConnectionError):
    """Postgres did not answer; `target` is host:port/database, never the password."""

    def __init__(self, target: str, detail: str) -> None:
        super().__init__(
            f"cannot reach the Durakube database at {target}: {detail} (check "
            "--database-url or DURAKUBE_DATABASE_URL, and that Postgres is reachable from here)")
        self.target = target
        self.detail = detail


class DatabaseNotConfigured(errors.DurakubeError):
    """An operation needs Postgres (outputs, steps, history, large payloads) but no DSN was given."""

    def __init__(self, needed_for: str) -> None:
        super().__init__(
            f"{needed_for} needs the Durakube database: pass database_url= (CLI: "
            "--database-url) or set DURAKUBE_DATABASE_URL")
        self.needed_for = needed_for


class RunFailed(errors.DurakubeError):
    """The run ended in a phase other than Succeeded; carries its reason and last error."""

    def __init__(self, name: str, phase: str, reason: str, condition_message: str = "",
                 error_type: str | None = None, error_message: str | None = None) -> None:
        if error_type is not None:
            detail = f"{error_type}: {error_message or ''}"
        else:
            detail = condition_message or "no message"
        super().__init__(f"run {name!r} ended {phase} ({reason}): {detail}")
        self.name = name
        self.phase = phase
        self.reason = reason
        self.condition_message = condition_message
        self.error_type = error_type
        self.error_message = error_message


class RunWaitTimedOut(errors.DurakubeError, TimeoutError):
    """The run did not finish within the caller's timeout (the run itself goes on).

    Not `durakube.WaitTimedOut`, which is a wait inside a task that timed out.
    """

    def __init__(self, name: str, timeout: float, phase: str | None) -> None:
        super().__init__(
            f"run {name!r} did not finish within {timeout:g}s (phase now: {phase or 'none yet'}); "
            "it goes on running: wait again, or cancel it")
        self.name = name
        self.timeout = timeout
        self.phase = phase


class NotSupported(errors.DurakubeError):
    """The server (operator and database schema) is older than this feature."""

    def __init__(self, feature: str, detail: str) -> None:
        super().__init__(
            f"{feature} is not supported by this server version: {detail} (upgrade the "
            "Durakube operator, which migrates the database at start)")
        self.feature = feature
        self.detail = detail


class RunNotFinished(errors.DurakubeError):
    """The run has no output yet: it is still active."""

    def __init__(self, name: str, phase: str | None) -> None:
        super().__init__(
            f"run {name!r} has not finished (phase: {phase or 'none yet'}): wait for it first")
        self.name = name
        self.phase = phase

"""Compensations (sagas): the undo of a completed step, recorded with it and run when the
run fails for good.

A task registers an undo in one of two ways:

    @durakube.step(compensate=cancel_booking)      # cancel_booking(result, *args, **kwargs)
    async def book(hotel: str) -> dict: ...

    await book_flight(trip)
    await ctx.compensate(cancel_flight, trip)       # after the step completed

The first registers `undo(result, *args, **kwargs)` with the step's JSON result and
arguments whenever the step completes (or is replayed); the second binds
`undo(*args, **kwargs)` to the newest step completed so far. Either is recorded in
Postgres at once (`working.record_compensation`), keyed by the step's seq and its
position among that step's undos, so a replay records the same rows again and the
first record stands. Only a step recorded as succeeded can have one. Undo functions
are module-level functions (async or plain `def`), recorded by import name
("module:qualified.name"), and their arguments are JSON (`serializing`).

When the run fails for good, the operator starts attempts in compensation mode
(DURAKUBE_COMPENSATING=true). Their worker runs `run_compensations`: it loads the
pending compensations newest first and runs each, checkpointing it as it finishes
(`working.finish_compensation`), so that a finished compensation never runs again
(the one in flight when a pod dies runs again: at least once, as a step). The first
one that raises ends the attempt with a "retry" outcome naming it; the operator backs
off and starts another attempt, within its budget. All done: "succeeded". Neither
writes the run's output or error: the run keeps the error it failed with.

Called by `context` (registering) and `worker` (running); imports no step engine.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from durakube import blocking, capturing, errors, retry, serializing
from durakube.store import attempts, compensations, pools, working

log = logging.getLogger("durakube.compensating")

# Attempts in compensation mode a run gets before it ends with compensations left undone
# (each runs every pending compensation, newest first, until one fails), and the back-off
# between them: an undo must eventually run, so the budget is generous. The operator and
# the local runner both apply them.
ATTEMPTS = 10
RETRY = retry.Retry(max_attempts=ATTEMPTS, factor=2.0, min_timeout=1.0, max_timeout=60.0,
                    randomize=True)


def import_name(fn: Callable[..., Any]) -> str:
    """"module:qualified.name" of a module-level function, which a worker in compensation
    mode imports again; raises TypeError for anything it could not find there (a lambda,
    a nested function, a bound method)."""
    target = inspect.unwrap(fn) if callable(fn) else fn
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not (inspect.isfunction(target) and module and qualname) or "<" in qualname:
        raise TypeError(
            f"a compensation must be a module-level function (found again by its import name "
            f"in a new pod), not {fn!r}")
    return f"{module}:{qualname}"


def resolve(name: str) -> Callable[..., Any]:
    """The function recorded as `name` ("module:qualified.name")."""
    module_name, _, qualname = name.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"compensation {name} is not callable")
    return found  # type: ignore[no-any-return]


def encode_arguments(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                     where: str) -> dict[str, Any]:
    """The undo's arguments as JSON; raises `NonSerializableState` or `ValueRefused`."""
    encoded: dict[str, Any] = serializing.encode({"args": list(args), "kwargs": kwargs},
                                                 f"the arguments of compensation {name} {where}")
    return encoded


async def run_compensations(pool: pools.Database, run_id: str, attempt: int, *, secret: str,
                            pod_name: str | None = None,
                            import_error: Exception | None = None,
                            output: capturing.Output | None = None) -> attempts.Outcome:
    """Runs the run's pending compensations newest first, checkpointing each; records the
    attempt's outcome ("succeeded": none left; "retry": the first that failed) and
    returns it. What `output` captures is the attempt's stored log, as in a task's
    attempt. Raises like `worker.run_attempt` when nothing could be recorded."""
    credential = working.Credential(run_id, attempt, secret)
    await working.start_attempt(pool, credential, pod_name)
    shipper = None
    if output is not None:
        shipper = capturing.Shipper(pool, credential, output.buffer)
        shipper.start()
    try:
        outcome = await _run_pending(pool, credential, import_error)
    finally:
        if shipper is not None:
            # The outcome revokes the secret: the output goes first, all of it.
            assert output is not None
            await output.stop()
            await shipper.close()
    await working.end_compensating(pool, credential, outcome)
    return outcome


async def _run_pending(pool: pools.Database, credential: working.Credential,
                       import_error: Exception | None) -> attempts.Outcome:
    """The attempt's outcome once the pending compensations ran or one failed."""
    if import_error is not None:
        # The task modules would not import: no undo could be found. Tried again later.
        return attempts.Outcome("retry", error=errors.describe_exception(import_error,
                                                                         retryable=True))
    recorded = await working.load_compensations(pool, credential)
    pending = [item for item in recorded if item.status == "pending"]
    done = len(recorded) - len(pending)
    for item in pending:
        error = await _compensate(item)
        await working.finish_compensation(pool, credential, step_seq=item.step_seq,
                                          position=item.position, error=error)
        if error is not None:
            return attempts.Outcome("retry", output={"completed": done, "total": len(recorded)},
                                    error=error)
        done += 1
    return attempts.Outcome("succeeded", output={"completed": done, "total": len(recorded)})


async def _compensate(item: compensations.Compensation) -> dict[str, Any] | None:
    """Runs one compensation; None when it returned, else its error as recorded JSON."""
    where = f"compensation {item.name} of step {item.step_seq}"
    log.info("run %s: running %s", item.run_id, where)
    try:
        fn = resolve(item.name)
        args = list(item.args.get("args") or [])
        kwargs = dict(item.args.get("kwargs") or {})
        if inspect.iscoroutinefunction(fn):
            await fn(*args, **kwargs)
        else:
            result = await blocking.in_thread(fn, *args, **kwargs)
            if inspect.isawaitable(result):
                await result
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.warning("run %s: %s failed: %s: %s", item.run_id, where,
                    errors.qualified_name(type(error)), error)
        described = errors.describe_exception(error, retryable=True)
        described["compensation"] = {"name": item.name, "step": item.step_seq,
                                     "position": item.position}
        return described
    return None

"""The worker: the entrypoint of every attempt pod (`durakube-worker`).

The operator starts one pod per attempt with this environment:

    DURAKUBE_RUN_ID                 the run to execute (required)
    DURAKUBE_ATTEMPT                the attempt number, 1-based (required)
    DURAKUBE_DATABASE_URL           Postgres DSN of a login in durakube_worker (required;
                                    or DURAKUBE_DATABASE_URL_FILE, a file holding it)
    DURAKUBE_ATTEMPT_SECRET         the attempt's secret, which every call to Postgres
                                    presents (required; or DURAKUBE_ATTEMPT_SECRET_FILE)
    DURAKUBE_TASK_MODULES           comma-separated modules that register the tasks
                                    (also `--module NAME`, repeatable)
    DURAKUBE_TERMINATION_MESSAGE_PATH   where to write the outcome hint
                                    (default /dev/termination-log; skipped if unwritable)
    DURAKUBE_POD_NAME               the pod's name for the attempt row (default: $HOSTNAME)
    DURAKUBE_STATEMENT_CACHE_SIZE   asyncpg's statement cache; 0 behind PgBouncer
    DURAKUBE_RETRY_POLICY           the retry policy of the TaskRun's or the Task's spec,
                                    as JSON of `retry.Retry` (absent when neither sets one)
    DURAKUBE_LOG_FORMAT             plain (default) or json (also `--log-format`): how the
                                    worker and the task logger write records (`logs`)
    DURAKUBE_LOG_LEVEL              the root logger's level (default INFO)
    DURAKUBE_STORE_RETRY_SECONDS    how long a checkpoint is tried again while Postgres is
                                    unreachable (default 60)
    DURAKUBE_COMPENSATING           true in an attempt of compensation mode: the worker
                                    runs the run's recorded compensations, newest first,
                                    instead of the task (`compensating`)

(parsed by `durakube.environment.WorkerSettings`). The operator gives the DSN and the
secret from its namespace's attempt key ring; Postgres accepts the secret only while this
attempt is the run's live one (`store.working`).

The worker loads the run and its recorded steps, imports the task modules,
validates the payload, runs the task (replaying recorded steps), and records the
attempt's outcome in Postgres: succeeded (the output), failed (permanent), or
retry (a `RetryableError`, an `AttemptTimedOut`, or a type listed in `retry.on`).
The policy that classifies errors is the spec's when the operator passed one, else
the task decorator's; the decorator's is recorded with the outcome, since the
operator cannot know it. A `retry_at` is recorded only when the task asked for one
(`RetryableError(retry_at=...)`). The outcome goes in the same transaction as a
failed step that ended the attempt. The worker does not decide whether retries are
left, nor when the next attempt starts, nor move the run's phase: the operator
does, reading the outcome.

What the process writes to `sys.stdout` and `sys.stderr` (every log record among
it) is also stored in Postgres for the attempt (`capturing`), flushed about every
second and for the last time just before the outcome is recorded: `durakube logs`
reads it after the pod is gone.

With an OTLP endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which the operator passes with its own), the
attempt is a span, a child of the run's span named by TRACEPARENT, and each step a
span under it (`tracing`); they are sent before the process exits, within
`tracing.FLUSH_SECONDS`.

Exit code 0 means an outcome was recorded (of any kind); non-zero means none
could be, and the operator treats the attempt as an infrastructure failure. A `def`
task or step runs in a daemon thread (`blocking`): one still stuck in a blocking
call when the attempt is over does not keep the process alive.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

import pydantic

from durakube import (
    blocking,
    capturing,
    compensating,
    context,
    current,
    environment,
    errors,
    logs,
    retry,
    serializing,
    tasks,
    tracing,
    waiting,
)
from durakube.store import attempts, pools, runs, steps, working

log = logging.getLogger("durakube.worker")

DEFAULT_TERMINATION_MESSAGE_PATH = environment.DEFAULT_TERMINATION_MESSAGE_PATH
# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096
CONNECT_TIMEOUT_SECONDS = 30.0


Settings = environment.WorkerSettings


async def run_attempt(pool: pools.Database, run_id: str, attempt: int,
                      registry: tasks.Registry, *, secret: str, pod_name: str | None = None,
                      retry_policy: retry.Retry | None = None,
                      on_checkpoint: context.CheckpointHook | None = None,
                      store_retry_seconds: float = context.STORE_RETRY_SECONDS,
                      output: capturing.Output | None = None) -> attempts.Outcome:
    """Runs one attempt of the run and records its outcome; returns the outcome.

    `retry_policy` is the spec's policy (DURAKUBE_RETRY_POLICY); without it, the task
    decorator's classifies errors and is recorded with the outcome. What `output`
    captures is shipped to the attempt's stored log while the task runs, and for the
    last time (its capture stopped) before the outcome is recorded.

    Raises only when nothing could be recorded (the run is unknown, Postgres is
    unreachable, or its connection was lost under a checkpoint: `StoreUnavailable`;
    the attempt is not live, as a restarted container of an attempt that ended finds:
    `AttemptRevoked`) or when cancelled (a pod being killed): the operator then finds
    no outcome, or the one recorded before, and goes on from there.
    """
    credential = working.Credential(run_id, attempt, secret)
    run = await context.patiently(lambda: working.start_attempt(pool, credential, pod_name),
                                  "starting the attempt", store_retry_seconds)
    shipper = None
    if output is not None:
        shipper = capturing.Shipper(pool, credential, output.buffer)
        shipper.start()
        on_checkpoint = _nudging(shipper, on_checkpoint)
    try:
        return await _run_and_record(pool, run, credential, registry, pod_name=pod_name,
                                     retry_policy=retry_policy, on_checkpoint=on_checkpoint,
                                     store_retry_seconds=store_retry_seconds,
                                     captured=output, shipper=shipper)
    finally:
        if shipper is not None:
            # Without an outcome (the store was lost, the attempt revoked, the worker
            # cancelled): whatever can still be stored is.
            await _ship_the_rest(output, shipper)


def _nudging(shipper: capturing.Shipper,
             then: context.CheckpointHook | None) -> context.CheckpointHook:
    """A checkpoint hook that asks for the output to be shipped, then calls `then`."""
    def hook(step: steps.Step) -> None:
        shipper.nudge()
        if then is not None:
            then(step)
    return hook


async def _ship_the_rest(output: capturing.Output | None, shipper: capturing.Shipper) -> None:
    if output is not None:
        await output.stop()
    await shipper.close()


async def _run_and_record(pool: pools.Database, run: runs.Run, credential: working.Credential,
                          registry: tasks.Registry, *, pod_name: str | None,
                          retry_policy: retry.Retry | None,
                          on_checkpoint: context.CheckpointHook | None,
                          store_retry_seconds: float,
                          captured: capturing.Output | None,
                          shipper: capturing.Shipper | None) -> attempts.Outcome:
    run_id, attempt, secret = credential.args
    policy = retry_policy or retry.Retry()
    decorator_policy: retry.Retry | None = None
    ctx: context.TaskContext | None = None
    state: dict[str, Any] | None = None
    try:
        definition = registry.get(run.task_id)
        if retry_policy is None:
            policy = decorator_policy = definition.retry
        payload = tasks.validate_payload(definition, run.payload)
        # A lost connection here is the store's, never the task's: the attempt ends
        # without an outcome (below).
        recorded = await context.patiently(lambda: working.load_steps(pool, credential),
                                           "loading the recorded steps", store_retry_seconds)
        metadata = await context.patiently(lambda: working.load_metadata(pool, credential),
                                           "loading the run's metadata", store_retry_seconds)
        ctx = context.TaskContext(pool=pool, run_id=run_id, attempt=attempt, secret=secret,
                                  namespace=run.namespace, payload=payload,
                                  recorded=recorded, retry_policy=policy,
                                  on_checkpoint=on_checkpoint, registry=registry,
                                  store_retry_seconds=store_retry_seconds,
                                  task_id=run.task_id, metadata=metadata)
        output = await _run_task(definition, ctx, payload)
        state = serializing.encode(ctx.state, "ctx.state at the end of the task")
        outcome = attempts.Outcome("succeeded", output=output)
    except asyncio.CancelledError:
        if ctx is not None:
            await ctx.close()
        raise
    except waiting.Suspend as suspended:
        # A long wait: the waitpoint is recorded; this pod ends and the operator resumes
        # the run in a new one when the wait is over.
        outcome = attempts.Outcome("suspended", output=suspended.waitpoint.describe())
        state = _encodable_state(ctx)
    except Exception as error:
        if ctx is None and isinstance(error, errors.StoreUnavailable):
            raise  # before the task ran: nothing to record, the operator resumes the run
        # A fatal error (non-determinism, non-serializable state) wins over what the task did.
        cause: Exception = ctx.fatal if ctx is not None and ctx.fatal is not None else error
        outcome = classify_error(cause, policy, recorded_policy=decorator_policy)
        state = _encodable_state(ctx)
    if ctx is not None:
        await ctx.close()
        if ctx.store_lost is not None:
            # Postgres went away under a checkpoint (even one the task caught): nothing is
            # recorded, the operator sees an attempt without an outcome and resumes the run.
            raise ctx.store_lost

    log.info("run %s attempt %d: %s", run_id, attempt, outcome.kind,
             extra={"run_id": run_id, "attempt": attempt})
    if shipper is not None:
        # The outcome revokes the secret: the output goes first, all of it.
        await _ship_the_rest(captured, shipper)
    await working.record_outcome(pool, credential, outcome, state=state,
                                 last_step=ctx.pending_step if ctx is not None else None)
    return outcome


async def _run_task(definition: tasks.TaskDefinition, ctx: context.TaskContext,
                    payload: Any) -> Any:
    """Runs the task under its timeout; returns its output as JSON."""
    with current.activated(ctx):
        try:
            async with asyncio.timeout(definition.timeout) as deadline:
                if definition.sync:
                    # A `def` task: in a thread of its own, its calls handed to this loop.
                    output = await blocking.run_sync_task(definition.fn, ctx, payload)
                else:
                    output = await definition.fn(ctx, payload)
        except TimeoutError:
            if deadline.expired() and definition.timeout is not None:
                raise errors.AttemptTimedOut(definition.timeout) from None
            raise
    if ctx.fatal is not None:
        # The task caught a fatal error and returned anyway: the run still fails.
        raise ctx.fatal
    return serializing.encode(output, "task output")


def classify_error(error: Exception, policy: retry.Retry, *,
                   recorded_policy: retry.Retry | None = None) -> attempts.Outcome:
    """The outcome of an attempt that raised `error` under `policy`: retry or failed.

    `retry_at` is set only when the task asked for a time; the operator computes the
    back-off otherwise. `recorded_policy` goes with the outcome for the operator.
    """
    if retry.is_retryable(policy, error):
        retry_at = error.retry_at if isinstance(error, errors.RetryableError) else None
        return attempts.Outcome("retry", error=errors.describe_exception(error, retryable=True),
                                retry_at=retry_at, policy=recorded_policy)
    return attempts.Outcome("failed", error=errors.describe_exception(error, retryable=False),
                            policy=recorded_policy)


def _encodable_state(ctx: context.TaskContext | None) -> dict[str, Any] | None:
    """The final ctx.state when it can be stored; None keeps the last checkpoint's."""
    if ctx is None:
        return None
    try:
        state: dict[str, Any] = serializing.encode(ctx.state, "ctx.state")
        return state
    except (errors.NonSerializableState, errors.ValueRefused):
        return None


async def record_failure(pool: pools.Database, run_id: str, attempt: int, error: Exception,
                         *, secret: str, pod_name: str | None = None,
                         output: capturing.Output | None = None) -> attempts.Outcome:
    """Records a permanent failure that happened before the task could start (with what
    `output` captured: the traceback, for one)."""
    credential = working.Credential(run_id, attempt, secret)
    await working.start_attempt(pool, credential, pod_name)
    outcome = attempts.Outcome("failed", error=errors.describe_exception(error, retryable=False))
    if output is not None:
        await _ship_the_rest(output, capturing.Shipper(pool, credential, output.buffer))
    await working.record_outcome(pool, credential, outcome)
    return outcome


def import_task_modules(names: Iterable[str]) -> None:
    """Imports the modules whose `@task` decorators fill the registry."""
    # As with `python -m`, the working directory is importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        importlib.import_module(name)


def termination_message(outcome: attempts.Outcome, attempt: int) -> str:
    """A short JSON hint for the pod's termination message (under 4096 bytes)."""
    hint: dict[str, Any] = {"outcome": outcome.kind, "attempt": attempt}
    if outcome.error is not None:
        hint["error"] = {"type": outcome.error.get("type"),
                         "message": str(outcome.error.get("message", ""))[:1024],
                         "retryable": outcome.error.get("retryable", False)}
    if outcome.retry_at is not None:
        hint["retryAt"] = outcome.retry_at.isoformat()
    return json.dumps(hint)[:TERMINATION_MESSAGE_LIMIT]


def write_termination_message(path: str, message: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as file:
            file.write(message)
    except OSError as error:
        # Outside Kubernetes the default path may not exist: the hint is only a hint.
        log.debug("termination message not written to %s: %s", path, error)


def read_settings(environ: Mapping[str, str], modules: Sequence[str] = ()) -> Settings:
    """The worker's settings from the environment, plus the modules of `--module` flags;
    raises ValueError (`environment.SettingsError`) naming what is wrong."""
    settings = Settings.from_environ(environ)
    spec_retry_policy(settings)
    return settings.model_copy(
        update={"task_modules": tuple(dict.fromkeys([*settings.task_modules, *filter(None, modules)]))})


def spec_retry_policy(settings: Settings) -> retry.Retry | None:
    """The TaskRun's or the Task's retry policy (DURAKUBE_RETRY_POLICY); None when neither
    sets one, and the task decorator's applies."""
    if settings.retry_policy is None:
        return None
    try:
        return retry.Retry.model_validate_json(settings.retry_policy)
    except pydantic.ValidationError as error:
        raise environment.SettingsError(
            f"DURAKUBE_RETRY_POLICY is not a retry policy: {error}") from None


async def _connect(settings: Settings) -> Any:
    """A pool, retrying for a while: Postgres may be restarting as the pod starts."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
    delay = 0.2
    while True:
        try:
            return await pools.connect(settings.database_url, min_size=1, max_size=5,
                                       statement_cache_size=settings.statement_cache_size)
        except pools.TRANSIENT_CONNECT_ERRORS as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Postgres not reachable yet (%s); retrying in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _main(settings: Settings, output: capturing.Output | None = None) -> int:
    # The attempt's span covers the whole process, and its spans are sent before it ends.
    traced = tracing.start_attempt(os.environ, run_id=settings.run_id, attempt=settings.attempt,
                                   pod_name=settings.pod_name,
                                   task_id=os.environ.get("DURAKUBE_TASK_ID"))
    try:
        return await _attempt(settings, output, traced)
    finally:
        if output is not None:
            await output.stop()
        traced.finish()


async def _attempt(settings: Settings, output: capturing.Output | None,
                   traced: tracing.Attempt = tracing.OFF) -> int:
    import_error: Exception | None = None
    try:
        import_task_modules(settings.task_modules)
    except Exception as error:
        log.exception("importing the task modules failed")
        import_error = error
    try:
        pool = await _connect(settings)
    except Exception as error:
        log.exception("cannot connect to Postgres: no outcome recorded")
        traced.lost(error)
        return 1
    try:
        if settings.compensating:
            outcome = await compensating.run_compensations(
                pool, settings.run_id, settings.attempt, secret=settings.attempt_secret,
                pod_name=settings.pod_name, import_error=import_error, output=output)
        elif import_error is not None:
            outcome = await record_failure(pool, settings.run_id, settings.attempt, import_error,
                                           secret=settings.attempt_secret,
                                           pod_name=settings.pod_name, output=output)
        else:
            outcome = await run_attempt(pool, settings.run_id, settings.attempt, tasks.registry,
                                        secret=settings.attempt_secret,
                                        pod_name=settings.pod_name,
                                        retry_policy=spec_retry_policy(settings),
                                        store_retry_seconds=settings.store_retry_seconds,
                                        output=output)
    except Exception as error:
        log.exception("run %s attempt %d: no outcome recorded", settings.run_id,
                      settings.attempt)
        traced.lost(error)
        return 1
    finally:
        await pool.close()
    traced.outcome(outcome)
    write_termination_message(settings.termination_message_path,
                              termination_message(outcome, settings.attempt))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `durakube-worker` console script. Once the attempt is over it ends the process
    itself (`end_process`), unless a thread the interpreter would wait for still runs."""
    parser = argparse.ArgumentParser(prog="durakube-worker",
                                     description="Runs one attempt of a Durakube TaskRun.")
    parser.add_argument("--module", action="append", default=[], metavar="NAME",
                        help="a module registering tasks (repeatable; adds to "
                             "DURAKUBE_TASK_MODULES)")
    parser.add_argument("--log-format", choices=logs.LOG_FORMATS, default=None,
                        help="plain or json (default: $DURAKUBE_LOG_FORMAT, else plain)")
    args = parser.parse_args(argv)
    logs.configure("plain", os.environ.get("DURAKUBE_LOG_LEVEL", "INFO"))
    try:
        settings = read_settings(os.environ, args.module)
    except ValueError as error:
        log.error("%s", error)
        return 2
    log_format = args.log_format or settings.log_format
    # From here on, what the process writes is also the attempt's stored log.
    output = capturing.Output.capturing_streams()
    logs.configure(log_format, os.environ.get("DURAKUBE_LOG_LEVEL", "INFO"))
    code = asyncio.run(_main(settings, output))
    stuck = blocking.running_threads()
    if stuck:
        # A `def` task or step still blocks its thread (past the attempt's timeout, say):
        # the outcome is recorded, and nothing may keep the pod from ending.
        log.warning("run %s attempt %d: leaving %d thread(s) of the task still running: %s",
                    settings.run_id, settings.attempt, len(stuck),
                    ", ".join(thread.name for thread in stuck))
        exit_flushed(code)
    if other_threads_alive():
        return code  # the interpreter waits for them, as for any Python program
    end_process(code)


def other_threads_alive() -> bool:
    """Whether a thread the interpreter would wait for at exit (not a daemon) still runs."""
    main_thread = threading.main_thread()
    return any(thread is not main_thread and not thread.daemon and thread.is_alive()
               for thread in threading.enumerate())


def end_process(code: int) -> NoReturn:
    """Ends the process as the interpreter's exit would, but for tearing every module
    down: the atexit functions run (logging's, an exporter's shutdown, the task's own),
    the streams are flushed, and the process exits with `code`. The teardown it skips
    cost about a tenth of a second of CPU at the end of every attempt pod."""
    atexit._run_exitfuncs()
    exit_flushed(code)


def exit_flushed(code: int) -> NoReturn:
    """Flushes the streams and exits with `code` at once: no atexit function, no waiting
    for any thread."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    os._exit(code)

"""The local runner: a task's runs in-process against Postgres alone, for tests and development.

No Kubernetes, no operator, no pod: `AsyncLocalRunner` does what the operator does
for a run in Postgres, with the store functions the operator calls (it registers the
run, starts each attempt with a fresh secret, mirrors the run's phase, resumes a
run whose wait ended, submits child runs and sends their results), and runs every
attempt with the worker's own `worker.run_attempt`: the same step engine,
checkpoints, replays and waits as in a pod. What it does not have is a queue's
concurrency limit, a pod's resources, or crashes other than those a test causes.

Between attempts it applies the retry policy as the operator does (the run's
override, else the one the task's decorator declared, else the defaults; attempts
that ended by suspending or without an outcome do not count against
`max_attempts`). Back-off is skipped by default: `backoff_scale=1.0` waits the real
delays, `0.01` a hundredth of them; either way the delays are kept in
`RunResult.backoffs`.

A run that fails for good runs its recorded compensations first, newest first, in
attempts of compensation mode with the operator's budget (`durakube.compensating`),
then ends Failed; `RunResult.compensations` shows them.

A run that suspends stays suspended until the test ends its wait: `deliver_event`,
`complete_token`, `skip_sleep` (a sleep's time jumps to now) or `expire_wait` (the
wait's deadline passes now); the runner then resumes it at once, as far as it goes.

`LocalRunner` is the same with blocking methods, on an event loop of its own (so it
refuses to be called from inside a running loop: use `AsyncLocalRunner` there).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from durakube import compensating, errors, retry, serializing, tasks, worker
from durakube.store import (
    attempts,
    children,
    compensations,
    pools,
    runs,
    schema,
    steps,
    waitpoints,
)

# What a run that keeps ending without an outcome may use, as the operator's default
# `infrastructureRetries`, and the back-off between those attempts.
INFRASTRUCTURE_RETRIES = 5
INFRASTRUCTURE_RETRY = retry.Retry(max_attempts=1000, factor=2.0, min_timeout=1.0,
                                   max_timeout=30.0, randomize=True)
# The phases a run can be left in by the runner.
FINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class RunResult:
    """A run as Postgres holds it after the runner drove it as far as it could go."""

    run_id: str
    name: str
    namespace: str
    task_id: str
    phase: str  # Succeeded, Failed or Suspended
    output: Any
    error: dict[str, Any] | None
    state: dict[str, Any]
    attempts: list[attempts.Attempt]
    steps: list[steps.Step]
    # The open wait of a suspended run, its token included (a test hands it on).
    waiting_for: waitpoints.Waitpoint | None
    # Seconds between attempts as the policy set them (before `backoff_scale`).
    backoffs: list[float]
    # Names of the child runs it triggered.
    children: list[str]
    # Its compensations, newest first (`durakube.compensating`): run once it failed.
    compensations: list[compensations.Compensation] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded"

    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]


@dataclass
class _Bookkeeping:
    """What the operator keeps in a TaskRun's status and Postgres does not hold."""

    name: str
    retry_policy: retry.Retry | None
    resumes: int = 0
    infrastructure_failures: int = 0
    backoffs: list[float] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None  # an error of the runner's own (no outcome recorded)
    parent: str | None = None  # the parent's run id, for a child run


RunRef = RunResult | str


class AsyncLocalRunner:
    """Runs tasks of `registry` (the default one unless given) in this process.

    `database_url` is a login that may create Durakube's schema (it is migrated on
    `open`); `worker_database_url`, when given, is what attempts use, as pods do (a
    member of `durakube_worker`). Events are delivered in `namespace`.
    """

    def __init__(self, database_url: str, *, registry: tasks.Registry | None = None,
                 namespace: str = "default", backoff_scale: float = 0.0,
                 worker_database_url: str | None = None,
                 infrastructure_retries: int = INFRASTRUCTURE_RETRIES) -> None:
        if backoff_scale < 0:
            raise ValueError(f"backoff_scale must be 0 or more, got {backoff_scale}")
        self.database_url = database_url
        self.worker_database_url = worker_database_url
        self.registry = registry if registry is not None else tasks.registry
        self.namespace = namespace
        self.backoff_scale = backoff_scale
        self.infrastructure_retries = infrastructure_retries
        self._pool: Any = None
        self._worker_pool: Any = None
        self._runs: dict[str, _Bookkeeping] = {}
        self._rng = random.Random()

    async def open(self) -> AsyncLocalRunner:
        if self._pool is None:
            self._pool = await pools.connect(self.database_url, max_size=5)
            await schema.migrate(self._pool)
            self._worker_pool = self._pool
            if self.worker_database_url is not None:
                self._worker_pool = await pools.connect(self.worker_database_url, max_size=5)
        return self

    async def close(self) -> None:
        pool, worker_pool, self._pool, self._worker_pool = (self._pool, self._worker_pool,
                                                            None, None)
        if worker_pool is not None and worker_pool is not pool:
            await worker_pool.close()
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> AsyncLocalRunner:
        return await self.open()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    @property
    def pool(self) -> Any:
        """The runner's pool, for a test's own reads of Durakube's tables."""
        if self._pool is None:
            raise RuntimeError("the runner is not open: `async with AsyncLocalRunner(...)` or "
                               "`await runner.open()` first")
        return self._pool

    async def run(self, task: str | Callable[..., Any], payload: Any = None, *,
                  name: str | None = None, retry_policy: retry.Retry | None = None) -> RunResult:
        """Starts a run of `task` (its id or its function) and drives it until it finishes
        or suspends; `retry_policy` stands for a TaskRun's `spec.retry`."""
        task_id = task if isinstance(task, str) else self.registry.id_of(task)
        self.registry.get(task_id)  # an unknown task fails here, naming the known ones
        data = serializing.encode({} if payload is None else payload, "the payload")
        if not isinstance(data, dict):
            raise errors.InvalidPayload(task_id, f"expected a JSON object, got "
                                                 f"{errors.qualified_name_of(data)}")
        run_id = str(uuid.uuid4())
        name = name or f"{task_id}-{run_id[:8]}"
        await runs.register_run(self.pool, run_id=run_id, namespace=self.namespace, name=name,
                                task_id=task_id, payload=data)
        self._runs[run_id] = _Bookkeeping(name=name, retry_policy=retry_policy)
        await self._drive(run_id)
        return await self.result(run_id)

    async def result(self, run: RunRef) -> RunResult:
        """The run as Postgres holds it now."""
        run_id = _run_id(run)
        row = await runs.load_run(self.pool, run_id)
        if row is None:
            raise errors.RunNotFound(run_id)
        kept = self._runs.get(run_id)
        waiting = (await waitpoints.pending_waitpoint(self.pool, run_id)
                   if row.status == "Suspended" else None)
        return RunResult(
            run_id=run_id, name=row.name, namespace=row.namespace, task_id=row.task_id,
            phase=row.status, output=row.output,
            error=row.error or (kept.error if kept is not None else None), state=row.state,
            attempts=await attempts.load_attempts(self.pool, run_id),
            steps=await steps.load_steps(self.pool, run_id), waiting_for=waiting,
            backoffs=list(kept.backoffs) if kept is not None else [],
            children=list(kept.children) if kept is not None else [],
            compensations=await compensations.load_compensations(self.pool, run_id))

    async def deliver_event(self, key: str, data: Any = None) -> list[RunResult]:
        """Sends an event on `key` in the runner's namespace (buffered when no run waits);
        resumes the runs it reached and returns them."""
        delivery = await waitpoints.send_event(self.pool, key, data, namespace=self.namespace)
        await self._resume_ready()
        return [await self.result(run_id) for run_id in delivery.run_ids]

    async def complete_token(self, token: str, data: Any = None) -> RunResult:
        """Completes the wait of `token`; resumes its run and returns it."""
        run_id = await waitpoints.complete_token(self.pool, token, data)
        await self._resume_ready()
        return await self.result(run_id)

    async def skip_sleep(self, run: RunRef) -> RunResult:
        """Jumps the run's clock to the end of the sleep it waits in, and resumes it."""
        return await self._fire(run, "sleep")

    async def expire_wait(self, run: RunRef) -> RunResult:
        """Makes the run's wait for an event or a token time out now (the task gets
        `WaitTimedOut`), and resumes it."""
        return await self._fire(run, None)

    async def _fire(self, run: RunRef, kind: str | None) -> RunResult:
        run_id = _run_id(run)
        waiting = await waitpoints.pending_waitpoint(self.pool, run_id)
        if waiting is None or (kind is not None and waiting.kind != kind):
            raise ValueError(f"run {run_id} waits for no {kind or 'wait'} "
                             f"(its open wait: {waiting.describe() if waiting else None})")
        await waitpoints.fire_timer(self.pool, run_id, waiting.seq)
        await self._resume_ready()
        return await self.result(run_id)

    async def _resume_ready(self) -> None:
        """Resumes the runs of this runner whose wait has ended, until none is left."""
        while True:
            ready = [run_id for run_id, _, _ in await waitpoints.runs_to_resume(self.pool)
                     if run_id in self._runs]
            if not ready:
                return
            await waitpoints.mark_resumed(self.pool, ready)
            for run_id in ready:
                await self._drive(run_id)

    async def _drive(self, run_id: str) -> None:
        """Runs attempts of the run until it finishes or suspends, as the operator would
        start them (and its children, when it waits for them)."""
        kept = self._runs[run_id]
        while True:
            row = await runs.load_run(self.pool, run_id)
            assert row is not None
            number = row.attempt + 1
            secret = attempts.new_secret()
            await runs.set_run_status(self.pool, run_id, "Running")
            await attempts.start_attempt(self.pool, run_id, number, f"{kept.name}-{number}",
                                         secret=secret)
            try:
                outcome = await worker.run_attempt(
                    self._worker_pool, run_id, number, self.registry, secret=secret,
                    pod_name=f"{kept.name}-{number}", retry_policy=kept.retry_policy)
            except (errors.StoreUnavailable, errors.AttemptRevoked) as lost:
                # As a pod that ended without an outcome: resumed from its checkpoints.
                await attempts.revoke_secrets(self.pool, run_id)
                kept.infrastructure_failures += 1
                kept.error = {"type": type(lost).__name__, "message": str(lost)}
                if kept.infrastructure_failures > self.infrastructure_retries:
                    await self._compensate(run_id, kept)
                    await self._finish(run_id, "Failed")
                    return
                await self._back_off(kept, retry.backoff_delay(
                    INFRASTRUCTURE_RETRY, kept.infrastructure_failures, self._rng))
                continue
            if outcome.kind == "suspended":
                kept.resumes += 1
                await runs.set_run_status(self.pool, run_id, "Suspended")
                await self._submit_children(run_id)
                return
            if outcome.kind == "succeeded":
                await self._finish(run_id, "Succeeded")
                return
            if outcome.kind == "retry":
                policy = kept.retry_policy or outcome.policy or retry.Retry()
                used = number - kept.infrastructure_failures - kept.resumes
                if retry.has_attempts_left(policy, used):
                    delay = retry.backoff_delay(policy, used, self._rng)
                    if outcome.retry_at is not None:
                        delay = max(0.0, (outcome.retry_at - datetime.now(UTC)).total_seconds())
                    await self._back_off(kept, delay)
                    continue
            await self._compensate(run_id, kept)
            await self._finish(run_id, "Failed")
            return

    async def _compensate(self, run_id: str, kept: _Bookkeeping) -> None:
        """Runs the failed run's compensations in attempts of compensation mode, as the
        operator does: newest first, each once, retried with back-off within the budget."""
        for tried in range(1, compensating.ATTEMPTS + 1):
            summary = await compensations.summarize_compensations(self.pool, run_id)
            if summary.pending == 0:
                return
            row = await runs.load_run(self.pool, run_id)
            assert row is not None
            number = row.attempt + 1
            secret = attempts.new_secret()
            await runs.set_run_status(self.pool, run_id, "Compensating")
            await attempts.start_attempt(self.pool, run_id, number, f"{kept.name}-{number}",
                                         secret=secret)
            outcome = await compensating.run_compensations(
                self._worker_pool, run_id, number, secret=secret, pod_name=f"{kept.name}-{number}")
            if outcome.kind == "succeeded":
                return
            if tried < compensating.ATTEMPTS:
                await self._back_off(kept, retry.backoff_delay(compensating.RETRY, tried,
                                                               self._rng))

    async def _back_off(self, kept: _Bookkeeping, delay: float) -> None:
        kept.backoffs.append(delay)
        await asyncio.sleep(delay * self.backoff_scale)

    async def _finish(self, run_id: str, phase: str) -> None:
        await runs.set_run_status(self.pool, run_id, phase)
        kept = self._runs[run_id]
        if kept.parent is None:
            return
        # A child's end is sent to its parent, as the operator sends it.
        row = await runs.load_run(self.pool, run_id)
        assert row is not None
        await waitpoints.send_event(
            self.pool, children.result_key(row.namespace, row.name),
            {"phase": phase, "output": row.output, "error": row.error or kept.error},
            event_id=f"run-ended:{run_id}")
        await self._resume_ready()

    async def _submit_children(self, run_id: str) -> None:
        """Starts the child runs the run asked for, each driven as far as it goes."""
        kept = self._runs[run_id]
        requests = [child for child in await children.unsubmitted_child_runs(self.pool)
                    if child.parent_run_id == run_id]
        started = []
        for child in requests:
            name = children.child_name(kept.name, child.seq)
            await children.mark_submitted(self.pool, run_id, child.seq)
            child_id = str(uuid.uuid4())
            await runs.register_run(self.pool, run_id=child_id, namespace=self.namespace,
                                    name=name, task_id=child.task, payload=child.payload)
            self._runs[child_id] = _Bookkeeping(name=name, retry_policy=None, parent=run_id)
            kept.children.append(name)
            started.append(child_id)
        for child_id in started:
            await self._drive(child_id)


class LocalRunner:
    """`AsyncLocalRunner` with blocking methods, on an event loop of its own.

        runner = LocalRunner(database_url)
        result = runner.run(my_task, {"order": 7})
        assert result.phase == "Succeeded"
        runner.close()
    """

    def __init__(self, database_url: str, **options: Any) -> None:
        self._loop = asyncio.Runner()
        self.runner = AsyncLocalRunner(database_url, **options)
        self._call(self.runner.open())

    def _call(self, coroutine: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._loop.run(coroutine)
        coroutine.close()
        raise RuntimeError("LocalRunner blocks, and an event loop runs in this thread: "
                           "use durakube.testing.AsyncLocalRunner here")

    def close(self) -> None:
        try:
            self._call(self.runner.close())
        finally:
            self._loop.close()

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def namespace(self) -> str:
        return self.runner.namespace

    def run(self, task: str | Callable[..., Any], payload: Any = None, *,
            name: str | None = None, retry_policy: retry.Retry | None = None) -> RunResult:
        result: RunResult = self._call(self.runner.run(task, payload, name=name,
                                                       retry_policy=retry_policy))
        return result

    def result(self, run: RunRef) -> RunResult:
        result: RunResult = self._call(self.runner.result(run))
        return result

    def deliver_event(self, key: str, data: Any = None) -> list[RunResult]:
        results: list[RunResult] = self._call(self.runner.deliver_event(key, data))
        return results

    def complete_token(self, token: str, data: Any = None) -> RunResult:
        result: RunResult = self._call(self.runner.complete_token(token, data))
        return result

    def skip_sleep(self, run: RunRef) -> RunResult:
        result: RunResult = self._call(self.runner.skip_sleep(run))
        return result

    def expire_wait(self, run: RunRef) -> RunResult:
        result: RunResult = self._call(self.runner.expire_wait(run))
        return result


def _run_id(run: RunRef) -> str:
    return run.run_id if isinstance(run, RunResult) else run

"""Plain `def` tasks and steps in worker pods: checkpoints, a crash, a step that blocks."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from effects import count_blocking, counted

import durakube


@durakube.step
def tally(run_id: str, name: str, crash: bool) -> int:
    """Counts the step's run; with `crash`, SIGKILLs the worker right after counting, while
    the step is still running (so its checkpoint is never recorded)."""
    result = count_blocking(run_id, name)
    if crash:
        os.kill(os.getpid(), signal.SIGKILL)
    return result


@durakube.task(id="sync-crash-in-three")
def sync_crash_in_three(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Four def steps; the first attempt's process is SIGKILLed inside step 3."""
    counts = [tally(ctx.run_id, f"step-{index}", index == 3 and ctx.attempt == 1)
              for index in range(1, 5)]
    ctx.state["counted"] = sum(counts)
    return {"counts": counts, "attempt": ctx.attempt}


@durakube.task(id="sync-hold")
def sync_hold(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """One def step that prints a line, then blocks its thread until the test counts a
    "release" for the run: meanwhile the worker's loop must still ship the line."""

    def hold() -> int:
        print(f"holding run {ctx.run_id}", flush=True)
        polls = 0
        while not counted(ctx.run_id, "release"):
            polls += 1
            time.sleep(0.2)
        return polls

    return {"polls": ctx.step("hold", hold)}

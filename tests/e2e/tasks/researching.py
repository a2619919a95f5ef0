"""The research agent example (examples/research_agent.py) with its tool calls counted and
one of them held, so that a test can SIGKILL the worker inside that call.

Every execution of a tool call counts "<call id>@<attempt>" (tasks/effects.py) before
it runs, so the rows say which attempt ran which call, and how often. The call named
by `payload["hold"]` waits, in the first attempt only, until the test counts a
"release" for the run (it kills the worker instead). The model is the example's
offline `ScriptedModel`: no network.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from effects import count_blocking, counted

import durakube

# On the process node this folder is the image's /app; the example sits in the
# repository's examples/ (its own image, examples/Dockerfile, copies it to /app).
EXAMPLES = Path(__file__).resolve().parent.parent.parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.append(str(EXAMPLES))

import research_agent  # noqa: E402 - found through the path set just above


def counted_tools(ctx: durakube.SyncTaskContext, hold: str | None) -> dict[str, Callable[..., Any]]:
    """The example's tools, each call counted with its attempt; `hold` waits."""

    def wrap(name: str, tool: Callable[..., Any]) -> Callable[..., Any]:
        def call(**arguments: Any) -> Any:
            call_id = ctx.idempotency_key().rsplit(":", 1)[-1]
            count_blocking(ctx.run_id, f"{call_id}@{ctx.attempt}")
            if call_id == hold and ctx.attempt == 1:
                while not counted(ctx.run_id, "release"):
                    time.sleep(0.2)
            return tool(**arguments)
        return call

    return {name: wrap(name, tool) for name, tool in research_agent.TOOLS.items()}


@durakube.task(id="research-agent-counted")
def research_agent_counted(ctx: durakube.SyncTaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return research_agent.run_agent(ctx, payload["question"],
                                    model=research_agent.ScriptedModel(),
                                    tools=counted_tools(ctx, payload.get("hold")),
                                    max_turns=int(payload.get("maxTurns", 6)))

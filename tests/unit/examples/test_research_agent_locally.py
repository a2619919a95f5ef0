"""The research agent example under the local runner: its loop, its turn limit, its model choice.

The end-to-end test (tests/e2e/operator/test_research_agent.py) kills its worker
inside a tool call on the test bed; here the same code runs in-process against
Postgres through `durakube.testing`, with the example's offline model.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from durakube import tasks
from durakube.testing import AsyncLocalRunner

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
research_agent = importlib.import_module("research_agent")

QUESTION = "How does a Fresnel lens make a lighthouse visible so far?"


@pytest.fixture
async def runner(database_dsn: str, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[AsyncLocalRunner]:
    monkeypatch.delenv("RESEARCH_AGENT_API_KEY", raising=False)
    async with AsyncLocalRunner(database_dsn) as opened:
        yield opened


async def test_the_agent_searches_fetches_and_answers_each_step_checkpointed(
        runner: AsyncLocalRunner) -> None:
    result = await runner.run(research_agent.research_agent, {"question": QUESTION})

    assert result.phase == "Succeeded", result.error
    assert result.step_names() == [
        "model-turn-1", "tool:search:call-1-1", "model-turn-2", "tool:fetch:call-2-1",
        "tool:fetch:call-2-2", "model-turn-3"]
    output: dict[str, Any] = result.output
    assert output["turns"] == 3 and output["toolCalls"] == ["call-1-1", "call-2-1", "call-2-2"]
    assert "[fresnel-lens]" in output["answer"] and "twenty miles" in output["answer"]
    fetched = [step.result["id"] for step in result.steps if step.name.startswith("tool:fetch")]
    assert fetched == ["fresnel-lens", "characteristics"]


async def test_the_turn_limit_stops_an_agent_that_never_answers(
        runner: AsyncLocalRunner) -> None:
    result = await runner.run(research_agent.research_agent,
                              {"question": QUESTION, "maxTurns": 2})

    assert result.phase == "Succeeded"
    assert result.output["answer"] is None
    assert result.output["stopped"] == "no answer after 2 turns"
    assert [name for name in result.step_names() if name.startswith("model-turn")] == [
        "model-turn-1", "model-turn-2"]


def test_a_bad_tool_call_is_answered_for_the_model_to_correct() -> None:
    call = research_agent.ToolCall
    assert research_agent.call_tool(research_agent.TOOLS, call(id="1", name="browse")) == {
        "error": "no tool 'browse'; the tools are ['fetch', 'search']"}
    assert "bad arguments for fetch" in research_agent.call_tool(
        research_agent.TOOLS, call(id="2", name="fetch", arguments={"url": "x"}))["error"]
    assert research_agent.fetch("nope") == {"error": "no document 'nope'; search first"}


def test_a_real_model_is_chosen_only_with_an_api_key() -> None:
    assert isinstance(research_agent.default_model({}), research_agent.ScriptedModel)
    real = research_agent.default_model({"RESEARCH_AGENT_API_KEY": "k",
                                         "RESEARCH_AGENT_BASE_URL": "http://127.0.0.1:9/v1/"})
    assert isinstance(real, research_agent.ChatCompletionsModel)
    assert (real.base_url, real.model) == ("http://127.0.0.1:9/v1", "gpt-4o-mini")


def test_the_example_registers_its_task() -> None:
    assert tasks.registry.get("research-agent").sync

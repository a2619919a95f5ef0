"""A research agent: a model turn, then each tool call it asks for as a checkpoint, up to N turns.

    question -> model turn -> search -> model turn -> fetch, fetch -> model turn -> answer

Every model turn and every tool call is a step of its own, so when the pod dies in
the middle of a tool call, the next attempt replays the turns and the calls that
finished (their results come from Postgres: no model is asked again, no tool runs
again) and runs again only the call that was cut short. A model's answer is not
deterministic; recorded, the replay takes the same path the first attempt took.

It is written as plain `def` code, as agents usually are (blocking HTTP): the
worker runs the task in a thread of its own and each step in another, and
`ctx.step(...)` blocks the task's thread until the checkpoint is recorded.

Model calls go through `Model`. Without an API key the agent uses `ScriptedModel`,
an offline, deterministic stand-in that plays a researcher over the small built-in
`CORPUS` (so the example runs anywhere, tests included). With
`RESEARCH_AGENT_API_KEY` set it uses `ChatCompletionsModel`: any OpenAI-compatible
chat-completions endpoint (`RESEARCH_AGENT_BASE_URL`, default OpenAI's;
`RESEARCH_AGENT_MODEL`, default gpt-4o-mini), called with `urllib` and function
calling. Tools stay the offline `search` and `fetch` over the corpus; a real one
would call a search API, with `ctx.idempotency_key()` where it has side effects.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

import durakube

DEFAULT_MAX_TURNS = 6

SYSTEM_PROMPT = (
    "You are a careful researcher. Use the search tool to find documents, the fetch tool "
    "to read them, and answer the question in a few sentences citing the document ids "
    "you used in square brackets. Answer only from what you fetched.")

# The built-in corpus the offline tools search: short documents about lighthouses.
CORPUS: dict[str, dict[str, str]] = {
    "fresnel-lens": {
        "title": "The Fresnel lens",
        "text": "Augustin Fresnel designed a lens of concentric glass prisms in 1822. The "
                "prisms bend the light of a single lamp into a horizontal beam, so a "
                "lighthouse with a Fresnel lens is visible more than twenty miles away. "
                "A solid lens of the same power would be too thick and heavy to build.",
    },
    "lamps": {
        "title": "Lighthouse lamps",
        "text": "Early lighthouses burned wood or coal in open fires. Oil lamps with hollow "
                "wicks replaced them in the eighteenth century, then kerosene, then "
                "electric bulbs. A brighter lamp adds little range without a lens to "
                "gather its light into a beam.",
    },
    "range": {
        "title": "How far a light is seen",
        "text": "The range of a light is limited by the curvature of the earth as well as "
                "by its brightness. A taller tower is seen from further away: a light at "
                "thirty metres reaches a horizon about twenty kilometres off.",
    },
    "characteristics": {
        "title": "Light characteristics",
        "text": "Each lighthouse flashes its own pattern, its characteristic, so sailors "
                "can tell one light from another. Rotating Fresnel lenses with several "
                "panels produce the flashes.",
    },
    "keepers": {
        "title": "Lighthouse keepers",
        "text": "Keepers trimmed the wicks, wound the clockwork that turned the lens and "
                "cleaned the glass every day. Automation replaced most keepers by the end "
                "of the twentieth century.",
    },
    "fog-signals": {
        "title": "Fog signals",
        "text": "When fog hides the light, horns and bells warn ships instead. Sound "
                "carries a few miles at most, far less than a lens carries light.",
    },
}

TOOL_SPECS: list[dict[str, Any]] = [
    {"name": "search",
     "description": "Finds documents of the corpus relevant to a query; returns ids and titles.",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                    "required": ["query"]}},
    {"name": "fetch",
     "description": "Returns the full text of a document by its id.",
     "parameters": {"type": "object", "properties": {"id": {"type": "string"}},
                    "required": ["id"]}},
]


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = {}


class Turn(BaseModel):
    """What the model answered: text, tool calls to make, or both."""

    content: str | None = None
    tool_calls: list[ToolCall] = []

    def as_message(self) -> dict[str, Any]:
        return {"role": "assistant", "content": self.content,
                "tool_calls": [call.model_dump() for call in self.tool_calls]}


class Model(Protocol):
    """One turn of a chat model with tools: the conversation so far in, the next turn out.

    Messages are dicts: {"role": "system" | "user", "content"}, the assistant's turns
    (`Turn.as_message()`), and {"role": "tool", "tool_call_id", "name", "content"}.
    """

    def complete(self, messages: list[dict[str, Any]],
                 tools: list[dict[str, Any]]) -> Turn: ...


# The tools: plain functions of JSON arguments returning JSON.


def _words(text: str) -> set[str]:
    return {word for word in re.findall(r"[a-z]+", text.lower()) if len(word) > 2}


def search(query: str, limit: int = 3) -> list[dict[str, Any]]:
    """The documents sharing the most words with `query`, best first."""
    wanted = _words(query)
    scored = sorted(((len(wanted & _words(doc["title"] + " " + doc["text"])), doc_id)
                     for doc_id, doc in CORPUS.items()), key=lambda pair: (-pair[0], pair[1]))
    return [{"id": doc_id, "title": CORPUS[doc_id]["title"], "score": score}
            for score, doc_id in scored[:limit] if score > 0]


def fetch(id: str) -> dict[str, str]:  # "id": the name the model calls it by
    doc = CORPUS.get(id)
    if doc is None:
        return {"error": f"no document {id!r}; search first"}
    return {"id": id, **doc}


TOOLS: dict[str, Callable[..., Any]] = {"search": search, "fetch": fetch}


class ScriptedModel:
    """An offline researcher: search the question, fetch the two best documents, answer
    from their sentences that share the most words with the question. Deterministic:
    the same conversation gets the same turn."""

    def complete(self, messages: list[dict[str, Any]],
                 tools: list[dict[str, Any]]) -> Turn:
        question = next(m["content"] for m in messages if m["role"] == "user")
        turn = 1 + sum(1 for m in messages if m["role"] == "assistant")
        results = {m["name"]: json.loads(m["content"]) for m in messages if m["role"] == "tool"}
        fetched = [json.loads(m["content"]) for m in messages
                   if m["role"] == "tool" and m["name"] == "fetch"]
        if "search" not in results:
            return Turn(content="Searching the corpus.", tool_calls=[
                ToolCall(id=f"call-{turn}-1", name="search", arguments={"query": question})])
        if not fetched and results["search"]:
            return Turn(content="Reading the best matches.", tool_calls=[
                ToolCall(id=f"call-{turn}-{index}", name="fetch", arguments={"id": hit["id"]})
                for index, hit in enumerate(results["search"][:2], start=1)])
        return Turn(content=self._answer(question, fetched))

    @staticmethod
    def _answer(question: str, documents: list[dict[str, str]]) -> str:
        wanted = _words(question)
        sentences = []
        for doc in documents:
            if "text" not in doc:
                continue
            best = max(re.split(r"(?<=\.) ", doc["text"]),
                       key=lambda sentence: len(wanted & _words(sentence)))
            sentences.append(f"{best} [{doc['id']}]")
        return " ".join(sentences) or "The corpus holds nothing on this question."


class ChatCompletionsModel:
    """A real model behind an OpenAI-compatible `/chat/completions` endpoint, with tools.

    Rate limits and server errors are `RetryableError`s (the run backs off and replays
    its finished steps); other refusals are permanent.
    """

    def __init__(self, api_key: str, *, base_url: str = "https://api.openai.com/v1",
                 model: str = "gpt-4o-mini", timeout: float = 60.0) -> None:
        self.api_key, self.base_url, self.model, self.timeout = (
            api_key, base_url.rstrip("/"), model, timeout)

    def complete(self, messages: list[dict[str, Any]],
                 tools: list[dict[str, Any]]) -> Turn:
        body = {"model": self.model, "messages": [_wire_message(m) for m in messages],
                "tools": [{"type": "function", "function": spec} for spec in tools]}
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.api_key}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read(2000).decode(errors="replace")
            if error.code == 429 or error.code >= 500:
                raise durakube.RetryableError(f"model endpoint {error.code}: {detail}") from None
            raise durakube.PermanentError(f"model endpoint {error.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError) as error:
            raise durakube.RetryableError(f"model endpoint unreachable: {error}") from None
        message = answer["choices"][0]["message"]
        return Turn(content=message.get("content"), tool_calls=[
            ToolCall(id=call["id"], name=call["function"]["name"],
                     arguments=json.loads(call["function"].get("arguments") or "{}"))
            for call in message.get("tool_calls") or []])


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as chat-completions endpoints take it."""
    if message["role"] == "assistant":
        wired: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            wired["tool_calls"] = [
                {"id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}
                for call in message["tool_calls"]]
        return wired
    if message["role"] == "tool":
        return {"role": "tool", "tool_call_id": message["tool_call_id"],
                "content": message["content"]}
    return {"role": message["role"], "content": message["content"]}


def default_model(environ: Mapping[str, str] = os.environ) -> Model:
    """The real model when `RESEARCH_AGENT_API_KEY` is set, else the offline one."""
    api_key = environ.get("RESEARCH_AGENT_API_KEY")
    if not api_key:
        return ScriptedModel()
    return ChatCompletionsModel(
        api_key, base_url=environ.get("RESEARCH_AGENT_BASE_URL", "https://api.openai.com/v1"),
        model=environ.get("RESEARCH_AGENT_MODEL", "gpt-4o-mini"))


# The agent loop.


def take_turn(model: Model, messages: list[dict[str, Any]]) -> Turn:
    return model.complete(messages, TOOL_SPECS)


def call_tool(tools: Mapping[str, Callable[..., Any]], call: ToolCall) -> Any:
    """Runs one tool call; a call the tools cannot take is answered, not raised, so the
    model can correct itself."""
    tool = tools.get(call.name)
    if tool is None:
        return {"error": f"no tool {call.name!r}; the tools are {sorted(tools)}"}
    try:
        return tool(**call.arguments)
    except TypeError as error:
        return {"error": f"bad arguments for {call.name}: {error}"}


def run_agent(ctx: durakube.SyncTaskContext, question: str, *, model: Model,
              tools: Mapping[str, Callable[..., Any]] = TOOLS,
              max_turns: int = DEFAULT_MAX_TURNS) -> dict[str, Any]:
    """Model turns and their tool calls, each a checkpointed step, until the model answers
    without calling a tool or `max_turns` turns were taken."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                      {"role": "user", "content": question}]
    calls: list[str] = []
    for number in range(1, max_turns + 1):
        turn: Turn = ctx.step(f"model-turn-{number}", take_turn, model, messages)
        messages.append(turn.as_message())
        if not turn.tool_calls:
            return {"answer": turn.content, "turns": number, "toolCalls": calls}
        for call in turn.tool_calls:
            result = ctx.step(f"tool:{call.name}:{call.id}", call_tool, tools, call)
            calls.append(call.id)
            messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                             "content": json.dumps(result)})
    return {"answer": None, "turns": max_turns, "toolCalls": calls,
            "stopped": f"no answer after {max_turns} turns"}


class ResearchInput(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    question: str = Field(min_length=1, max_length=2000)
    max_turns: int = Field(default=DEFAULT_MAX_TURNS, ge=1, le=20, alias="maxTurns")


@durakube.task(id="research-agent", timeout="10m",
               retry=durakube.Retry(max_attempts=4, factor=2, min_timeout="2s", max_timeout="30s"))
def research_agent(ctx: durakube.SyncTaskContext, payload: ResearchInput) -> dict[str, Any]:
    return run_agent(ctx, payload.question, model=default_model(), max_turns=payload.max_turns)

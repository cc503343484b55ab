"""Tool calling for any model, by constrained decoding.

Many chat templates know no tools, and a small model asked in prose rarely answers in a
parseable form. So aimi does it the same way for every model:

1. The prompt: a system message lists the functions as JSON and says how to answer (merged into
   the conversation's own system message, if it has one). Earlier assistant tool calls are shown
   to the model in that same answer format, and tool results as user turns that name the call.
2. The answer is constrained by a JSON Schema (a grammar in the engine): with ``tool_choice``
   ``required`` it must be ``{"name": ..., "arguments": {...}}`` for one of the tools, with a named
   function it must be that function, with ``auto`` it is either ``{"tool_call": {...}}`` or
   ``{"content": "..."}``. The arguments are constrained by the tool's own ``parameters`` schema.
3. The answer is parsed into ``tool_calls`` (``finish_reason: "tool_calls"``) or plain content.
   Streamed, the answer is held until it is complete, then sent as a tool-call delta with the
   ``id`` and ``name``, followed by the arguments in fragments.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aimi.engines.api import ChatTurn, Event, Finish, TextDelta, ToolCallDelta
from aimi.protocol.ids import new_id

ARGUMENT_FRAGMENT = 24


@dataclass(frozen=True)
class ToolPlan:
    """How one request's tools are offered to the model and read back from it."""

    tools: list[dict[str, Any]]
    choice: str  # "auto", "required", or a function name

    def _call_schema(self, tool: dict[str, Any]) -> dict[str, Any]:
        parameters = tool.get("parameters") or {"type": "object"}
        return {
            "type": "object",
            "properties": {"name": {"const": tool["name"]}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }

    def schema(self) -> dict[str, Any]:
        """The JSON Schema the answer is constrained to."""
        if self.choice not in ("auto", "required"):
            return self._call_schema(next(t for t in self.tools if t["name"] == self.choice))
        calls: dict[str, Any] = {"anyOf": [self._call_schema(t) for t in self.tools]}
        if self.choice == "required":
            return calls
        return {
            "anyOf": [
                {"type": "object", "properties": {"tool_call": calls}, "required": ["tool_call"],
                 "additionalProperties": False},
                {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"],
                 "additionalProperties": False},
            ]
        }  # fmt: skip

    def instructions(self) -> str:
        listing = json.dumps(self.tools, ensure_ascii=False)
        if self.choice == "auto":
            how = (
                'To call a function, answer with {"tool_call": {"name": <function name>, "arguments": '
                '<arguments object>}}. To answer directly, answer with {"content": <your answer>}.'
            )
        elif self.choice == "required":
            how = 'Call one of them: answer with {"name": <function name>, "arguments": <arguments object>}.'
        else:
            how = f'Call {self.choice}: answer with {{"name": "{self.choice}", "arguments": <arguments object>}}.'
        return f"You can call these functions, described in JSON:\n{listing}\n{how}"

    def prompt(self, turns: list[ChatTurn]) -> list[ChatTurn]:
        """The conversation with the tools described and tool turns in the answer format."""
        rendered: list[ChatTurn] = []
        for turn in turns:
            if turn.role == "assistant" and turn.tool_calls:
                # One answer per call: the format the model is asked for holds one call.
                for c in turn.tool_calls:
                    call = {"name": c.name, "arguments": _loads(c.arguments)}
                    answer = {"tool_call": call} if self.choice == "auto" else call
                    rendered.append(ChatTurn("assistant", json.dumps(answer, ensure_ascii=False)))
            elif turn.role == "tool":
                rendered.append(ChatTurn("user", f"Result of call {turn.tool_call_id}: {turn.content or ''}"))
            else:
                rendered.append(turn)
        instructions = self.instructions()
        if rendered and rendered[0].role == "system":
            return [ChatTurn("system", f"{rendered[0].content or ''}\n\n{instructions}"), *rendered[1:]]
        return [ChatTurn("system", instructions), *rendered]

    async def read(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """The engine's constrained answers, turned into tool calls or content per choice."""
        held: dict[int, list[str]] = {}
        async for event in events:
            if isinstance(event, TextDelta):
                held.setdefault(event.index, []).append(event.text)
            elif isinstance(event, Finish):
                for out in self._answer(event, "".join(held.pop(event.index, []))):
                    yield out
            else:
                yield event

    def _answer(self, finish: Finish, text: str) -> list[Event]:
        try:
            answer = json.loads(text)
        except json.JSONDecodeError:
            # Cut by max_tokens (or otherwise unparseable): the raw text, as it is.
            return [TextDelta(text, finish.index), finish] if text else [finish]
        if not isinstance(answer, dict):
            return [TextDelta(text, finish.index), Finish("stop", finish.index)]
        call = answer.get("tool_call") if self.choice == "auto" else answer
        if not isinstance(call, dict) or "name" not in call:
            content = answer.get("content", "")
            return [TextDelta(str(content), finish.index), Finish("stop", finish.index)]
        arguments = json.dumps(call.get("arguments", {}), ensure_ascii=False)
        call_id = "call_" + new_id()[:24]
        events: list[Event] = [ToolCallDelta(finish.index, 0, call_id, str(call["name"]), "")]
        events += [
            ToolCallDelta(finish.index, 0, None, None, arguments[i : i + ARGUMENT_FRAGMENT])
            for i in range(0, len(arguments), ARGUMENT_FRAGMENT)
        ]
        return [*events, Finish("tool_calls", finish.index)]


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments

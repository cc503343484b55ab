"""Canonical events to response bodies: a whole JSON answer, or SSE frames.

What a generation carries (text, logprobs, tool calls, usage) becomes the client's JSON here;
``protocol/responses.py`` describes the same shapes for the OpenAPI document.

Azure streams put ``usage`` on the chunk that carries the last ``finish_reason`` (the Azure SDK
reads it there). OpenAI streams carry usage only when ``stream_options.include_usage`` asks,
in a trailing chunk with empty ``choices``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aimi.engines.api import Event, Finish, TextDelta, TokenLogprob, ToolCall, ToolCallDelta, Usage
from aimi.pipeline.generation import Result
from aimi.protocol import sse
from aimi.protocol.ids import new_id
from aimi.safety.filter import Annotation


def logprobs_json(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's chat ``logprobs``: one entry per token, with its alternatives."""
    return {
        "content": [
            {
                "token": entry.token,
                "logprob": entry.logprob,
                "bytes": list(entry.bytes),
                "top_logprobs": [
                    {"token": top.token, "logprob": top.logprob, "bytes": list(top.bytes)} for top in entry.top
                ],
            }
            for entry in entries
        ]
    }


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    """A whole tool call, as the answer's ``message.tool_calls`` holds it."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


@dataclass
class Encoder:
    """Shapes one response. ``kind`` is ``chat`` or ``text`` (legacy completions)."""

    kind: Literal["chat", "text"]
    model: str
    azure: bool
    include_usage: bool = False
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    prompt_filter_results: list[dict[str, Any]] | None = None
    """Content safety's verdict on the prompt (Azure OpenAI's shape), when the policy annotates."""
    _filters: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            prefix = "" if self.azure else ("chatcmpl-" if self.kind == "chat" else "cmpl-")
            self.id = prefix + new_id()

    def _envelope(self, choices: list[dict[str, Any]], chunk: bool) -> dict[str, Any]:
        if self.kind == "chat":
            obj = "chat.completion.chunk" if chunk else "chat.completion"
        else:
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def whole(self, result: Result) -> dict[str, Any]:
        """The non-streamed answer."""
        choices: list[dict[str, Any]] = []
        for index in result.indexes:
            finish = result.finish.get(index)
            logprobs = logprobs_json(result.logprobs[index]) if index in result.logprobs else None
            if self.kind == "chat":
                calls = [tool_call_json(call) for call in result.tool_calls.get(index, ())]
                content = None if calls and not result.text(index) else result.text(index)
                message = {"role": "assistant", "content": content, "tool_calls": calls or None}
                choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": logprobs})
            else:
                choices.append({"index": index, "text": result.text(index), "finish_reason": finish, "logprobs": None})
            if index in result.filter_results:
                choices[-1]["content_filter_results"] = result.filter_results[index]
        body = self._envelope(choices, chunk=False)
        if self.prompt_filter_results is not None:
            body["prompt_filter_results"] = self.prompt_filter_results
        body["usage"] = usage_json(result.usage)
        return body

    def _chunk(
        self,
        index: int,
        text: str | None,
        finish: str | None,
        first: bool = False,
        logprobs: tuple[TokenLogprob, ...] = (),
        tool_call: ToolCallDelta | None = None,
    ) -> dict[str, Any]:
        choice: dict[str, Any]
        if self.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {"content": text or ""}
            if tool_call is not None:
                delta = {"tool_calls": [_tool_call_delta(tool_call)]}
            choice = {
                "index": index,
                "delta": delta,
                "finish_reason": finish,
                "logprobs": logprobs_json(logprobs) if logprobs else None,
            }
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        if index in self._filters and not first:
            choice["content_filter_results"] = self._filters[index]
        body = self._envelope([choice], chunk=True)
        if self.include_usage:
            body["usage"] = None
        return body

    async def stream(self, events: AsyncIterator[Event | Annotation]) -> AsyncIterator[bytes]:
        """SSE frames for a stream of events, ``data: [DONE]`` last."""
        started: set[int] = set()
        held: dict[str, Any] | None = None  # the last finish chunk, waiting for usage (Azure)
        if self.prompt_filter_results is not None:
            body = self._envelope([], chunk=True)
            body["prompt_filter_results"] = self.prompt_filter_results
            yield sse.frame(body)
        async for event in events:
            if isinstance(event, Annotation):
                self._filters[event.index] = event.results
                continue
            if held is not None and not isinstance(event, Usage):
                yield sse.frame(held)
                held = None
            if (
                isinstance(event, TextDelta | ToolCallDelta | Finish)
                and self.kind == "chat"
                and event.index not in started
            ):
                started.add(event.index)
                yield sse.frame(self._chunk(event.index, None, None, first=True))
            if isinstance(event, TextDelta):
                yield sse.frame(self._chunk(event.index, event.text, None, logprobs=event.logprobs))
            elif isinstance(event, ToolCallDelta):
                yield sse.frame(self._chunk(event.index, None, None, tool_call=event))
            elif isinstance(event, Finish):
                chunk = self._chunk(event.index, None, event.reason)
                if self.azure:
                    held = chunk
                else:
                    yield sse.frame(chunk)
            elif isinstance(event, Usage):
                if held is not None:
                    held["usage"] = usage_json(event)
                    yield sse.frame(held)
                    held = None
                elif self.include_usage or self.azure:
                    body = self._envelope([], chunk=True)
                    body["usage"] = usage_json(event)
                    yield sse.frame(body)
        if held is not None:
            yield sse.frame(held)
        yield sse.DONE


def _tool_call_delta(call: ToolCallDelta) -> dict[str, Any]:
    if call.id is None:
        return {"index": call.call_index, "function": {"arguments": call.arguments}}
    return {
        "index": call.call_index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def embeddings_body(model: str, vectors: list[list[float] | list[int] | str], prompt_tokens: int) -> dict[str, Any]:
    """The answer of both surfaces' embeddings routes."""
    return {
        "id": new_id(),
        "object": "list",
        "model": model,
        "data": [{"index": i, "object": "embedding", "embedding": v} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }

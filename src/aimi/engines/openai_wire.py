"""The OpenAI wire as engines speak it to a backend: a :class:`GenerationRequest` out as a
streamed chat or text completion request, the chunks that come back in as events.

Shared by the engines that talk OpenAI's JSON to what runs the model (llama.cpp's server core in
process, an upstream server over HTTP). What differs between those backends is a
:class:`Dialect`; transport, errors and usage bookkeeping stay with each engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aimi.engines.api import (
    ChatTurn,
    Event,
    Finish,
    FinishReason,
    GenerationRequest,
    JsonObject,
    OutputFormat,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_SAMPLING = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")


@dataclass(frozen=True, slots=True)
class Dialect:
    """Where one backend's OpenAI differs from another's."""

    max_tokens_unset: int | None = None
    """What ``max_tokens`` is sent as when the request sets none; None leaves it out."""
    legacy_logprobs: bool = True
    """Text completions ask logprobs the legacy way, ``logprobs: <alternatives>``; chat always asks
    ``logprobs: true`` with ``top_logprobs``."""
    watches_stop_tokens: bool = False
    """The engine watches for ``stop_token_ids`` itself, in the token ids that come with the
    logprobs: logprobs are asked whenever there are stop tokens, with ``timings_per_token`` (the
    per-token timings give the usage when the engine stops the generation). Otherwise
    ``stop_token_ids`` is sent as it is."""
    extra_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The names a pass-through parameter is sent under; one not listed goes under its own name."""


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    """A tool call as OpenAI's message carries it."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def turn_to_json(turn: ChatTurn) -> dict[str, Any]:
    """A canonical chat turn as an OpenAI message."""
    message: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.tool_calls:
        message["tool_calls"] = [tool_call_json(call) for call in turn.tool_calls]
    if turn.tool_call_id is not None:
        message["tool_call_id"] = turn.tool_call_id
    return message


def response_format_json(output: OutputFormat) -> dict[str, Any]:
    """OpenAI's ``response_format`` for a constrained output."""
    if isinstance(output, JsonObject):
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": output.name, "schema": output.schema}}


def request_payload(request: GenerationRequest, dialect: Dialect, model: str | None = None) -> dict[str, Any]:
    """The body of a streamed ``/chat/completions`` (``messages``) or ``/completions`` (``prompt``)
    request, with usage in the stream; ``model`` when the backend wants one named."""
    chat = request.messages is not None
    payload: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    if model is not None:
        payload["model"] = model
    if request.messages is not None:
        payload["messages"] = [turn_to_json(turn) for turn in request.messages]
    else:
        payload["prompt"] = request.prompt or ""
    max_tokens = request.max_tokens if request.max_tokens is not None else dialect.max_tokens_unset
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    for name in _SAMPLING:
        value = getattr(request, name)
        if value is not None:
            payload[name] = value
    if request.stop:
        payload["stop"] = request.stop
    watched = dialect.watches_stop_tokens and bool(request.stop_token_ids)
    if request.logprobs is not None or watched:
        # At least one alternative: llama.cpp sends no logprobs at all for 0. The extra ones are
        # dropped when the chunks are read.
        alternatives = max(1, request.logprobs or 0)
        if chat or not dialect.legacy_logprobs:
            payload["logprobs"] = True
            payload["top_logprobs"] = alternatives
        else:
            payload["logprobs"] = alternatives
        if dialect.watches_stop_tokens:
            payload["timings_per_token"] = watched
    if request.logit_bias:
        payload["logit_bias"] = {str(token): bias for token, bias in request.logit_bias.items()}
    if request.response_format is not None:
        payload["response_format"] = response_format_json(request.response_format)
    if request.stop_token_ids and not dialect.watches_stop_tokens:
        payload["stop_token_ids"] = list(request.stop_token_ids)
    for key, value in request.extra.items():
        for name in dialect.extra_names.get(key, (key,)):
            payload[name] = value
    return payload


def _bytes(token: str, raw: Any) -> tuple[int, ...]:
    return tuple(raw) if raw is not None else tuple(token.encode())


def _top(entry: dict[str, Any]) -> TopLogprob:
    token = str(entry.get("token", ""))
    return TopLogprob(token, entry.get("logprob"), _bytes(token, entry.get("bytes")))


def logprobs_of(choice: dict[str, Any], alternatives: int) -> tuple[TokenLogprob, ...]:
    """Per-token logprobs of a chunk's choice, from the chat shape (``content``) or the legacy
    completions shape (``tokens``, ``token_logprobs``, ``top_logprobs``), with at most
    ``alternatives`` alternatives each."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return ()
    content = logprobs.get("content")
    if isinstance(content, list):
        entries = []
        for entry in content:
            if isinstance(entry, dict):
                chosen = _top(entry)
                tops = tuple(_top(top) for top in (entry.get("top_logprobs") or [])[:alternatives])
                entries.append(TokenLogprob(chosen.token, chosen.logprob, chosen.bytes, tops))
        return tuple(entries)
    tokens = logprobs.get("tokens")
    if not isinstance(tokens, list):
        return ()
    values = logprobs.get("token_logprobs") or []
    ranks = logprobs.get("top_logprobs") or []
    legacy = []
    for i, token in enumerate(tokens):
        rank = ranks[i] if i < len(ranks) and isinstance(ranks[i], dict) else {}
        ranked = sorted(rank.items(), key=lambda item: -float(item[1]))[:alternatives]
        chosen = _top({"token": token, "logprob": values[i] if i < len(values) else None})
        tops = tuple(_top({"token": t, "logprob": lp}) for t, lp in ranked)
        legacy.append(TokenLogprob(chosen.token, chosen.logprob, chosen.bytes, tops))
    return tuple(legacy)


def chunk_events(chunk: dict[str, Any], chat: bool, logprobs: int | None) -> list[Event]:
    """The events of one streamed chunk: text (with its logprobs when ``logprobs`` asked for
    them), tool-call deltas, finish reasons, and its usage when it carries one."""
    events: list[Event] = []
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        index = int(choice.get("index") or 0)
        delta = (choice.get("delta") or {}) if chat else {}
        text = delta.get("content") if chat else choice.get("text")
        if isinstance(text, str) and text:
            events.append(TextDelta(text, index, () if logprobs is None else logprobs_of(choice, logprobs)))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            events.append(
                ToolCallDelta(
                    index,
                    int(call.get("index") or 0),
                    call.get("id"),
                    function.get("name"),
                    str(function.get("arguments") or ""),
                )
            )
        reason = choice.get("finish_reason")
        if reason:
            events.append(Finish(_FINISH_REASONS.get(str(reason), "stop"), index))
    usage = chunk.get("usage")
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        events.append(Usage(int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"])))
    return events

"""The OpenAI wire as engines speak it to a backend: messages out, logprobs back.

Shared by the engines that talk OpenAI's JSON to what runs the model (llama.cpp's server core in
process, an upstream server over HTTP).
"""

from __future__ import annotations

from typing import Any

from aimi.engines.api import ChatTurn


def turn_to_json(turn: ChatTurn) -> dict[str, Any]:
    """A canonical chat turn as an OpenAI message."""
    message: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.tool_calls:
        message["tool_calls"] = list(turn.tool_calls)
    if turn.tool_call_id is not None:
        message["tool_call_id"] = turn.tool_call_id
    return message


def _clean(entry: dict[str, Any]) -> dict[str, Any]:
    token = str(entry.get("token", ""))
    raw = entry.get("bytes")
    return {"token": token, "logprob": entry.get("logprob"), "bytes": raw if raw is not None else list(token.encode())}


def logprobs_of(choice: dict[str, Any], alternatives: int) -> tuple[dict[str, Any], ...]:
    """Per-token logprobs in OpenAI's chat shape, from the chat shape (``content``) or the legacy
    completions shape (``tokens``, ``token_logprobs``, ``top_logprobs``)."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return ()
    content = logprobs.get("content")
    if isinstance(content, list):
        return tuple(
            {**_clean(entry), "top_logprobs": [_clean(top) for top in (entry.get("top_logprobs") or [])[:alternatives]]}
            for entry in content
            if isinstance(entry, dict)
        )
    tokens = logprobs.get("tokens")
    if not isinstance(tokens, list):
        return ()
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    entries = []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        ranked = sorted(top.items(), key=lambda item: -float(item[1]))[:alternatives]
        entries.append(
            {
                **_clean({"token": token, "logprob": values[i] if i < len(values) else None}),
                "top_logprobs": [_clean({"token": t, "logprob": lp}) for t, lp in ranked],
            }
        )
    return tuple(entries)

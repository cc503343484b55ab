"""Wire requests of either surface, turned into the engine's canonical request.

Everything a deployment cannot do is found here, before the engine sees anything, and
answered with one 422 listing every unsupported parameter with its ``loc`` and ``input``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aimi.deployments.registry import Deployment
from aimi.engines.api import ChatTurn, GenerationRequest
from aimi.pipeline import extra_parameters
from aimi.pipeline.extra_parameters import Policy
from aimi.protocol import chat as wire
from aimi.protocol.completions import AzureCompletionRequest, OpenAICompletionRequest
from aimi.protocol.errors import invalid_request, parameter_not_supported

Problem = tuple[tuple[str | int, ...], Any, str]


def valid_unicode(text: str, field: str) -> str:
    """``text`` if it can be encoded: JSON escapes can carry lone surrogates no engine accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid_request(
            f"`{field}` is not valid Unicode: it holds a lone surrogate at character {exc.start}", param=field
        ) from None
    return text


def _text(content: str | list[Any] | None, field: str) -> str | None:
    if content is not None and not isinstance(content, str):
        content = "\n".join(part.text for part in content if isinstance(part, wire.TextPart))
    return None if content is None else valid_unicode(content, field)


def _turns(messages: list[Any], deployment: Deployment, problems: list[Problem]) -> list[ChatTurn]:
    turns: list[ChatTurn] = []
    for i, message in enumerate(messages):
        if isinstance(message, wire.UserMessage) and isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if isinstance(part, wire.ImagePart) and not deployment.profile.vision:
                    problems.append(
                        (
                            ("messages", i, "content", j, "type"),
                            part.type,
                            f"deployment '{deployment.name}' does not accept images",
                        )
                    )
                elif isinstance(part, wire.AudioPart | wire.AudioUrlPart) and not deployment.profile.audio:
                    problems.append(
                        (
                            ("messages", i, "content", j, "type"),
                            part.type,
                            f"deployment '{deployment.name}' does not accept audio",
                        )
                    )
        if isinstance(message, wire.SystemMessage | wire.DeveloperMessage):
            turns.append(ChatTurn("system", _text(message.content, f"messages.{i}.content")))
        elif isinstance(message, wire.UserMessage):
            turns.append(ChatTurn("user", _text(message.content, f"messages.{i}.content")))
        elif isinstance(message, wire.AssistantMessage):
            calls = tuple(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": call.function.arguments
                        if isinstance(call.function.arguments, str)
                        else json.dumps(call.function.arguments),
                    },
                }
                for call in message.tool_calls or ()
            )
            turns.append(ChatTurn("assistant", _text(message.content, f"messages.{i}.content"), calls))
        else:
            turns.append(
                ChatTurn("tool", _text(message.content, f"messages.{i}.content"), tool_call_id=message.tool_call_id)
            )
    if not deployment.profile.system_role:
        turns = fold_system(turns)
    return turns


def fold_system(turns: list[ChatTurn]) -> list[ChatTurn]:
    """System turns folded into the first user turn, for templates that know no system role."""
    system = "\n\n".join(t.content or "" for t in turns if t.role == "system")
    rest = [t for t in turns if t.role != "system"]
    if not system:
        return rest
    for i, turn in enumerate(rest):
        if turn.role == "user":
            rest[i] = ChatTurn("user", f"{system}\n\n{turn.content or ''}")
            return rest
    return [ChatTurn("user", system), *rest]


def _max_tokens(requested: int | None, field: str, deployment: Deployment) -> int:
    cap = deployment.max_tokens
    if requested is None:
        return cap
    if requested > cap:
        raise invalid_request(
            f"`{field}` must be at most {cap} for deployment '{deployment.name}'; got {requested}", param=field
        )
    return requested


def _stop(stop: str | list[str] | None) -> list[str]:
    stops = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
    return [valid_unicode(s, "stop") for s in stops]


def _sampling(temperature: float | None, top_p: float | None, deployment: Deployment) -> tuple[float, float | None]:
    if top_p == 0:
        # top_p 0 keeps only the most likely token: greedy decoding.
        return 0.0, None
    return (deployment.limits.default_temperature if temperature is None else temperature), top_p


def _unsupported(body: Any, fields: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    for name, why in fields.items():
        value = getattr(body, name, None)
        if value is not None:
            problems.append(((name,), value.model_dump(by_alias=True) if hasattr(value, "model_dump") else value, why))
    return problems


def chat_request(body: wire.AzureChatRequest, policy: Policy, deployment: Deployment) -> GenerationRequest:
    """The canonical request for a chat body of either surface."""
    if len(body.messages) > deployment.limits.max_messages:
        raise invalid_request(
            f"`messages` may hold at most {deployment.limits.max_messages} messages; got {len(body.messages)}",
            param="messages",
        )
    problems: list[Problem] = []
    turns = _turns(body.messages, deployment, problems)
    if body.response_format is not None and body.response_format.type != "text":
        problems.append(
            (
                ("response_format",),
                body.response_format.type,
                f"response_format '{body.response_format.type}' is not supported by this deployment",
            )
        )
    if body.tools is not None:
        problems.append(
            (("tools",), [t.function.name for t in body.tools], "tools are not supported by this deployment")
        )
    if body.tool_choice is not None and body.tool_choice != "none":
        choice = body.tool_choice if isinstance(body.tool_choice, str) else body.tool_choice.model_dump()
        problems.append((("tool_choice",), choice, "tool_choice is not supported by this deployment"))
    if body.modalities is not None and "audio" in body.modalities:
        problems.append((("modalities",), body.modalities, "this deployment only produces text"))
    max_tokens_field, requested = "max_tokens", body.max_tokens
    if isinstance(body, wire.OpenAIChatRequest):
        if body.n is not None and body.n > 1:
            problems.append((("n",), body.n, "n > 1 is not supported by this deployment"))
        if body.logprobs:
            problems.append((("logprobs",), body.logprobs, "logprobs are not supported by this deployment"))
        if body.top_logprobs:
            problems.append((("top_logprobs",), body.top_logprobs, "logprobs are not supported by this deployment"))
        if body.logit_bias:
            problems.append((("logit_bias",), body.logit_bias, "logit_bias is not supported by this deployment"))
        if body.max_completion_tokens is not None:
            max_tokens_field, requested = "max_completion_tokens", body.max_completion_tokens
    if problems:
        raise parameter_not_supported(problems)
    extras = extra_parameters.apply(dict(body.model_extra or {}), policy, deployment.engine.capabilities)
    temperature, top_p = _sampling(body.temperature, body.top_p, deployment)
    return GenerationRequest(
        request_id=uuid.uuid4().hex,
        max_tokens=_max_tokens(requested, max_tokens_field, deployment),
        messages=turns,
        temperature=temperature,
        top_p=top_p,
        seed=body.seed,
        stop=_stop(body.stop),
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        extra=extras,
    )


def completion_request(body: AzureCompletionRequest, policy: Policy, deployment: Deployment) -> GenerationRequest:
    """The canonical request for a text completion body of either surface."""
    problems: list[Problem] = []
    prompt = body.prompt[0] if isinstance(body.prompt, list) and len(body.prompt) == 1 else body.prompt
    if not isinstance(prompt, str):
        problems.append((("prompt",), prompt, "only a single text prompt is supported"))
    if isinstance(body, OpenAICompletionRequest):
        problems += _unsupported(
            body,
            {
                "suffix": "suffix (fill-in-the-middle) is not supported by this deployment",
                "logit_bias": "logit_bias is not supported by this deployment",
            },
        )
        if body.n is not None and body.n > 1:
            problems.append((("n",), body.n, "n > 1 is not supported by this deployment"))
        if body.best_of is not None and body.best_of > 1:
            problems.append((("best_of",), body.best_of, "best_of > 1 is not supported by this deployment"))
        if body.logprobs:
            problems.append((("logprobs",), body.logprobs, "logprobs are not supported by this deployment"))
        if body.echo:
            problems.append((("echo",), body.echo, "echo is not supported by this deployment"))
    if problems:
        raise parameter_not_supported(problems)
    extras = extra_parameters.apply(dict(body.model_extra or {}), policy, deployment.engine.capabilities)
    temperature, top_p = _sampling(body.temperature, body.top_p, deployment)
    assert isinstance(prompt, str)  # anything else was refused above
    return GenerationRequest(
        request_id=uuid.uuid4().hex,
        max_tokens=_max_tokens(body.max_tokens, "max_tokens", deployment),
        prompt=valid_unicode(prompt, "prompt"),
        temperature=temperature,
        top_p=top_p,
        seed=body.seed,
        stop=_stop(body.stop),
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        extra=extras,
    )

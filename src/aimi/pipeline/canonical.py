"""Wire requests of either surface, turned into the engine's canonical request.

Everything a deployment cannot do is found here, before the engine sees anything, and
answered with one 422 listing every unsupported parameter with its ``loc`` and ``input``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from aimi.deployments.registry import Deployment
from aimi.engines.api import ChatTurn, GenerationRequest, JsonObject, JsonSchema, OutputFormat, ToolCall
from aimi.pipeline import extra_parameters
from aimi.pipeline.controls import GATEWAY_PARAMETERS, Controls, Work, read_controls
from aimi.pipeline.extra_parameters import Policy
from aimi.pipeline.schema import MAX_SCHEMA_BYTES, check_schema
from aimi.pipeline.tools import ToolPlan
from aimi.protocol import chat as wire
from aimi.protocol.completions import AzureCompletionRequest, OpenAICompletionRequest
from aimi.protocol.errors import invalid_request, parameter_not_supported
from aimi.protocol.ids import new_id

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
                ToolCall(
                    call.id,
                    call.function.name,
                    call.function.arguments
                    if isinstance(call.function.arguments, str)
                    else json.dumps(call.function.arguments),
                )
                for call in message.tool_calls or ()
            )
            turns.append(ChatTurn("assistant", _text(message.content, f"messages.{i}.content"), calls))
        else:
            turns.append(
                ChatTurn("tool", _text(message.content, f"messages.{i}.content"), tool_call_id=message.tool_call_id)
            )
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


def _max_tokens(requested: int | None, field: str, deployment: Deployment) -> int | None:
    """The request's own limit, checked against the deployment's. None (none asked) lets the engine
    generate until the model stops or the context is full: an upstream server knows its own
    context better than a default aimi would send it."""
    cap = deployment.max_tokens
    if requested is None:
        default = deployment.defaults.max_tokens
        return None if default is None else min(default, cap)
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
    if top_p is None:
        top_p = deployment.defaults.top_p
    return (deployment.defaults.temperature if temperature is None else temperature), top_p


SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, "
    "unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity."
)


def with_safe_prompt(turns: list[ChatTurn]) -> list[ChatTurn]:
    """Mistral's safety prompt first, merged into a leading system message (Mistral templates allow
    only one, at the start)."""
    if turns and turns[0].role == "system":
        return [ChatTurn("system", f"{SAFE_PROMPT}\n\n{turns[0].content or ''}"), *turns[1:]]
    return [ChatTurn("system", SAFE_PROMPT), *turns]


def _common(controls: Controls, deployment: Deployment, problems: list[Problem], stream: bool) -> None:
    """Checks shared by chat and text completions: limits (400) and capabilities (422)."""
    limits, caps = deployment.limits, deployment.engine.capabilities
    if controls.n > limits.max_n:
        raise invalid_request(f"`n` must be at most {limits.max_n}; got {controls.n}", param="n")
    if controls.best_of is not None:
        if controls.best_of > limits.max_best_of:
            raise invalid_request(
                f"`best_of` must be at most {limits.max_best_of}; got {controls.best_of}", param="best_of"
            )
        if controls.best_of < controls.n:
            raise invalid_request(
                f"`best_of` must be at least `n` ({controls.n}); got {controls.best_of}", param="best_of"
            )
        if stream and controls.best_of > 1:
            raise invalid_request("`best_of` cannot be used with `stream: true`", param="best_of")
    controls.token_bias()  # malformed keys are a 400, whatever the engine supports
    if controls.logit_bias and len(controls.logit_bias) > limits.max_logit_bias:
        raise invalid_request(
            f"`logit_bias` may hold at most {limits.max_logit_bias} tokens; got {len(controls.logit_bias)}",
            param="logit_bias",
        )
    if controls.use_beam_search:
        problems.append((("use_beam_search",), True, "beam search is not supported by this deployment's engine"))
    if controls.skip_special_tokens is False:
        problems.append(
            (("skip_special_tokens",), False, "this deployment's engine always leaves special tokens out of the text")
        )
    if controls.stop_token_ids and not caps.stop_token_ids:
        problems.append(
            (
                ("stop_token_ids",),
                controls.stop_token_ids,
                "stop_token_ids is not supported by this deployment's engine",
            )
        )
    if controls.logit_bias and not caps.logit_bias:
        problems.append(
            (("logit_bias",), controls.logit_bias, "logit_bias is not supported by this deployment's engine")
        )
    wants_logprobs = controls.top_logprobs_count() is not None or (controls.best_of or 1) > controls.n
    if wants_logprobs and not caps.logprobs:
        problems.append((("logprobs",), controls.logprobs, "logprobs are not supported by this deployment's engine"))


def _tool_plan(body: wire.AzureChatRequest, deployment: Deployment, problems: list[Problem]) -> ToolPlan | None:
    choice = body.tool_choice
    if body.tools is None:
        if choice is not None and choice not in ("none", "auto"):
            shown = choice if isinstance(choice, str) else "a named function"
            raise invalid_request(f"`tool_choice` is {shown!r} but there are no `tools`", param="tool_choice")
        return None
    if choice == "none":
        return None
    limits = deployment.limits
    if len(body.tools) > limits.max_tools:
        raise invalid_request(
            f"`tools` may hold at most {limits.max_tools} tools; got {len(body.tools)}", param="tools"
        )
    tools = [t.function.model_dump(exclude_none=True) for t in body.tools]
    size = len(json.dumps(tools))
    if size > MAX_SCHEMA_BYTES:
        raise invalid_request(f"`tools` is {size} bytes of JSON; the limit is {MAX_SCHEMA_BYTES}", param="tools")
    for i, tool in enumerate(tools):
        if "parameters" in tool:
            check_schema(tool["parameters"], param=f"tools.{i}.function.parameters")
    names = [t["name"] for t in tools]
    if len(set(names)) != len(names):
        raise invalid_request("`tools` names a function twice", param="tools")
    if isinstance(choice, wire.NamedToolChoice):
        name = choice.function.get("name", "")
        if name not in names:
            raise invalid_request(f"`tool_choice` names '{name}', which is not in `tools`", param="tool_choice")
        mode = name
    else:
        mode = choice or "auto"
    if body.response_format is not None and body.response_format.type != "text":
        raise invalid_request("`response_format` cannot be combined with `tools`", param="response_format")
    if not deployment.profile.tools:
        problems.append((("tools",), names, f"deployment '{deployment.name}' does not take tools"))
    elif not deployment.engine.capabilities.structured_output:
        problems.append((("tools",), names, "tools need constrained decoding, which this deployment's engine lacks"))
    return ToolPlan(tools, mode)


def _response_format(
    body: wire.AzureChatRequest, deployment: Deployment, problems: list[Problem]
) -> OutputFormat | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if not deployment.profile.json_output:
        problems.append(
            (
                ("response_format",),
                fmt.type,
                f"deployment '{deployment.name}' does not take response_format '{fmt.type}'",
            )
        )
        return None
    if not deployment.engine.capabilities.structured_output:
        problems.append(
            (
                ("response_format",),
                fmt.type,
                f"response_format '{fmt.type}' needs constrained decoding, which this deployment's engine lacks",
            )
        )
        return None
    if fmt.type == "json_object":
        return JsonObject()
    if fmt.json_schema is None:
        raise invalid_request(
            "`response_format.json_schema` is required when `response_format.type` is 'json_schema'",
            param="response_format.json_schema",
        )
    check_schema(fmt.json_schema.schema_, param="response_format.json_schema.schema")
    return JsonSchema(fmt.json_schema.name, fmt.json_schema.schema_)


def _fields(body: BaseModel, *names: str) -> dict[str, Any]:
    """The named fields this surface's schema defines and the client set; on a surface without
    them they are extras, already judged by the extra-parameters policy."""
    return {n: getattr(body, n) for n in names if n in type(body).model_fields and getattr(body, n) is not None}


def _asked_max_tokens(body: wire.AzureChatRequest) -> tuple[str, int | None]:
    """The chat's limit and the field that set it: ``max_completion_tokens`` is OpenAI's newer name
    for ``max_tokens``. On /v1 it wins over ``max_tokens``; on the Azure surface two different
    values are refused rather than guessed between."""
    if body.max_completion_tokens is None:
        return "max_tokens", body.max_tokens
    both = body.max_tokens is not None and body.max_tokens != body.max_completion_tokens
    if both and not isinstance(body, wire.OpenAIChatRequest):
        raise invalid_request(
            "`max_tokens` and `max_completion_tokens` are the same limit: give one, or the same value to both; "
            f"got {body.max_tokens} and {body.max_completion_tokens}",
            param="max_completion_tokens",
        )
    return "max_completion_tokens", body.max_completion_tokens


def chat_request(body: wire.AzureChatRequest, policy: Policy, deployment: Deployment) -> Work:
    """The work for a chat body of either surface."""
    if len(body.messages) > deployment.limits.max_messages:
        raise invalid_request(
            f"`messages` may hold at most {deployment.limits.max_messages} messages; got {len(body.messages)}",
            param="messages",
        )
    gateway, extras = extra_parameters.apply(
        dict(body.model_extra or {}), policy, deployment.engine.capabilities, GATEWAY_PARAMETERS
    )
    known = _fields(body, "n", "logprobs", "top_logprobs", "logit_bias")
    controls = read_controls({**known, **gateway})
    problems: list[Problem] = []
    turns = _turns(body.messages, deployment, problems)
    stream = bool(body.stream)
    _common(controls, deployment, problems, stream)
    response_format = _response_format(body, deployment, problems)
    tools = _tool_plan(body, deployment, problems)
    if tools is not None and controls.top_logprobs_count() is not None:
        raise invalid_request("`logprobs` cannot be combined with `tools`", param="logprobs")
    if tools is not None and (controls.best_of or 1) > controls.n:
        # best_of ranks by log-probabilities, which a parsed tool call no longer has.
        raise invalid_request("`best_of` cannot be combined with `tools`", param="best_of")
    if body.modalities is not None and "audio" in body.modalities:
        problems.append((("modalities",), body.modalities, "this deployment only produces text"))
    if problems:
        raise parameter_not_supported(problems)
    if controls.safe_prompt:
        turns = with_safe_prompt(turns)
    if tools is not None:
        turns = tools.prompt(turns)
        response_format = JsonSchema("tool_call", tools.schema())
    if not deployment.profile.system_role:
        # Last, so the safety prompt and the tool instructions are folded too.
        turns = fold_system(turns)
    max_tokens_field, requested = _asked_max_tokens(body)
    temperature, top_p = _sampling(body.temperature, body.top_p, deployment)
    request = GenerationRequest(
        request_id=new_id(),
        max_tokens=_max_tokens(requested, max_tokens_field, deployment),
        messages=turns,
        temperature=temperature,
        top_p=top_p,
        seed=body.seed,
        stop=_stop(body.stop),
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        logprobs=controls.top_logprobs_count(),
        logit_bias=controls.token_bias(),
        response_format=response_format,
        stop_token_ids=list(controls.stop_token_ids or ()),
        extra=extras,
        stream=stream,
    )
    return Work(request, n=controls.n, best_of=controls.best_of, tools=tools)


def completion_request(body: AzureCompletionRequest, policy: Policy, deployment: Deployment) -> Work:
    """The work for a text completion body of either surface."""
    gateway, extras = extra_parameters.apply(
        dict(body.model_extra or {}), policy, deployment.engine.capabilities, GATEWAY_PARAMETERS - {"logprobs"}
    )
    known = _fields(body, "n", "best_of", "logit_bias")
    controls = read_controls({**known, **gateway})
    problems: list[Problem] = []
    prompt = body.prompt[0] if isinstance(body.prompt, list) and len(body.prompt) == 1 else body.prompt
    if not isinstance(prompt, str):
        problems.append((("prompt",), prompt, "only a single text prompt is supported"))
    stream = bool(body.stream)
    _common(controls, deployment, problems, stream)
    if isinstance(body, OpenAICompletionRequest):
        if body.suffix is not None:
            problems.append(
                (("suffix",), body.suffix, "suffix (fill-in-the-middle) is not supported by this deployment")
            )
        if body.logprobs is not None:
            problems.append(
                (
                    ("logprobs",),
                    body.logprobs,
                    "logprobs on text completions are not supported; chat completions have them",
                )
            )
        if body.echo:
            problems.append((("echo",), body.echo, "echo is not supported by this deployment"))
    if controls.safe_prompt:
        problems.append(
            (("safe_prompt",), True, "safe_prompt applies to chat completions; a text prompt has no system message")
        )
    if problems:
        raise parameter_not_supported(problems)
    assert isinstance(prompt, str)  # anything else was refused above
    temperature, top_p = _sampling(body.temperature, body.top_p, deployment)
    request = GenerationRequest(
        request_id=new_id(),
        max_tokens=_max_tokens(body.max_tokens, "max_tokens", deployment),
        prompt=valid_unicode(prompt, "prompt"),
        temperature=temperature,
        top_p=top_p,
        seed=body.seed,
        stop=_stop(body.stop),
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        logit_bias=controls.token_bias(),
        stop_token_ids=list(controls.stop_token_ids or ()),
        extra=extras,
        stream=stream,
    )
    return Work(request, n=controls.n, best_of=controls.best_of)

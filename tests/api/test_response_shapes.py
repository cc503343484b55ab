"""The bodies aimi answers with are the ones its OpenAPI document describes.

``protocol/responses.py`` describes the answers; ``surfaces/encode.py`` and the handlers build
them as plain dicts. Every body built here, by the real encoder over scripted events and by the
app over the fake engine, is validated against a strict copy of its model (no undeclared field,
at any depth; no type coercion). Across all of them, a field a body always carries must be
declared required, and a field no body carries must not be declared: so a field added to one
side and not the other fails.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import operator
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from aimi.deployments.build import from_settings
from aimi.deployments.profile import ModelProfile
from aimi.engines.api import Finish, TextDelta, TokenLogprob, ToolCallDelta, TopLogprob, Usage
from aimi.pipeline.generation import Result
from aimi.protocol import responses as out
from aimi.protocol.sse import DONE
from aimi.safety.blocklist import Blocklist
from aimi.safety.filter import Annotation
from aimi.safety.policy import Action, SafetyPolicy
from aimi.settings import Settings
from aimi.surfaces.encode import Encoder
from aimi.surfaces.json_response import JSONResponse
from tests.conftest import FAKE_MODEL, InProcessServer, in_process

Sample = tuple[str, type[BaseModel], bytes]
RESULTS = {"hate": {"filtered": False, "severity": "safe"}, "custom_blocklists": {"filtered": False, "details": []}}
PROMPT_RESULTS = [{"prompt_index": 0, "content_filter_results": RESULTS}]
CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@dataclass
class StrictCopies:
    """Copies of response models that forbid undeclared fields and coercion, all the way down,
    and the fields each validated body carried, per original model."""

    copies: dict[type[BaseModel], type[BaseModel]] = field(default_factory=dict)
    originals: dict[type[BaseModel], type[BaseModel]] = field(default_factory=dict)
    carried: dict[type[BaseModel], list[frozenset[str]]] = field(default_factory=dict)

    def of(self, model: type[BaseModel]) -> type[BaseModel]:
        if model not in self.copies:
            fields: dict[str, Any] = {
                name: (self._type(info.annotation), ... if info.is_required() else info.default)
                for name, info in model.model_fields.items()
            }
            copy = create_model(f"Strict{model.__name__}", __config__=ConfigDict(extra="forbid", strict=True), **fields)
            self.copies[model], self.originals[copy] = copy, model
        return self.copies[model]

    def _type(self, annotation: Any) -> Any:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.of(annotation)
        origin, args = get_origin(annotation), get_args(annotation)
        if origin in (Union, UnionType):
            return functools.reduce(operator.or_, [self._type(arg) for arg in args])
        if origin in (list, dict):
            return origin[tuple(self._type(arg) for arg in args)]
        if origin is None or origin is Literal:
            return annotation
        raise AssertionError(f"teach StrictCopies the annotation {annotation!r}")

    def validate(self, model: type[BaseModel], raw: bytes) -> None:
        self._record(self.of(model).model_validate_json(raw))

    def _record(self, value: Any) -> None:
        if isinstance(value, BaseModel):
            self.carried.setdefault(self.originals[type(value)], []).append(frozenset(value.model_fields_set))
            for name in value.model_fields_set:
                self._record(getattr(value, name))
        elif isinstance(value, list):
            for item in value:
                self._record(item)


def _frames(raw: bytes) -> list[bytes]:
    assert raw.endswith(DONE), raw[-200:]
    return [frame.removeprefix(b"data: ") for frame in raw[: -len(DONE)].split(b"\n\n") if frame]


# --- bodies from the encoder, over scripted events ------------------------------------------------


def _logprob(token: str, logprob: float | None, *alternatives: tuple[str, float]) -> TokenLogprob:
    tops = tuple(TopLogprob(text, value, tuple(text.encode())) for text, value in alternatives)
    return TokenLogprob(token, logprob, tuple(token.encode()), tops)


def _events(kind: Literal["chat", "text"]) -> list[Any]:
    """Choice 0 text with logprobs and content-safety results, choice 1 text cut by length,
    choice 2 (chat) two tool calls, choice 3 cut by content safety; then usage."""
    events: list[Any] = [
        TextDelta("Hé", 0, (_logprob("Hé", -0.25, ("Hé", -0.25), ("H", -1.5)),)),
        Annotation(0, RESULTS),
        TextDelta("llo", 0, (_logprob("llo", None),)),
        TextDelta("other", 1),
        Finish("stop", 0),
        Finish("length", 1),
    ]
    if kind == "chat":
        events += [
            ToolCallDelta(2, 0, "call_a", "get_weather", ""),
            ToolCallDelta(2, 0, None, None, '{"city": '),
            ToolCallDelta(2, 0, None, None, '"Paris"}'),
            ToolCallDelta(2, 1, "call_b", "get_time", "{}"),
            Finish("tool_calls", 2),
        ]
    events += [Annotation(3, {**RESULTS, "violence": {"filtered": True, "severity": "high"}})]
    events += [Finish("content_filter", 3), Usage(5, 9)]
    return events


async def _scripted(events: list[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event


def _whole(encoder: Encoder, events: list[Any]) -> bytes:
    result = Result()
    for event in events:
        result.add(event)
    rendered: bytes = JSONResponse(None).render(encoder.whole(result))
    return rendered


async def _encoded() -> list[Sample]:
    samples: list[Sample] = []
    kinds: dict[Literal["chat", "text"], tuple[type[BaseModel], type[BaseModel]]] = {
        "chat": (out.ChatCompletion, out.ChatCompletionChunk),
        "text": (out.TextCompletion, out.TextCompletion),
    }
    for (kind, (whole, chunk)), azure, usage, prompt in itertools.product(
        kinds.items(), (True, False), (True, False), (None, PROMPT_RESULTS)
    ):
        label = f"{kind} azure={azure} include_usage={usage} prompt_filter_results={prompt is not None}"
        encoder = Encoder(kind, "m", azure, usage, prompt_filter_results=prompt)
        raw = b"".join([frame async for frame in encoder.stream(_scripted(_events(kind)))])
        samples += [(f"{label} chunk", chunk, frame) for frame in _frames(raw)]
        samples.append(
            (label, whole, _whole(Encoder(kind, "m", azure, usage, prompt_filter_results=prompt), _events(kind)))
        )
    # A lone choice with nothing but a tool call, and an answer with no choice's events at all.
    only_call = [ToolCallDelta(0, 0, "call_c", "f", "{}"), Finish("tool_calls", 0), Usage(1, 1)]
    samples.append(("tool call only", out.ChatCompletion, _whole(Encoder("chat", "m", False), only_call)))
    samples.append(("nothing", out.ChatCompletion, _whole(Encoder("chat", "m", True), [])))
    return samples


# --- bodies from the app, over the fake engine ----------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    [base] = from_settings(Settings(engine="fake"), FAKE_MODEL)
    annotating = SafetyPolicy(
        classifier="blocklist", blocklists=(Blocklist("rules", terms=("bluebird",)),), action=Action.ANNOTATE
    )

    def spec(name: str, options: dict[str, Any], **changes: Any) -> Any:
        config = replace(base.engine_config, options=options)
        return replace(base, name=name, display_name=name.title(), engine_config=config, **changes)

    specs = [
        spec("chat", {"text": "Plain words, café and 東京."}),
        spec("guarded", {"text": "A bluebird sang."}, safety=annotating),
        spec("tools", {"text": CALL, "structured_output": True}),
        spec("vectors", {"kind": "embeddings"}, profile=ModelProfile(model_type="embeddings", provider="aimi")),
    ]
    with in_process(specs=specs) as running:
        yield running


def _served(server: InProcessServer) -> list[Sample]:
    samples: list[Sample] = []
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    generations: list[tuple[str, dict[str, Any]]] = [
        ("/chat/completions", {**chat, "model": "chat"}),
        ("/v1/chat/completions", {**chat, "model": "chat", "logprobs": True, "top_logprobs": 2}),
        ("/v1/chat/completions", {**chat, "model": "chat", "n": 2, "best_of": 3, "logprobs": True}),
        ("/v1/chat/completions", {**chat, "model": "guarded", "max_tokens": 20}),
        ("/chat/completions", {**chat, "model": "tools", "tools": TOOLS, "tool_choice": "required", "max_tokens": 50}),
        ("/v1/completions", {"model": "chat", "prompt": "hi", "max_tokens": 3}),
        ("/completions", {"model": "guarded", "prompt": "hi", "max_tokens": 20}),
    ]
    with server.client() as client:
        for path, body in generations:
            chunk_model = out.TextCompletion if "prompt" in body else out.ChatCompletionChunk
            whole_model = out.TextCompletion if "prompt" in body else out.ChatCompletion
            response = client.post(path, json=body)
            assert response.status_code == 200, response.text
            samples.append((f"{path} {body['model']}", whole_model, response.content))
            if "best_of" in body:
                continue  # never streamed
            streamed = {**body, "stream": True}
            if path.startswith("/v1/"):
                streamed["stream_options"] = {"include_usage": True}
            response = client.post(path, json=streamed)
            assert response.status_code == 200, response.text
            samples += [(f"{path} {body['model']} chunk", chunk_model, frame) for frame in _frames(response.content)]
        for path in ("/embeddings", "/v1/embeddings"):
            for encoding in ("float", "base64", "int8", "uint8", "binary", "ubinary"):
                body = {"model": "vectors", "input": ["one", "two"], "encoding_format": encoding}
                response = client.post(path, json=body)
                assert response.status_code == 200, response.text
                samples.append((f"{path} {encoding}", out.EmbeddingsResult, response.content))
        for model in ("chat", "vectors"):
            response = client.get("/info", params={"model": model})
            assert response.status_code == 200, response.text
            samples.append((f"/info {model}", out.ModelInfo, response.content))
        response = client.get("/v1/models")
        assert response.status_code == 200, response.text
        samples.append(("/v1/models", out.ModelList, response.content))
    return samples


@pytest.fixture(scope="module")
def samples(server: InProcessServer) -> list[Sample]:
    return asyncio.run(_encoded()) + _served(server)


def test_every_answer_validates_against_its_model_with_no_undeclared_field(samples: list[Sample]) -> None:
    strict = StrictCopies()
    failures = []
    for label, model, raw in samples:
        try:
            strict.validate(model, raw)
        except ValidationError as exc:
            failures.append(f"{label} as {model.__name__}: {exc}\n{raw.decode()}")
    assert not failures, "\n\n".join(failures)


def test_the_fields_answers_always_carry_are_required_and_every_declared_field_is_carried(
    samples: list[Sample],
) -> None:
    strict = StrictCopies()
    for _, model, raw in samples:
        strict.validate(model, raw)
    mismatches = {}
    for model, carried in strict.carried.items():
        always = frozenset.intersection(*carried)
        ever = frozenset.union(*carried)
        required = {name for name, info in model.model_fields.items() if info.is_required()}
        if always != required or ever != set(model.model_fields):
            mismatches[model.__name__] = {
                "always carried, not required": sorted(always - required),
                "declared, never carried": sorted(set(model.model_fields) - ever),
            }
    # Every model reachable from an answer was seen, down to the leaves.
    assert set(strict.carried) == set(strict.copies), sorted(
        m.__name__ for m in set(strict.copies) - set(strict.carried)
    )
    assert not mismatches, json.dumps(mismatches, indent=1)

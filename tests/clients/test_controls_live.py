"""Generation controls against the real default model, through both surfaces and both streaming modes.

Structured output, tools, seeds, logprobs, ``n`` and ``best_of``, ``logit_bias`` and
``stop_token_ids``, stops and sampling extras, ``safe_prompt``, and the 400s and 422s around them,
pinned against SmolLM2-135M-Instruct served by a real ``aimi serve`` (the session's ``live_server``).
The Azure surface is driven with the azure-ai-inference SDK or raw bodies under
``extra-parameters: pass-through``; the OpenAI surface with the openai SDK or raw bodies.
Greedy requests (temperature 0) make every expected text reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints (types-jsonschema is not installed)
import openai
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import (
    AssistantMessage,
    ChatCompletionsNamedToolChoice,
    ChatCompletionsNamedToolChoiceFunction,
    ChatCompletionsToolChoicePreset,
    ChatCompletionsToolDefinition,
    CompletionsFinishReason,
    FunctionDefinition,
    JsonSchemaFormat,
    ToolMessage,
    UserMessage,
)
from azure.core.credentials import AzureKeyCredential
from openai import OpenAI
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)

from tests.clients.helpers import azure_user
from tests.conftest import LiveServer

MODEL = "smollm2-135m-instruct"
COMMA = 28  # the token id of "," in SmolLM2's vocabulary
TIMEOUT = 120

# --------------------------------------------------------------------------------------------
# Clients and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oai(live_server: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{live_server.url}/v1", api_key=live_server.key, max_retries=0, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def azure(live_server: LiveServer) -> Iterator[ChatCompletionsClient]:
    client = ChatCompletionsClient(
        endpoint=live_server.url, credential=AzureKeyCredential(live_server.key), retry_total=0
    )
    yield client
    client.close()


class Raw:
    """Exact bodies to either surface: the Azure route (``pass-through`` unless told otherwise) or ``/v1``."""

    def __init__(self, server: LiveServer) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=TIMEOUT)
        self.key = server.key

    def post(self, surface: str, body: dict[str, Any], extra_parameters: str | None = "pass-through") -> httpx.Response:
        if surface == "azure":
            headers = {"api-key": self.key}
            if extra_parameters is not None:
                headers["extra-parameters"] = extra_parameters
            return self.client.post("/chat/completions", json=body, headers=headers)
        assert surface == "openai"
        return self.client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {self.key}"})

    def chat(self, surface: str, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed answer, which must be a 200."""
        response = self.post(surface, {**body, "stream": False})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def stream(self, surface: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks of a streamed answer (a 200 that ends with ``data: [DONE]``)."""
        response = self.post(surface, {**body, "stream": True})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [frame for frame in response.text.split("\n\n") if frame]
        assert all(frame.startswith("data: ") for frame in frames), frames
        assert frames[-1] == "data: [DONE]"
        return [json.loads(frame.removeprefix("data: ")) for frame in frames[:-1]]


@pytest.fixture(scope="module")
def raw(live_server: LiveServer) -> Iterator[Raw]:
    api = Raw(live_server)
    yield api
    api.client.close()


SURFACES = ["azure", "openai"]


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def text_of(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk["choices"]
        if choice["index"] == index
    )


def finishes_of(chunks: list[dict[str, Any]], index: int = 0) -> list[str]:
    return [
        choice["finish_reason"]
        for chunk in chunks
        for choice in chunk["choices"]
        if choice["index"] == index and choice["finish_reason"] is not None
    ]


def usage_of(chunks: list[dict[str, Any]]) -> dict[str, int]:
    usages: list[dict[str, int]] = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    assert len(usages) == 1, usages
    return usages[0]


def assert_error(response: httpx.Response, status: int, code: str, param: str | None, *words: str) -> dict[str, Any]:
    """The response is the error named, and its message holds every one of ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["x-ms-error-code"] == code
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error


def validate(content: str, schema: dict[str, Any]) -> Any:
    value = json.loads(content)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    return value


# --------------------------------------------------------------------------------------------
# Structured output
# --------------------------------------------------------------------------------------------

JSON_OBJECT_PROMPTS = [
    "Give me a JSON object with a city and its country.",
    "Give me a JSON object with a title and a year for a famous book.",
    "Give me a JSON object with a list of three fruits.",
]


@pytest.mark.parametrize("prompt", JSON_OBJECT_PROMPTS)
def test_json_object_answers_are_json_objects_on_both_surfaces(
    prompt: str, azure: ChatCompletionsClient, oai: OpenAI
) -> None:
    via_azure = azure.complete(
        messages=azure_user(prompt), max_tokens=200, temperature=0, response_format="json_object"
    )
    via_openai = oai.chat.completions.create(
        model=MODEL, messages=user(prompt), max_tokens=200, temperature=0, response_format={"type": "json_object"}
    )
    assert via_azure.choices[0].finish_reason == CompletionsFinishReason.STOPPED
    assert via_openai.choices[0].finish_reason == "stop"
    content = via_openai.choices[0].message.content
    assert content is not None
    assert isinstance(json.loads(content), dict)
    assert via_azure.choices[0].message.content == content


def _closed(properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **more,
    }


NAME = {"type": "string", "minLength": 1, "maxLength": 30}
PERSON = _closed({"name": NAME, "age": {"type": "integer", "minimum": 0, "maximum": 120}})
SHOPPING = _closed(
    {"items": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 2, "maxItems": 4}}
)
MEETING = _closed(
    {
        "date": {"type": "string", "format": "date"},
        "id": {"type": "string", "format": "uuid"},
        "priority": {"enum": ["low", "medium", "high"]},
    }
)
LIBRARY = _closed(
    {"name": NAME, "books": {"type": "array", "items": {"$ref": "#/$defs/book"}, "minItems": 2, "maxItems": 2}},
    **{"$defs": {"book": _closed({"title": NAME, "year": {"type": "integer", "minimum": 1450, "maximum": 2025}})}},
)
PET = _closed(
    {
        "pet": {
            "anyOf": [
                _closed({"kind": {"const": "dog"}, "barks": {"type": "boolean"}}),
                _closed({"kind": {"const": "cat"}, "lives": {"type": "integer", "minimum": 1, "maximum": 9}}),
            ]
        }
    }
)
ADDRESS = _closed(
    {
        "person": _closed(
            {
                "name": NAME,
                "address": _closed({"city": NAME, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}),
            }
        )
    }
)
REVIEW = _closed(
    {
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {
            "type": "array",
            "items": {"enum": ["action", "comedy", "drama", "horror"]},
            "minItems": 1,
            "maxItems": 3,
        },
        "recommended": {"type": "boolean"},
    }
)

# (id, prompt, schema, strict, surface)
SCHEMA_CASES = [
    ("person-integer-bounds", "Describe a person named Alice who is 30 years old.", PERSON, True, "azure"),
    ("array-min-max-items", "Give me a shopping list.", SHOPPING, True, "openai"),
    ("formats-and-enum", "Schedule a meeting.", MEETING, True, "azure"),
    ("ref-to-defs", "Describe a small library with two books.", LIBRARY, True, "openai"),
    ("any-of", "Tell me about a pet.", PET, True, "azure"),
    ("nested-objects-not-strict", "Where does Bob live?", ADDRESS, False, "openai"),
    ("enum-array", "Rate this movie from 1 to 5 and list tags.", REVIEW, False, "azure"),
]


@pytest.mark.parametrize(
    ("prompt", "schema", "strict", "surface"),
    [case[1:] for case in SCHEMA_CASES],
    ids=[case[0] for case in SCHEMA_CASES],
)
def test_json_schema_answers_validate_against_the_schema(
    prompt: str,
    schema: dict[str, Any],
    strict: bool,
    surface: str,
    azure: ChatCompletionsClient,
    oai: OpenAI,
) -> None:
    content: str | None
    if surface == "azure":
        answer = azure.complete(
            messages=azure_user(prompt),
            max_tokens=200,
            temperature=0,
            response_format=JsonSchemaFormat(name="answer", schema=schema, strict=strict),
        )
        content, finish = answer.choices[0].message.content, answer.choices[0].finish_reason
        assert finish == CompletionsFinishReason.STOPPED
    else:
        completion = oai.chat.completions.create(
            model=MODEL,
            messages=user(prompt),
            max_tokens=200,
            temperature=0,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": strict},
            },
        )
        content, finish = completion.choices[0].message.content, completion.choices[0].finish_reason
        assert finish == "stop"
    assert content is not None
    validate(content, schema)


@pytest.mark.parametrize("surface", SURFACES)
def test_json_schema_answer_cut_by_max_tokens_finishes_with_length(raw: Raw, surface: str) -> None:
    body = {
        "messages": user("Describe a small library with two books."),
        "max_tokens": 4,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "library", "schema": LIBRARY}},
    }
    answer = raw.chat(surface, body)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 4
    assert answer["choices"][0]["message"]["content"].startswith("{")


@pytest.mark.parametrize("surface", SURFACES)
def test_streamed_json_schema_answer_equals_the_whole_answer(raw: Raw, oai: OpenAI, surface: str) -> None:
    body: dict[str, Any] = {
        "messages": user("Describe a small library with two books."),
        "max_tokens": 200,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "library", "schema": LIBRARY, "strict": True},
        },
    }
    whole = raw.chat(surface, body)
    content = whole["choices"][0]["message"]["content"]
    validate(content, LIBRARY)
    if surface == "azure":
        chunks = raw.stream(surface, body)
        assert text_of(chunks) == content
        assert finishes_of(chunks) == ["stop"]
        assert usage_of(chunks) == whole["usage"]
    else:
        stream = oai.chat.completions.create(model=MODEL, stream=True, **body)
        parts = list(stream)
        assert "".join(p.choices[0].delta.content or "" for p in parts) == content
        assert [p.choices[0].finish_reason for p in parts if p.choices[0].finish_reason] == ["stop"]


UNENFORCEABLE = [
    ("patternProperties", {"type": "object", "patternProperties": {"^x": {"type": "string"}}}, ["patternProperties"]),
    ("not", {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, ["'not'"]),
    (
        "format-email",
        {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}},
        ["format", "email"],
    ),
    (
        "unanchored-pattern",
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "[a-z]+"}}},
        ["pattern"],
    ),
    ("missing-ref", {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, ["$ref", "#/$defs/missing"]),
    (
        "nested-quantifier",
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}},
        ["pattern", "^(a+)+$"],
    ),
]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("schema", "words"), [c[1:] for c in UNENFORCEABLE], ids=[c[0] for c in UNENFORCEABLE])
def test_unenforceable_schema_is_400_naming_the_keyword(
    raw: Raw, surface: str, schema: dict[str, Any], words: list[str]
) -> None:
    body = {
        "messages": user("hi"),
        "max_tokens": 4,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    assert_error(raw.post(surface, body), 400, "invalid_request", "response_format.json_schema.schema", *words)


def test_unenforceable_schema_raises_bad_request_in_the_openai_sdk(oai: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=MODEL,
            messages=user("hi"),
            max_tokens=4,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object", "not": {"type": "object"}}},
            },
        )
    assert caught.value.status_code == 400
    assert caught.value.param == "response_format.json_schema.schema"
    assert "'not'" in caught.value.message


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------

WEATHER_PARAMETERS = _closed(
    {"city": {"type": "string", "minLength": 1, "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}}
)
TIME_PARAMETERS = _closed({"city": {"type": "string", "minLength": 1, "maxLength": 20}})
TOOLS: list[ChatCompletionFunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a city",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "Get the local time in a city", "parameters": TIME_PARAMETERS},
    },
]
PARAMETERS = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
AZURE_TOOLS = [
    ChatCompletionsToolDefinition(
        function=FunctionDefinition(
            name=t["function"]["name"], description=t["function"]["description"], parameters=t["function"]["parameters"]
        )
    )
    for t in TOOLS
]
WEATHER_QUESTION = "What is the weather in Paris?"


def assert_one_valid_call(message: dict[str, Any], finish: str, name: str | None = None) -> dict[str, Any]:
    """``message`` holds exactly one well-formed call (of ``name`` if given); its arguments, parsed."""
    assert finish == "tool_calls"
    assert message["content"] is None
    calls = message["tool_calls"]
    assert isinstance(calls, list) and len(calls) == 1
    call = calls[0]
    assert set(call) == {"id", "type", "function"}
    assert call["id"].startswith("call_") and len(call["id"]) > len("call_")
    assert call["type"] == "function"
    assert set(call["function"]) == {"name", "arguments"}
    assert call["function"]["name"] in PARAMETERS
    if name is not None:
        assert call["function"]["name"] == name
    assert isinstance(call["function"]["arguments"], str)
    arguments: dict[str, Any] = validate(call["function"]["arguments"], PARAMETERS[call["function"]["name"]])
    return arguments


@pytest.mark.parametrize("surface", SURFACES)
def test_required_tool_choice_answers_with_one_valid_call(
    surface: str, azure: ChatCompletionsClient, oai: OpenAI
) -> None:
    if surface == "azure":
        answer = azure.complete(
            messages=azure_user(WEATHER_QUESTION),
            max_tokens=100,
            temperature=0,
            tools=AZURE_TOOLS,
            tool_choice=ChatCompletionsToolChoicePreset.REQUIRED,
        )
        body = answer.as_dict()
    else:
        body = oai.chat.completions.create(
            model=MODEL,
            messages=user(WEATHER_QUESTION),
            max_tokens=100,
            temperature=0,
            tools=TOOLS,
            tool_choice="required",
        ).model_dump()
    choice = body["choices"][0]
    assert len(body["choices"]) == 1
    assert_one_valid_call(choice["message"], choice["finish_reason"])


@pytest.mark.parametrize("surface", SURFACES)
def test_named_tool_choice_calls_that_function(surface: str, azure: ChatCompletionsClient, oai: OpenAI) -> None:
    if surface == "azure":
        answer = azure.complete(
            messages=azure_user(WEATHER_QUESTION),
            max_tokens=100,
            temperature=0,
            tools=AZURE_TOOLS,
            tool_choice=ChatCompletionsNamedToolChoice(
                function=ChatCompletionsNamedToolChoiceFunction(name="get_time")
            ),
        )
        body = answer.as_dict()
    else:
        body = oai.chat.completions.create(
            model=MODEL,
            messages=user(WEATHER_QUESTION),
            max_tokens=100,
            temperature=0,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        ).model_dump()
    choice = body["choices"][0]
    arguments = assert_one_valid_call(choice["message"], choice["finish_reason"], name="get_time")
    assert set(arguments) == {"city"}


@pytest.mark.parametrize("surface", SURFACES)
def test_tool_choice_none_answers_in_text(raw: Raw, surface: str) -> None:
    body = {
        "messages": user(WEATHER_QUESTION),
        "max_tokens": 12,
        "temperature": 0,
        "tools": TOOLS,
        "tool_choice": "none",
    }
    answer = raw.chat(surface, body)
    message = answer["choices"][0]["message"]
    assert message["tool_calls"] is None
    assert isinstance(message["content"], str) and message["content"]
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    # "none" is the plain conversation: the tools are not even described to the model.
    plain = raw.chat(surface, {"messages": user(WEATHER_QUESTION), "max_tokens": 12, "temperature": 0})
    assert message["content"] == plain["choices"][0]["message"]["content"]
    assert answer["usage"] == plain["usage"]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("question", [WEATHER_QUESTION, "Hello! How are you?"])
def test_tool_choice_auto_is_either_a_valid_call_or_content(raw: Raw, surface: str, question: str) -> None:
    body = {"messages": user(question), "max_tokens": 100, "temperature": 0, "tools": TOOLS, "tool_choice": "auto"}
    answer = raw.chat(surface, body)
    choice = answer["choices"][0]
    assert set(choice["message"]) == {"role", "content", "tool_calls"}
    chunks = raw.stream(surface, body)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    if choice["message"]["tool_calls"] is not None:
        assert_one_valid_call(choice["message"], choice["finish_reason"])
        assert text_of(chunks) == ""
        assert finishes_of(chunks) == ["tool_calls"]
    else:
        # the answer's own text, not the {"content": ...} wrapper it was constrained to
        assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
        assert not choice["message"]["content"].lstrip().startswith("{")
        assert choice["finish_reason"] == "stop"
        assert text_of(chunks) == choice["message"]["content"]
        assert not any("tool_calls" in d for d in deltas)
        assert finishes_of(chunks) == ["stop"]


@pytest.mark.parametrize("surface", SURFACES)
def test_streamed_tool_call_matches_the_whole_call(raw: Raw, oai: OpenAI, surface: str) -> None:
    body: dict[str, Any] = {
        "messages": user(WEATHER_QUESTION),
        "max_tokens": 100,
        "temperature": 0,
        "tools": TOOLS,
        "tool_choice": "required",
    }
    whole = raw.chat(surface, body)
    call = whole["choices"][0]["message"]["tool_calls"][0]
    if surface == "azure":
        chunks = raw.stream(surface, body)
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        assert deltas[0] == {"role": "assistant", "content": ""}
        calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
        assert all(len(c) == 1 for c in calls)
        first, rest = calls[0][0], [c[0] for c in calls[1:]]
        assert finishes_of(chunks) == ["tool_calls"]
        assert usage_of(chunks) == whole["usage"]
    else:
        parts = list(oai.chat.completions.create(model=MODEL, stream=True, **body))
        assert parts[0].choices[0].delta.role == "assistant"
        calls = [p.choices[0].delta.tool_calls for p in parts if p.choices[0].delta.tool_calls]
        assert all(len(c) == 1 for c in calls)
        first, rest = calls[0][0].model_dump(exclude_none=True), [c[0].model_dump(exclude_none=True) for c in calls[1:]]
        assert [p.choices[0].finish_reason for p in parts if p.choices[0].finish_reason] == ["tool_calls"]
    assert first["index"] == 0
    assert first["id"].startswith("call_")
    assert first["type"] == "function"
    assert first["function"]["name"] == call["function"]["name"]
    assert rest, "the arguments come in later deltas"
    for delta in rest:
        assert delta["index"] == 0
        assert set(delta) == {"index", "function"}
        assert set(delta["function"]) == {"arguments"}
    arguments = first["function"].get("arguments", "") + "".join(d["function"]["arguments"] for d in rest)
    assert arguments == call["function"]["arguments"]


def test_tool_round_trip_with_string_arguments_through_openai(oai: OpenAI) -> None:
    first = oai.chat.completions.create(
        model=MODEL,
        messages=user(WEATHER_QUESTION),
        max_tokens=100,
        temperature=0,
        tools=TOOLS,
        tool_choice="required",
    )
    calls = first.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    answer = oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": WEATHER_QUESTION},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": call.function.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21, "sky": "sunny"}'},
        ],
        max_tokens=40,
        temperature=0,
        tools=TOOLS,
        tool_choice="none",
    )
    choice = answer.choices[0]
    assert choice.message.tool_calls is None
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")


def test_tool_round_trip_with_object_arguments_through_raw_azure(raw: Raw) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": WEATHER_QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0123456789abcdef01234567",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0123456789abcdef01234567", "content": "21 degrees, sunny"},
    ]
    answer = raw.chat("azure", {"messages": messages, "max_tokens": 100, "temperature": 0, "tools": TOOLS})
    choice = answer["choices"][0]
    if choice["message"]["tool_calls"] is not None:
        assert_one_valid_call(choice["message"], choice["finish_reason"])
    else:
        assert isinstance(choice["message"]["content"], str)
    # The same history with the arguments as a JSON string reads the same to the model.
    as_string = json.loads(json.dumps(messages))
    as_string[1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"city": "Paris", "unit": "celsius"})
    again = raw.chat("azure", {"messages": as_string, "max_tokens": 100, "temperature": 0, "tools": TOOLS})
    assert again["usage"]["prompt_tokens"] == answer["usage"]["prompt_tokens"]


def test_tool_round_trip_through_the_azure_sdk(azure: ChatCompletionsClient) -> None:
    first = azure.complete(
        messages=azure_user(WEATHER_QUESTION),
        max_tokens=100,
        temperature=0,
        tools=AZURE_TOOLS,
        tool_choice=ChatCompletionsToolChoicePreset.REQUIRED,
    )
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == CompletionsFinishReason.TOOL_CALLS
    assert calls is not None and len(calls) == 1
    call = calls[0]
    answer = azure.complete(
        messages=[
            UserMessage(WEATHER_QUESTION),
            AssistantMessage(tool_calls=[call]),
            ToolMessage("21 degrees, sunny", tool_call_id=call.id),
        ],
        max_tokens=30,
        temperature=0,
        tools=AZURE_TOOLS,
        tool_choice=ChatCompletionsToolChoicePreset.NONE,
    )
    assert answer.choices[0].message.content
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason in (
        CompletionsFinishReason.STOPPED,
        CompletionsFinishReason.TOKEN_LIMIT_REACHED,
    )


@pytest.mark.parametrize("surface", SURFACES)
def test_unknown_named_tool_is_400(raw: Raw, surface: str) -> None:
    body = {
        "messages": user(WEATHER_QUESTION),
        "max_tokens": 4,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_stock_price"}},
    }
    assert_error(raw.post(surface, body), 400, "invalid_request", "tool_choice", "get_stock_price")


@pytest.mark.parametrize("surface", SURFACES)
def test_tool_parameters_with_unsupported_keyword_is_400(raw: Raw, surface: str) -> None:
    bad = {"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {"^b": {}}}
    tools = [TOOLS[1], {"type": "function", "function": {"name": "bad", "parameters": bad}}]
    body = {"messages": user(WEATHER_QUESTION), "max_tokens": 4, "tools": tools, "tool_choice": "auto"}
    assert_error(raw.post(surface, body), 400, "invalid_request", "tools.1.function.parameters", "patternProperties")
    body["tools"] = [tools[1]]
    assert_error(raw.post(surface, body), 400, "invalid_request", "tools.0.function.parameters", "patternProperties")


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", SURFACES)
def test_same_seed_gives_the_same_sampled_text(raw: Raw, surface: str) -> None:
    body = {"messages": user("Tell me a story."), "max_tokens": 12, "temperature": 1.0, "seed": 1234}
    first = raw.chat(surface, body)["choices"][0]["message"]["content"]
    second = raw.chat(surface, body)["choices"][0]["message"]["content"]
    assert first == second
    streamed = text_of(raw.stream(surface, body))
    assert streamed == first


# --------------------------------------------------------------------------------------------
# Logprobs
# --------------------------------------------------------------------------------------------


def assert_logprob_entry(entry: dict[str, Any], top: int, greedy: bool) -> None:
    assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
    assert isinstance(entry["token"], str)
    assert entry["logprob"] <= 0
    assert entry["bytes"] == list(entry["token"].encode())
    alternatives = entry["top_logprobs"]
    assert len(alternatives) == top
    for alternative in alternatives:
        assert set(alternative) == {"token", "logprob", "bytes"}
        assert alternative["logprob"] <= 0
    values = [alternative["logprob"] for alternative in alternatives]
    assert values == sorted(values, reverse=True)
    if greedy and top:
        assert entry["token"] == alternatives[0]["token"]
        assert entry["logprob"] == pytest.approx(alternatives[0]["logprob"], abs=1e-4)


def test_logprobs_with_top_logprobs_on_openai(oai: OpenAI) -> None:
    completion = oai.chat.completions.create(
        model=MODEL,
        messages=user("Name three colors."),
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        extra_body={"ignore_eos": True},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 8
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = [entry.model_dump() for entry in choice.logprobs.content]
    assert len(entries) == completion.usage.completion_tokens
    for entry in entries:
        assert_logprob_entry(entry, top=3, greedy=True)
    assert "".join(entry["token"] for entry in entries) == choice.message.content


def test_logprobs_without_top_logprobs_lists_every_token(raw: Raw) -> None:
    # OpenAI: `logprobs: true` alone gives each output token's logprob with no alternatives.
    answer = raw.chat(
        "openai",
        {
            "messages": user("Name three colors."),
            "max_tokens": 6,
            "temperature": 0,
            "logprobs": True,
            "ignore_eos": True,
        },
    )
    logprobs = answer["choices"][0]["logprobs"]
    assert logprobs is not None, "logprobs: true without top_logprobs returned no logprobs"
    entries = logprobs["content"]
    assert len(entries) == 6
    for entry in entries:
        assert_logprob_entry(entry, top=0, greedy=True)
    assert "".join(entry["token"] for entry in entries) == answer["choices"][0]["message"]["content"]


def test_streamed_logprobs_ride_with_their_content(oai: OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model=MODEL,
            messages=user("Name three colors."),
            max_tokens=10,
            temperature=0,
            logprobs=True,
            top_logprobs=2,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    entries = 0
    for chunk in chunks[:-1]:
        choice = chunk.choices[0]
        content = choice.delta.content
        if content:
            assert choice.logprobs is not None and choice.logprobs.content
            assert "".join(e.token for e in choice.logprobs.content) == content
            for entry in choice.logprobs.content:
                assert_logprob_entry(entry.model_dump(), top=2, greedy=True)
            entries += len(choice.logprobs.content)
        else:
            assert choice.logprobs is None
    assert entries == usage.completion_tokens == 10


def test_azure_integer_logprobs_means_that_many_alternatives(raw: Raw) -> None:
    body = {
        "messages": user("Name three colors."),
        "max_tokens": 5,
        "temperature": 0,
        "logprobs": 2,
        "ignore_eos": True,
    }
    answer = raw.chat("azure", body)
    entries = answer["choices"][0]["logprobs"]["content"]
    assert len(entries) == answer["usage"]["completion_tokens"] == 5
    for entry in entries:
        assert_logprob_entry(entry, top=2, greedy=True)
    # the same as OpenAI's logprobs: true, top_logprobs: 2
    same = raw.chat("openai", {**body, "logprobs": True, "top_logprobs": 2})
    assert [e["token"] for e in same["choices"][0]["logprobs"]["content"]] == [e["token"] for e in entries]
    assert [len(e["top_logprobs"]) for e in same["choices"][0]["logprobs"]["content"]] == [2] * 5


# --------------------------------------------------------------------------------------------
# n and best_of
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", SURFACES)
def test_n_gives_that_many_choices_and_sums_their_usage(raw: Raw, surface: str) -> None:
    body = {"messages": user("Tell me a story."), "max_tokens": 5, "temperature": 1.0, "n": 3, "ignore_eos": True}
    answer = raw.chat(surface, body)
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2]
    assert [c["finish_reason"] for c in answer["choices"]] == ["length"] * 3
    assert all(c["message"]["content"] for c in answer["choices"])
    assert answer["usage"]["completion_tokens"] == 15
    assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + 15


@pytest.mark.parametrize("surface", SURFACES)
def test_streamed_n_gives_each_choice_its_own_start_and_finish(raw: Raw, surface: str) -> None:
    body = {
        "messages": user("Tell me a story."),
        "max_tokens": 4,
        "temperature": 1.0,
        "n": 2,
        "ignore_eos": True,
        "seed": 7,
    }
    chunks = raw.stream(surface, body)
    choices = [choice for chunk in chunks for choice in chunk["choices"]]
    assert all(len(chunk["choices"]) <= 1 for chunk in chunks)
    assert {choice["index"] for choice in choices} == {0, 1}
    for index in (0, 1):
        mine = [choice for choice in choices if choice["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert all("role" not in choice["delta"] for choice in mine[1:])
        assert finishes_of(chunks, index) == ["length"]
        assert mine[-1]["finish_reason"] == "length"
        assert text_of(chunks, index)
    if surface == "azure":
        assert usage_of(chunks)["completion_tokens"] == 8
    # the streamed choices are the non-streamed ones (seeded: choice i samples with seed + i)
    whole = raw.chat(surface, body)
    assert [c["message"]["content"] for c in whole["choices"]] == [text_of(chunks, 0), text_of(chunks, 1)]


def test_best_of_returns_one_choice(raw: Raw) -> None:
    body = {
        "messages": user("Tell me a story."),
        "max_tokens": 4,
        "temperature": 1.0,
        "n": 1,
        "best_of": 3,
        "ignore_eos": True,
    }
    for surface in SURFACES:
        answer = raw.chat(surface, body)
        assert len(answer["choices"]) == 1
        assert answer["choices"][0]["index"] == 0
        assert answer["choices"][0]["finish_reason"] == "length"
        assert answer["choices"][0]["logprobs"] is None  # not asked for
        assert answer["usage"]["completion_tokens"] == 12  # every candidate's tokens


def test_best_of_picks_the_candidate_with_the_highest_mean_logprob(raw: Raw) -> None:
    # best_of's candidates are the choices n would give (seed + i each), so n=3 shows them all.
    body = {"messages": user("Tell me a story."), "max_tokens": 6, "temperature": 1.0, "seed": 5, "ignore_eos": True}
    candidates = raw.chat("openai", {**body, "n": 3, "logprobs": True, "top_logprobs": 1})["choices"]

    def mean(choice: dict[str, Any]) -> float:
        values: list[float] = [entry["logprob"] for entry in choice["logprobs"]["content"]]
        return sum(values) / len(values)

    best = max(candidates, key=mean)["message"]["content"]
    assert best != candidates[0]["message"]["content"], "seed 5 should make a later candidate the best"
    with_logprobs = raw.chat("openai", {**body, "best_of": 3, "logprobs": True, "top_logprobs": 1})
    assert with_logprobs["choices"][0]["message"]["content"] == best
    without_logprobs = raw.chat("openai", {**body, "best_of": 3})
    assert without_logprobs["choices"][0]["message"]["content"] == best


@pytest.mark.parametrize("surface", SURFACES)
def test_best_of_errors(raw: Raw, surface: str) -> None:
    messages = user("Tell me a story.")
    streamed = raw.post(surface, {"messages": messages, "max_tokens": 4, "best_of": 3, "stream": True})
    assert_error(streamed, 400, "invalid_request", "best_of", "stream")
    fewer = raw.post(surface, {"messages": messages, "max_tokens": 4, "n": 3, "best_of": 2})
    assert_error(fewer, 400, "invalid_request", "best_of", "at least")


# --------------------------------------------------------------------------------------------
# logit_bias and stop_token_ids
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", SURFACES)
def test_logit_bias_plus_100_forces_the_token(raw: Raw, surface: str) -> None:
    body = {
        "messages": user("Say hi"),
        "max_tokens": 6,
        "temperature": 0,
        "logit_bias": {str(COMMA): 100},
        "ignore_eos": True,
    }
    answer = raw.chat(surface, body)
    assert answer["choices"][0]["message"]["content"] == "," * 6
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 6


@pytest.mark.parametrize("surface", SURFACES)
def test_logit_bias_minus_100_bans_the_token(raw: Raw, surface: str) -> None:
    body: dict[str, Any] = {
        "messages": user("Write a sentence about a cat, a dog, and a bird."),
        "max_tokens": 30,
        "temperature": 0,
    }
    plain = raw.chat(surface, body)["choices"][0]["message"]["content"]
    assert "," in plain
    banned = raw.chat(surface, {**body, "logit_bias": {str(COMMA): -100}})["choices"][0]["message"]["content"]
    assert banned
    assert "," not in banned


def test_stop_token_id_ends_the_answer_after_that_token(raw: Raw) -> None:
    body = {
        "messages": user("Say hi"),
        "max_tokens": 6,
        "temperature": 0,
        "logit_bias": {str(COMMA): 100},
        "stop_token_ids": [COMMA],
    }
    answer = raw.chat("openai", body)
    assert answer["choices"][0]["message"]["content"] == ","
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] == 1
    assert answer["choices"][0]["logprobs"] is None  # watching for the id shows no logprobs


def test_streamed_stop_token_id_ends_the_stream_after_that_token(raw: Raw) -> None:
    body = {
        "messages": user("Say hi"),
        "max_tokens": 6,
        "temperature": 0,
        "logit_bias": {str(COMMA): 100},
        "stop_token_ids": [COMMA],
    }
    chunks = raw.stream("azure", body)
    assert text_of(chunks) == ","
    assert finishes_of(chunks) == ["stop"]
    assert usage_of(chunks)["completion_tokens"] == 1
    assert all(choice["logprobs"] is None for chunk in chunks for choice in chunk["choices"])


# --------------------------------------------------------------------------------------------
# stop, ignore_eos, max_completion_tokens, penalties, top_p 0, engine extras
# --------------------------------------------------------------------------------------------

STORY = user("Tell me a story.")


@pytest.mark.parametrize("surface", SURFACES)
def test_stop_as_a_string_and_as_a_list(raw: Raw, surface: str) -> None:
    body: dict[str, Any] = {"messages": STORY, "max_tokens": 10, "temperature": 0}
    plain = raw.chat(surface, body)["choices"][0]["message"]["content"]
    words = plain.split()
    assert len(words) >= 4, plain
    one = raw.chat(surface, {**body, "stop": words[2]})
    assert one["choices"][0]["message"]["content"] == plain[: plain.index(words[2])]
    assert one["choices"][0]["finish_reason"] == "stop"
    several = raw.chat(surface, {**body, "stop": ["no such text", words[3], words[1]]})
    assert several["choices"][0]["message"]["content"] == plain[: plain.index(words[1])]
    assert several["choices"][0]["finish_reason"] == "stop"
    streamed = raw.stream(surface, {**body, "stop": [words[3]]})
    assert text_of(streamed) == plain[: plain.index(words[3])]
    assert finishes_of(streamed) == ["stop"]


@pytest.mark.parametrize("surface", SURFACES)
def test_ignore_eos_generates_exactly_max_tokens(raw: Raw, surface: str) -> None:
    body: dict[str, Any] = {"messages": user("Say hi"), "max_tokens": 40, "temperature": 0}
    plain = raw.chat(surface, body)
    assert plain["choices"][0]["finish_reason"] == "stop"
    assert plain["usage"]["completion_tokens"] < 40
    forced = raw.chat(surface, {**body, "ignore_eos": True})
    assert forced["choices"][0]["finish_reason"] == "length"
    assert forced["usage"]["completion_tokens"] == 40
    assert forced["choices"][0]["message"]["content"].startswith(plain["choices"][0]["message"]["content"])


def test_max_completion_tokens_is_max_tokens_on_v1(oai: OpenAI, raw: Raw) -> None:
    completion = oai.chat.completions.create(
        model=MODEL, messages=STORY, max_completion_tokens=3, temperature=0, extra_body={"ignore_eos": True}
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert completion.choices[0].finish_reason == "length"
    same = raw.chat("openai", {"messages": STORY, "max_tokens": 3, "temperature": 0})
    assert completion.choices[0].message.content == same["choices"][0]["message"]["content"]
    too_many = raw.post("openai", {"messages": STORY, "max_completion_tokens": 100_000})
    assert_error(too_many, 400, "invalid_request", "max_completion_tokens", "max_completion_tokens")


@pytest.mark.parametrize("surface", SURFACES)
def test_presence_and_frequency_penalties_are_accepted_and_applied(raw: Raw, surface: str) -> None:
    body: dict[str, Any] = {"messages": STORY, "max_tokens": 8, "temperature": 0}
    plain = raw.chat(surface, body)["choices"][0]["message"]["content"]
    for penalty in ({"presence_penalty": 1.5}, {"frequency_penalty": 1.5}):
        answer = raw.chat(surface, {**body, **penalty})
        assert answer["usage"]["completion_tokens"] <= 8
        assert answer["choices"][0]["message"]["content"]
        assert answer["choices"][0]["message"]["content"] != plain, penalty
    out_of_range = raw.post(surface, {**body, "presence_penalty": 2.5})
    assert_error(out_of_range, 400, "invalid_request", "presence_penalty", "presence_penalty")


@pytest.mark.parametrize("surface", SURFACES)
def test_top_p_zero_is_greedy(raw: Raw, surface: str) -> None:
    body: dict[str, Any] = {"messages": STORY, "max_tokens": 12}
    greedy = raw.chat(surface, {**body, "temperature": 0})["choices"][0]["message"]["content"]
    for seed in (1, 2):
        hot = raw.chat(surface, {**body, "temperature": 1.5, "top_p": 0, "seed": seed})
        assert hot["choices"][0]["message"]["content"] == greedy


def test_engine_extras_are_accepted_on_both_surfaces(azure: ChatCompletionsClient, oai: OpenAI) -> None:
    extras = {"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1}
    via_azure = azure.complete(messages=azure_user("Say hi"), max_tokens=6, temperature=0, model_extras=extras)
    assert via_azure.choices[0].message.content
    via_openai = oai.chat.completions.create(
        model=MODEL, messages=user("Say hi"), max_tokens=6, temperature=0, extra_body=extras
    )
    assert via_openai.choices[0].message.content == via_azure.choices[0].message.content
    # top_k 1 keeps only the likeliest token: greedy whatever the temperature.
    greedy = oai.chat.completions.create(model=MODEL, messages=STORY, max_tokens=10, temperature=0)
    top_1 = oai.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=10, temperature=1.5, seed=3, extra_body={"top_k": 1}
    )
    assert top_1.choices[0].message.content == greedy.choices[0].message.content


# --------------------------------------------------------------------------------------------
# safe_prompt
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", SURFACES)
def test_safe_prompt_adds_the_safety_system_prompt(raw: Raw, surface: str) -> None:
    body: dict[str, Any] = {"messages": user("Say hi"), "max_tokens": 2, "temperature": 0}
    plain = raw.chat(surface, body)
    safe = raw.chat(surface, {**body, "safe_prompt": True})
    assert safe["choices"][0]["message"]["content"]
    assert safe["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]
    unsafe = raw.chat(surface, {**body, "safe_prompt": False})
    assert unsafe["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]


def test_safe_prompt_through_the_azure_sdk(azure: ChatCompletionsClient) -> None:
    plain = azure.complete(messages=azure_user("Say hi"), max_tokens=2, temperature=0)
    safe = azure.complete(
        messages=azure_user("Say hi"), max_tokens=2, temperature=0, model_extras={"safe_prompt": True}
    )
    assert safe.usage.prompt_tokens > plain.usage.prompt_tokens


# --------------------------------------------------------------------------------------------
# The Azure extra-parameters policy over the controls
# --------------------------------------------------------------------------------------------


def test_azure_controls_need_pass_through(raw: Raw) -> None:
    plain = {"messages": user("Say hi"), "max_tokens": 3, "temperature": 0}
    controls = {"n": 2, "logit_bias": {str(COMMA): 100}, "logprobs": True, "top_logprobs": 1, "ignore_eos": True}
    body = {**plain, **controls}
    refused = raw.post("azure", body, extra_parameters=None)
    error = assert_error(refused, 400, "extra_parameters_not_allowed", "ignore_eos")
    assert all(f"'{name}'" in error["message"] for name in controls)
    passed = raw.post("azure", body, extra_parameters="pass-through")
    assert passed.status_code == 200, passed.text
    assert [c["message"]["content"] for c in passed.json()["choices"]] == [",,,", ",,,"]
    assert all(c["logprobs"] is not None for c in passed.json()["choices"])
    # drop: every control is removed, the answer is the plain request's
    expected = raw.chat("azure", plain)
    dropped = raw.post("azure", body, extra_parameters="drop")
    assert dropped.status_code == 200, dropped.text
    answer = dropped.json()
    assert [c["index"] for c in answer["choices"]] == [0], "n was not dropped"
    assert answer["choices"][0]["message"] == expected["choices"][0]["message"], "logit_bias was not dropped"
    assert answer["choices"][0]["logprobs"] is None, "logprobs was not dropped"
    assert answer["usage"] == expected["usage"]


# --------------------------------------------------------------------------------------------
# 422 parameter_not_supported and 400 limits
# --------------------------------------------------------------------------------------------


def assert_not_supported(response: httpx.Response, loc: list[Any], value: Any) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == "parameter_not_supported"
    assert body["error"]["param"] == ".".join(str(part) for part in loc)
    assert response.headers["x-ms-error-code"] == "parameter_not_supported"
    assert [d["loc"] for d in body["detail"]] == [["body", *loc]]
    assert body["detail"][0]["input"] == value
    assert body["detail"][0]["type"] == "parameter_not_supported"


@pytest.mark.parametrize("surface", SURFACES)
def test_unsupported_controls_are_422_with_their_loc(raw: Raw, surface: str) -> None:
    messages = user("hi")
    assert_not_supported(
        raw.post(surface, {"messages": messages, "max_tokens": 2, "use_beam_search": True}), ["use_beam_search"], True
    )
    assert_not_supported(
        raw.post(surface, {"messages": messages, "max_tokens": 2, "skip_special_tokens": False}),
        ["skip_special_tokens"],
        False,
    )
    image = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
    assert_not_supported(
        raw.post(surface, {"messages": [image], "max_tokens": 2}), ["messages", 0, "content", 1, "type"], "image_url"
    )


def test_unsupported_control_is_422_in_the_openai_sdk(oai: OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        oai.chat.completions.create(
            model=MODEL, messages=user("hi"), max_tokens=2, extra_body={"use_beam_search": True}
        )
    assert caught.value.status_code == 422
    assert caught.value.code == "parameter_not_supported"


LIMITS = [
    ("n-over-8", {"n": 9}, "n", ["at most 8", "9"]),
    ("best-of-over-8", {"best_of": 9}, "best_of", ["at most 8", "9"]),
    ("top-logprobs-21", {"logprobs": True, "top_logprobs": 21}, "top_logprobs", ["20", "21"]),
    ("top-logprobs-without-logprobs", {"top_logprobs": 2}, "top_logprobs", ["logprobs"]),
    ("logit-bias-non-integer-key", {"logit_bias": {"comma": 5}}, "logit_bias", ["token ids", "'comma'"]),
    ("logit-bias-too-many", {"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias", ["at most 300", "301"]),
]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("extra", "param", "words"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_limits_are_400_naming_the_field(
    raw: Raw, surface: str, extra: dict[str, Any], param: str, words: list[str]
) -> None:
    response = raw.post(surface, {"messages": user("hi"), "max_tokens": 2, **extra})
    assert_error(response, 400, "invalid_request", param, *words)

"""Tools on the fake engine claiming constrained decoding: the prompt and schema the engine gets, the
tool calls the client gets back (whole and streamed), the conversation round trip and the limits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints (types-jsonschema is not installed)
import pytest

from aimi.deployments.profile import ModelProfile
from aimi.engines.api import ChatTurn, GenerationRequest, JsonSchema
from tests.api.helpers import CHAT, assert_error, sse_payloads
from tests.conftest import FAKE_MODEL, InProcessServer, in_process

WEATHER_FN = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}
TIME_FN = {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}
WEATHER = {"type": "function", "function": WEATHER_FN}
TIME = {"type": "function", "function": TIME_FN}
TOOLS = [WEATHER, TIME]
LISTING = json.dumps([WEATHER_FN, TIME_FN], ensure_ascii=False)
HEADER = "You can call these functions, described in JSON:\n"
HOW_AUTO = (
    'To call a function, answer with {"tool_call": {"name": <function name>, "arguments": <arguments object>}}. '
    'To answer directly, answer with {"content": <your answer>}.'
)
HOW_REQUIRED = 'Call one of them: answer with {"name": <function name>, "arguments": <arguments object>}.'

CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
AUTO_CALL = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'
LONG_CALL = '{"name": "get_weather", "arguments": {"city": "Saint-Rémy-de-Provence", "unit": "celsius"}}'
LONG_ARGUMENTS = '{"city": "Saint-Rémy-de-Provence", "unit": "celsius"}'
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


def call_schema(function: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": function["parameters"]},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


REQUIRED_SCHEMA = {"anyOf": [call_schema(WEATHER_FN), call_schema(TIME_FN)]}
AUTO_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"tool_call": REQUIRED_SCHEMA},
            "required": ["tool_call"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"content": {"type": "string"}},
            "required": ["content"],
            "additionalProperties": False,
        },
    ]
}


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process({"engine_options": {"structured_output": True}}) as running:
        yield running


@pytest.fixture(scope="module")
def plain() -> Iterator[InProcessServer]:
    with in_process() as running:
        yield running


@pytest.fixture
def answer(server: InProcessServer) -> Iterator[Any]:
    """Sets what the fake engine answers for the rest of the test."""
    options = server.engine.options
    saved = dict(options)

    def set_text(text: str) -> None:
        options["text"] = text

    yield set_text
    options.clear()
    options.update(saved)


def post(
    server: InProcessServer, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[GenerationRequest]]:
    before = len(server.engine.requests)
    with server.client() as http:
        response = http.post(path, json=body, headers=headers or {})
    return response, server.engine.requests[before:]


def stream(server: InProcessServer, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with server.client() as http, http.stream("POST", path, json={**body, "stream": True}) as response:
        raw = b"".join(response.iter_raw())
        assert response.status_code == 200, raw
    return sse_payloads(raw)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def only_request(requests: list[GenerationRequest]) -> GenerationRequest:
    assert len(requests) == 1, requests
    return requests[0]


def assert_tool_call(choice: dict[str, Any], name: str, arguments: str) -> str:
    """The choice is exactly one tool call; returns its id."""
    assert choice["finish_reason"] == "tool_calls", choice
    assert choice["logprobs"] is None
    message = choice["message"]
    assert set(message) == {"role", "content", "tool_calls"}
    assert message["role"] == "assistant"
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call == {"id": call["id"], "type": "function", "function": {"name": name, "arguments": arguments}}
    assert CALL_ID.match(call["id"]), call["id"]
    return str(call["id"])


# What the engine gets ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_required_answers_a_tool_call(server: InProcessServer, answer: Any, path: str) -> None:
    answer(CALL)
    response, requests = post(server, path, {**CHAT, "tools": TOOLS, "tool_choice": "required"})
    body = ok(response)
    assert len(body["choices"]) == 1
    assert_tool_call(body["choices"][0], "get_weather", '{"city": "Paris"}')
    request = only_request(requests)
    assert request.messages == [ChatTurn("system", f"{HEADER}{LISTING}\n{HOW_REQUIRED}"), ChatTurn("user", "hi")]
    assert request.response_format == JsonSchema("tool_call", REQUIRED_SCHEMA)
    assert request.logprobs is None


def test_the_required_schema_admits_exactly_the_tools_calls(server: InProcessServer, answer: Any) -> None:
    answer(CALL)
    _, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": "required"})
    response_format = only_request(requests).response_format
    assert isinstance(response_format, JsonSchema)
    schema = response_format.schema
    jsonschema.validate(json.loads(CALL), schema)
    jsonschema.validate({"name": "get_time", "arguments": {}}, schema)
    for wrong in (
        {"name": "get_wether", "arguments": {"city": "Paris"}},
        {"name": "get_weather", "arguments": {}},
        {"name": "get_weather", "arguments": {"city": "Paris"}, "extra": 1},
        {"content": "hello"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)


def test_a_named_tool_choice_constrains_to_that_tools_call(server: InProcessServer, answer: Any) -> None:
    answer('{"name": "get_time", "arguments": {"zone": "UTC"}}')
    choice = {"type": "function", "function": {"name": "get_time"}}
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": choice})
    assert_tool_call(ok(response)["choices"][0], "get_time", '{"zone": "UTC"}')
    request = only_request(requests)
    how = 'Call get_time: answer with {"name": "get_time", "arguments": <arguments object>}.'
    assert request.messages == [ChatTurn("system", f"{HEADER}{LISTING}\n{how}"), ChatTurn("user", "hi")]
    assert request.response_format == JsonSchema("tool_call", call_schema(TIME_FN))


def test_tool_choice_none_leaves_the_tools_out(server: InProcessServer, answer: Any) -> None:
    answer(CALL)
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": "none"})
    choice = ok(response)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": CALL, "tool_calls": None}
    assert choice["finish_reason"] == "stop"
    request = only_request(requests)
    assert request.messages == [ChatTurn("user", "hi")]
    assert request.response_format is None


@pytest.mark.parametrize("tool_choice", ["auto", None])
def test_auto_answers_content(server: InProcessServer, answer: Any, tool_choice: str | None) -> None:
    answer('{"content": "hello"}')
    body: dict[str, Any] = {**CHAT, "tools": TOOLS}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    response, requests = post(server, "/v1/chat/completions", body)
    choice = ok(response)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "hello", "tool_calls": None}
    assert choice["finish_reason"] == "stop"
    request = only_request(requests)
    assert request.messages == [ChatTurn("system", f"{HEADER}{LISTING}\n{HOW_AUTO}"), ChatTurn("user", "hi")]
    assert request.response_format == JsonSchema("tool_call", AUTO_SCHEMA)
    jsonschema.validate({"content": "hello"}, AUTO_SCHEMA)
    jsonschema.validate(json.loads(AUTO_CALL), AUTO_SCHEMA)


def test_auto_answers_a_tool_call(server: InProcessServer, answer: Any) -> None:
    answer(AUTO_CALL)
    response, _ = post(server, "/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": "auto"})
    assert_tool_call(ok(response)["choices"][0], "get_weather", '{"city": "Paris"}')


def test_usage_counts_the_constrained_answer(server: InProcessServer, answer: Any) -> None:
    answer(CALL)
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": "required"})
    body = ok(response)
    assert body["usage"]["completion_tokens"] == len(CALL.split())
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + len(CALL.split())


def test_each_of_n_choices_gets_its_own_call(server: InProcessServer, answer: Any) -> None:
    answer(CALL)
    response, requests = post(
        server, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": "required", "n": 2}
    )
    choices = ok(response)["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    ids = [assert_tool_call(c, "get_weather", '{"city": "Paris"}') for c in choices]
    assert len(set(ids)) == 2
    assert len(requests) == 2


def test_a_system_message_is_merged_with_the_tool_instructions(server: InProcessServer, answer: Any) -> None:
    answer(CALL)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    _, requests = post(
        server, "/v1/chat/completions", {"messages": messages, "tools": TOOLS, "tool_choice": "required"}
    )
    assert only_request(requests).messages == [
        ChatTurn("system", f"Be brief.\n\n{HEADER}{LISTING}\n{HOW_REQUIRED}"),
        ChatTurn("user", "hi"),
    ]


def test_tools_on_a_model_without_a_system_role_are_described_in_the_first_user_turn() -> None:
    # Such a template refuses system turns: the tool instructions must be folded like a system message.
    model = replace(FAKE_MODEL, profile=ModelProfile(system_role=False))
    settings = {"engine_options": {"structured_output": True, "text": CALL}}
    with in_process(settings, model=model) as running:
        response, requests = post(running, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": "required"})
        assert_tool_call(ok(response)["choices"][0], "get_weather", '{"city": "Paris"}')
        assert only_request(requests).messages == [ChatTurn("user", f"{HEADER}{LISTING}\n{HOW_REQUIRED}\n\nhi")]


# Streamed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_a_streamed_tool_call_is_an_id_and_name_then_argument_fragments(
    server: InProcessServer, answer: Any, path: str
) -> None:
    answer(LONG_CALL)
    body = {**CHAT, "tools": TOOLS, "tool_choice": "required"}
    whole = ok(post(server, path, body)[0])
    assert_tool_call(whole["choices"][0], "get_weather", LONG_ARGUMENTS)
    payloads = stream(server, path, body)
    assert all(len(p["choices"]) == 1 and p["choices"][0]["index"] == 0 for p in payloads), payloads
    role, first, *fragments, last = payloads
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert role["choices"][0]["finish_reason"] is None
    [start] = first["choices"][0]["delta"]["tool_calls"]
    assert set(first["choices"][0]["delta"]) == {"tool_calls"}
    assert start == {
        "index": 0,
        "id": start["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert CALL_ID.match(start["id"])
    assert len(fragments) >= 2, fragments  # long enough to be cut into several fragments
    pieces = []
    for payload in fragments:
        choice = payload["choices"][0]
        assert choice["finish_reason"] is None
        assert set(choice["delta"]) == {"tool_calls"}, choice
        [delta] = choice["delta"]["tool_calls"]
        assert set(delta) == {"index", "function"} and delta["index"] == 0, delta
        assert set(delta["function"]) == {"arguments"} and delta["function"]["arguments"], delta
        pieces.append(delta["function"]["arguments"])
    assert "".join(pieces) == LONG_ARGUMENTS == whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert not last["choices"][0]["delta"].get("content")
    assert "tool_calls" not in last["choices"][0]["delta"]
    if path == "/chat/completions":
        assert last["usage"] == whole["usage"]
    assert not any(p["choices"][0]["delta"].get("content") for p in payloads)


def test_a_streamed_content_answer_is_the_content_only(server: InProcessServer, answer: Any) -> None:
    answer('{"content": "hello there"}')
    payloads = stream(server, "/v1/chat/completions", {**CHAT, "tools": TOOLS})
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads) == "hello there"
    assert not any("tool_calls" in p["choices"][0]["delta"] for p in payloads)
    assert [p["choices"][0]["finish_reason"] for p in payloads][-1] == "stop"


def test_streamed_tool_calls_of_n_choices_each_start_with_their_own_role_and_id(
    server: InProcessServer, answer: Any
) -> None:
    answer(CALL)
    payloads = stream(
        server,
        "/v1/chat/completions",
        {**CHAT, "tools": TOOLS, "tool_choice": "required", "n": 2, "stream_options": {"include_usage": True}},
    )
    *chunks, trailer = payloads
    assert trailer["choices"] == [] and trailer["usage"]["completion_tokens"] == 2 * len(CALL.split())
    ids = []
    for index in (0, 1):
        choices = [p["choices"][0] for p in chunks if p["choices"][0]["index"] == index]
        assert choices[0]["delta"] == {"role": "assistant", "content": ""}
        deltas = [d for c in choices for d in c["delta"].get("tool_calls", [])]
        assert deltas[0]["function"]["name"] == "get_weather" and deltas[0]["function"]["arguments"] == ""
        ids.append(deltas[0]["id"])
        assert all("id" not in d for d in deltas[1:])
        assert "".join(d["function"]["arguments"] for d in deltas) == '{"city": "Paris"}'
        assert [c["finish_reason"] for c in choices if c["finish_reason"]] == ["tool_calls"]
        assert choices[-1]["finish_reason"] == "tool_calls"
    assert len(set(ids)) == 2 and all(CALL_ID.match(i) for i in ids)


@pytest.mark.parametrize("stream_it", [False, True])
def test_an_auto_answer_that_is_json_but_not_an_object_is_the_raw_text(
    server: InProcessServer, answer: Any, stream_it: bool
) -> None:
    # Not what a grammar lets through, but an engine that answers it must not break the response.
    answer("[1, 2]")
    body = {**CHAT, "tools": TOOLS, "tool_choice": "auto"}
    if not stream_it:
        choice = ok(post(server, "/v1/chat/completions", body)[0])["choices"][0]
        assert choice["message"] == {"role": "assistant", "content": "[1, 2]", "tool_calls": None}
        assert choice["finish_reason"] == "stop"
        return
    with server.client() as http, http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        raw = b"".join(r.iter_raw())
    assert r.status_code == 200
    payloads = sse_payloads(raw)
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads) == "[1, 2]"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"


# Cut answers ------------------------------------------------------------------------------------


def test_an_answer_cut_by_max_tokens_is_the_raw_text_with_finish_length(server: InProcessServer, answer: Any) -> None:
    answer(CALL)
    body = {**CHAT, "tools": TOOLS, "tool_choice": "required", "max_tokens": 3}
    choice = ok(post(server, "/v1/chat/completions", body)[0])["choices"][0]
    cut = '{"name": "get_weather", "arguments": '
    assert choice["message"] == {"role": "assistant", "content": cut, "tool_calls": None}
    assert choice["finish_reason"] == "length"
    payloads = stream(server, "/v1/chat/completions", body)
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads) == cut
    assert [p["choices"][0]["finish_reason"] for p in payloads if p["choices"][0]["finish_reason"]] == ["length"]
    assert not any("tool_calls" in p["choices"][0]["delta"] for p in payloads)


# Round trip -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool_choice, rendered",
    [
        ("required", '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
        ("auto", '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'),
    ],
)
@pytest.mark.parametrize("arguments", [{"city": "Paris"}, '{"city": "Paris"}'])
def test_an_earlier_call_and_its_result_reach_the_model_in_the_answer_format(
    server: InProcessServer, answer: Any, tool_choice: str, rendered: str, arguments: Any
) -> None:
    answer('{"content": "It is sunny."}' if tool_choice == "auto" else CALL)
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18C and sunny"},
    ]
    body = {"messages": messages, "tools": TOOLS, "tool_choice": tool_choice}
    response, requests = post(server, "/chat/completions", body)
    ok(response)
    how = HOW_AUTO if tool_choice == "auto" else HOW_REQUIRED
    assert only_request(requests).messages == [
        ChatTurn("system", f"{HEADER}{LISTING}\n{how}"),
        ChatTurn("user", "Weather in Paris?"),
        ChatTurn("assistant", rendered),
        ChatTurn("user", "Result of call call_abc: 18C and sunny"),
    ]


# Limits -----------------------------------------------------------------------------------------


def test_more_tools_than_max_tools_is_400(server: InProcessServer) -> None:
    tools = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(65)]
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": tools})
    assert_error(response, 400, "invalid_request", param="tools", message="`tools` may hold at most 64 tools; got 65")
    assert requests == []
    response, _ = post(server, "/v1/chat/completions", {**CHAT, "tools": tools[:64], "tool_choice": "none"})
    ok(response)


def test_max_tools_follows_the_setting() -> None:
    with in_process({"max_tools": 1, "engine_options": {"structured_output": True, "text": CALL}}) as running:
        response, _ = post(running, "/v1/chat/completions", {**CHAT, "tools": TOOLS})
        assert_error(response, 400, "invalid_request", param="tools", message="`tools` may hold at most 1 tools; got 2")
        response, _ = post(running, "/v1/chat/completions", {**CHAT, "tools": [WEATHER], "tool_choice": "required"})
        assert_tool_call(ok(response)["choices"][0], "get_weather", '{"city": "Paris"}')


def test_duplicate_tool_names_are_400(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": [WEATHER, TIME, WEATHER]})
    assert_error(response, 400, "invalid_request", param="tools", message="`tools` names a function twice")
    assert requests == []


def test_a_named_tool_choice_outside_the_tools_is_400(server: InProcessServer) -> None:
    choice = {"type": "function", "function": {"name": "get_news"}}
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": choice})
    assert_error(
        response,
        400,
        "invalid_request",
        param="tool_choice",
        message="`tool_choice` names 'get_news', which is not in `tools`",
    )
    assert requests == []


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_tool_choice_that_needs_tools_without_tools_is_400(server: InProcessServer, choice: Any) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tool_choice": choice})
    assert_error(response, 400, "invalid_request", param="tool_choice")
    assert requests == []


@pytest.mark.parametrize("choice", ["none", "auto"])
def test_tool_choice_none_or_auto_without_tools_is_a_plain_answer(server: InProcessServer, choice: str) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tool_choice": choice})
    ok(response)
    assert only_request(requests).messages == [ChatTurn("user", "hi")]
    assert only_request(requests).response_format is None


@pytest.mark.parametrize(
    "fmt",
    [{"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}],
)
def test_a_json_response_format_with_tools_is_400(server: InProcessServer, fmt: dict[str, Any]) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "response_format": fmt})
    assert_error(
        response,
        400,
        "invalid_request",
        param="response_format",
        message="`response_format` cannot be combined with `tools`",
    )
    assert requests == []


def test_a_text_response_format_with_tools_is_fine(server: InProcessServer, answer: Any) -> None:
    answer(CALL)
    body = {**CHAT, "tools": TOOLS, "tool_choice": "required", "response_format": {"type": "text"}}
    assert_tool_call(
        ok(post(server, "/v1/chat/completions", body)[0])["choices"][0], "get_weather", '{"city": "Paris"}'
    )


@pytest.mark.parametrize(
    "path, extra, headers",
    [
        ("/v1/chat/completions", {"logprobs": True}, {}),
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 2}, {}),
        ("/chat/completions", {"logprobs": 2}, {"extra-parameters": "pass-through"}),
    ],
)
def test_logprobs_with_tools_is_400(
    server: InProcessServer, path: str, extra: dict[str, Any], headers: dict[str, str]
) -> None:
    response, requests = post(server, path, {**CHAT, "tools": TOOLS, **extra}, headers)
    assert_error(
        response, 400, "invalid_request", param="logprobs", message="`logprobs` cannot be combined with `tools`"
    )
    assert requests == []


def test_a_tool_schema_constrained_decoding_cannot_enforce_is_400(server: InProcessServer) -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {"type": "null"}}}}
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": [WEATHER, bad]})
    assert_error(
        response,
        400,
        "invalid_request",
        param="tools.1.function.parameters",
        message="the JSON Schema keyword 'not' is not supported by constrained decoding (at #/not)",
    )
    assert requests == []


def test_tools_over_64_kib_of_json_are_400(server: InProcessServer) -> None:
    big = {"type": "function", "function": {"name": "big", "description": "x" * (64 * 1024)}}
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "tools": [big]})
    body = assert_error(response, 400, "invalid_request", param="tools")
    size = len(json.dumps([big["function"]]))
    assert body["error"]["message"] == f"`tools` is {size} bytes of JSON; the limit is 65536"
    assert requests == []


def test_tools_on_an_engine_without_constrained_decoding_are_422(plain: InProcessServer) -> None:
    response, requests = post(plain, "/v1/chat/completions", {**CHAT, "tools": TOOLS})
    why = "tools need constrained decoding, which this deployment's engine lacks"
    body = assert_error(response, 422, "parameter_not_supported", param="tools", message=why)
    assert body["detail"] == [
        {"loc": ["body", "tools"], "input": ["get_weather", "get_time"], "msg": why, "type": "parameter_not_supported"}
    ]
    assert requests == []
    # tool_choice none needs no constrained decoding.
    response, requests = post(plain, "/v1/chat/completions", {**CHAT, "tools": TOOLS, "tool_choice": "none"})
    ok(response)
    assert only_request(requests).messages == [ChatTurn("user", "hi")]

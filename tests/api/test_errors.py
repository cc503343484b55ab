"""Bad input is a 4xx that names the field and the rule, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import CHAT, assert_error
from tests.conftest import InProcessServer, in_process

LIMITS = {"max_body_bytes": 2048, "context_size": 128, "max_tokens_limit": 100, "max_messages": 3}
USER = {"role": "user", "content": "hi"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process(LIMITS) as running:
        yield running


@pytest.fixture
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.client() as authed:
        yield authed


def post_raw(server: InProcessServer, path: str, raw: bytes) -> httpx.Response:
    # A fresh connection each time: a server error may close the one it happened on.
    with server.client() as authed:
        return authed.post(path, content=raw, headers=JSON)


# --- bodies that are not a JSON object -------------------------------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            b"{",
            "the request body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (b'{"messages": [}', "the request body is not valid JSON: Expecting value: line 1 column 15 (char 14)"),
        (b"", "the request body is empty; expected a JSON object"),
        (b"  \n ", "the request body is empty; expected a JSON object"),
        (b"[]", "the request body must be a JSON object; got list"),
        (b'[{"role": "user", "content": "hi"}]', "the request body must be a JSON object; got list"),
        (b'"hello"', "the request body must be a JSON object; got str"),
        (b"42", "the request body must be a JSON object; got int"),
        (b"null", "the request body must be a JSON object; got NoneType"),
    ],
)
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions", "/completions"])
def test_a_body_that_is_not_a_json_object_is_400_invalid_json(
    server: InProcessServer, path: str, raw: bytes, message: str
) -> None:
    body = assert_error(post_raw(server, path, raw), 400, "invalid_json", param=None, message=message)
    assert body["error"]["type"] == "invalid_request_error"


def test_a_body_that_is_not_utf8_is_400_invalid_json(server: InProcessServer) -> None:
    assert_error(post_raw(server, "/chat/completions", b"\xff\xfe{}"), 400, "invalid_json", param=None)


def test_deeply_nested_json_is_400_invalid_json_not_500() -> None:
    # Deeper than Python's recursion limit, well under the default 4 MiB body limit.
    raw = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with in_process() as running:
        assert_error(post_raw(running, "/chat/completions", raw), 400, "invalid_json", param=None)


@pytest.mark.parametrize("key, literal", [("min_p", b"NaN"), ("min_p", b"Infinity"), ("foo", b"-Infinity")])
def test_non_json_number_literals_are_400_invalid_json(server: InProcessServer, literal: bytes, key: str) -> None:
    # NaN and Infinity are not JSON (RFC 8259), though Python's json module reads them. Here they
    # would reach the engine (min_p, a pass-through extra on /v1) or the 422 that echoes the input.
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "' + key.encode() + b'": ' + literal + b"}"
    assert_error(post_raw(server, "/v1/chat/completions", raw), 400, "invalid_json", param=None)


# --- schema violations -----------------------------------------------------------------------

SCHEMA_CASES: list[Any] = [
    pytest.param({}, "messages", "`messages` is required", id="no-messages"),
    pytest.param(
        {"messages": "hi"}, "messages", '`messages`: Input should be a valid list; got "hi"', id="messages-not-a-list"
    ),
    pytest.param({"messages": {"role": "user", "content": "hi"}}, "messages", None, id="messages-an-object"),
    pytest.param(
        {"messages": []},
        "messages",
        "`messages`: List should have at least 1 item after validation, not 0; got []",
        id="empty-messages",
    ),
    pytest.param({"messages": ["hi"]}, "messages.0", None, id="message-not-an-object"),
    pytest.param(
        {"messages": [{"role": "bot", "content": "x"}]},
        "messages.0.role",
        "`messages.0.role`: Input tag 'bot' found using 'role' does not match any of the expected tags: "
        "'system', 'developer', 'user', 'assistant', 'tool'; got \"bot\"",
        id="unknown-role",
    ),
    pytest.param({"messages": [{"content": "x"}]}, "messages.0.role", None, id="missing-role"),
    pytest.param(
        {"messages": [{"role": "user"}]}, "messages.0.content", "`messages.0.content` is required", id="missing-content"
    ),
    pytest.param({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", None, id="content-a-number"),
    pytest.param(
        {"messages": [{"role": "tool", "content": "x"}]},
        "messages.0.tool_call_id",
        "`messages.0.tool_call_id` is required",
        id="tool-without-tool-call-id",
    ),
    pytest.param(
        {"messages": [USER, {"role": "system", "content": None}]}, "messages.1.content", None, id="system-content-null"
    ),
    pytest.param(
        {**CHAT, "max_tokens": "10"},
        "max_tokens",
        '`max_tokens`: Input should be a valid integer; got "10"',
        id="max-tokens-a-string",
    ),
    pytest.param(
        {**CHAT, "max_tokens": 1.5},
        "max_tokens",
        "`max_tokens`: Input should be a valid integer; got 1.5",
        id="max-tokens-a-fraction",
    ),
    pytest.param(
        {**CHAT, "max_tokens": True},
        "max_tokens",
        "`max_tokens`: Input should be a valid integer; got true",
        id="max-tokens-a-boolean",
    ),
    pytest.param(
        {**CHAT, "max_tokens": 0},
        "max_tokens",
        "`max_tokens`: Input should be greater than or equal to 1; got 0",
        id="max-tokens-zero",
    ),
    pytest.param(
        {**CHAT, "max_tokens": -5},
        "max_tokens",
        "`max_tokens`: Input should be greater than or equal to 1; got -5",
        id="max-tokens-negative",
    ),
    pytest.param(
        {**CHAT, "temperature": "hot"},
        "temperature",
        '`temperature`: Input should be a valid number; got "hot"',
        id="temperature-a-string",
    ),
    pytest.param(
        {**CHAT, "temperature": 3},
        "temperature",
        "`temperature`: Input should be less than or equal to 2; got 3",
        id="temperature-over-2",
    ),
    pytest.param(
        {**CHAT, "temperature": -0.5},
        "temperature",
        "`temperature`: Input should be greater than or equal to 0; got -0.5",
        id="temperature-negative",
    ),
    pytest.param(
        {**CHAT, "top_p": 2}, "top_p", "`top_p`: Input should be less than or equal to 1; got 2", id="top-p-over-1"
    ),
    pytest.param(
        {**CHAT, "stream": "yes"},
        "stream",
        '`stream`: Input should be a valid boolean; got "yes"',
        id="stream-a-string",
    ),
    pytest.param(
        {**CHAT, "stream": 1}, "stream", "`stream`: Input should be a valid boolean; got 1", id="stream-a-number"
    ),
    pytest.param({**CHAT, "frequency_penalty": 2.5}, "frequency_penalty", None, id="frequency-penalty-over-2"),
    pytest.param({**CHAT, "stop": 5}, "stop", None, id="stop-a-number"),
    pytest.param({**CHAT, "stop": []}, "stop", None, id="stop-empty-list"),
    pytest.param({**CHAT, "stop": ["x"] * 17}, "stop", None, id="stop-17-sequences"),
    pytest.param({**CHAT, "seed": "1"}, "seed", None, id="seed-a-string"),
]


@pytest.mark.parametrize("body, param, message", SCHEMA_CASES)
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_a_schema_violation_is_400_naming_the_field_and_the_rule(
    http: httpx.Client, path: str, body: dict[str, Any], param: str, message: str | None
) -> None:
    error = assert_error(http.post(path, json=body), 400, "invalid_request", param=param, message=message)
    # The message starts with the field it is about, as the client wrote it.
    assert error["error"]["message"].startswith(f"`{param}`"), error


@pytest.mark.parametrize(
    "path, body, param, rule",
    [
        ("/chat/completions", {**CHAT, "stop": ["x"] * 17}, "stop", "at most 16 items"),
        ("/chat/completions", {**CHAT, "stop": []}, "stop", "at least 1 item"),
        ("/v1/completions", {"prompt": []}, "prompt", "at least 1 item"),
    ],
)
def test_a_rule_broken_by_a_list_is_named_not_hidden_behind_the_string_branch(
    http: httpx.Client, path: str, body: dict[str, Any], param: str, rule: str
) -> None:
    # stop and prompt take a string or a list: the message must name the list rule that broke,
    # not say "should be a valid string" about a list.
    error = assert_error(http.post(path, json=body), 400, "invalid_request", param=param)
    assert rule in error["error"]["message"], error


def test_a_streaming_request_with_a_schema_violation_gets_a_json_400_not_a_stream(http: httpx.Client) -> None:
    assert_error(
        http.post("/chat/completions", json={**CHAT, "stream": True, "max_tokens": 0}),
        400,
        "invalid_request",
        param="max_tokens",
    )


@pytest.mark.parametrize(
    "body, param",
    [
        ({}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "hi", "max_tokens": "3"}, "max_tokens"),
        ({"prompt": "hi", "temperature": 9}, "temperature"),
    ],
)
@pytest.mark.parametrize("path", ["/completions", "/v1/completions"])
def test_a_completion_schema_violation_is_400_naming_the_field(
    http: httpx.Client, path: str, body: dict[str, Any], param: str
) -> None:
    assert_error(http.post(path, json=body), 400, "invalid_request", param=param)


def test_an_invalid_value_that_is_a_lone_surrogate_is_400_not_500(server: InProcessServer) -> None:
    # The message quotes the value; quoting it must not break the response.
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "\\ud800"}'
    assert_error(post_raw(server, "/chat/completions", raw), 400, "invalid_request", param="max_tokens")


# --- deployment limits -----------------------------------------------------------------------


def test_max_tokens_over_the_limit_is_400_naming_the_limit_and_the_deployment(http: httpx.Client) -> None:
    assert_error(
        http.post("/chat/completions", json={**CHAT, "max_tokens": 101}),
        400,
        "invalid_request",
        param="max_tokens",
        message="`max_tokens` must be at most 100 for deployment 'fake-model'; got 101",
    )


def test_max_tokens_at_the_limit_is_accepted(http: httpx.Client) -> None:
    assert http.post("/chat/completions", json={**CHAT, "max_tokens": 100}).status_code == 200


def test_max_completion_tokens_over_the_limit_is_400_naming_max_completion_tokens(http: httpx.Client) -> None:
    assert_error(
        http.post("/v1/chat/completions", json={**CHAT, "max_completion_tokens": 500}),
        400,
        "invalid_request",
        param="max_completion_tokens",
        message="`max_completion_tokens` must be at most 100 for deployment 'fake-model'; got 500",
    )


def test_completion_max_tokens_over_the_limit_is_400(http: httpx.Client) -> None:
    assert_error(
        http.post("/completions", json={"prompt": "hi", "max_tokens": 101}),
        400,
        "invalid_request",
        param="max_tokens",
        message="`max_tokens` must be at most 100 for deployment 'fake-model'; got 101",
    )


def test_more_messages_than_max_messages_is_400(http: httpx.Client) -> None:
    assert_error(
        http.post("/chat/completions", json={"messages": [USER] * 4}),
        400,
        "invalid_request",
        param="messages",
        message="`messages` may hold at most 3 messages; got 4",
    )


def test_exactly_max_messages_is_accepted(http: httpx.Client) -> None:
    assert http.post("/chat/completions", json={"messages": [USER] * 3}).status_code == 200


def test_a_prompt_longer_than_the_context_is_400_context_length_exceeded(http: httpx.Client) -> None:
    # The fake engine counts a word as a token, plus 3 per message: 130 + 3 > 128.
    long_chat = {"messages": [{"role": "user", "content": "w " * 130}]}
    assert_error(
        http.post("/chat/completions", json=long_chat),
        400,
        "context_length_exceeded",
        param="messages",
        message="the prompt is 133 tokens long; this deployment's context is 128 tokens",
    )


def test_a_streaming_prompt_longer_than_the_context_is_refused_before_the_stream(http: httpx.Client) -> None:
    long_chat = {"messages": [{"role": "user", "content": "w " * 130}], "stream": True}
    assert_error(http.post("/v1/chat/completions", json=long_chat), 400, "context_length_exceeded", param="messages")


def test_a_completion_prompt_longer_than_the_context_names_prompt(http: httpx.Client) -> None:
    assert_error(http.post("/completions", json={"prompt": "w " * 130}), 400, "context_length_exceeded", param="prompt")


def test_a_refused_prompt_leaves_no_request_in_flight(server: InProcessServer, http: httpx.Client) -> None:
    for _ in range(5):
        http.post("/chat/completions", json={"messages": [{"role": "user", "content": "w " * 130}]})
    assert server.deployment.in_flight == 0
    assert server.engine.active == 0


# --- body size -------------------------------------------------------------------------------

TOO_LARGE = "the request body is larger than the limit of 2048 bytes"


def oversized() -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "x" * 3000}]}).encode()


def test_a_body_over_max_body_bytes_with_content_length_is_413(http: httpx.Client) -> None:
    body = assert_error(
        http.post("/chat/completions", content=oversized(), headers=JSON),
        413,
        "payload_too_large",
        param=None,
        message=TOO_LARGE,
    )
    assert body["error"]["type"] == "invalid_request_error"


def test_a_chunked_body_over_max_body_bytes_is_413(http: httpx.Client) -> None:
    data = oversized()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 500):
            yield data[start : start + 500]

    request = http.build_request("POST", "/chat/completions", content=chunks(), headers=JSON)
    assert request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in request.headers
    assert_error(http.send(request), 413, "payload_too_large", param=None, message=TOO_LARGE)


def test_a_body_of_exactly_max_body_bytes_is_accepted(http: httpx.Client) -> None:
    data = json.dumps(CHAT).encode()
    data += b" " * (2048 - len(data))
    assert len(data) == 2048
    assert http.post("/chat/completions", content=data, headers=JSON).status_code == 200


def test_an_oversized_body_is_refused_on_every_route(http: httpx.Client) -> None:
    for path in ("/completions", "/v1/chat/completions", "/models/chat/completions"):
        assert_error(http.post(path, content=oversized(), headers=JSON), 413, "payload_too_large")


# --- what the deployment cannot do: 422 parameter_not_supported ------------------------------


def not_supported(response: httpx.Response, loc: list[Any], value: Any, msg: str) -> None:
    body = assert_error(response, 422, "parameter_not_supported", message=msg)
    assert body["error"]["param"] == ".".join(str(part) for part in loc[1:])
    assert body["status"] == 422
    assert body["code"] == "parameter_not_supported"
    assert body["message"] == msg
    assert body["detail"] == [{"loc": loc, "input": value, "msg": msg, "type": "parameter_not_supported"}]


IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_an_image_in_user_content_is_422_with_its_loc(http: httpx.Client, path: str) -> None:
    content = [{"type": "text", "text": "what is this?"}, IMAGE]
    not_supported(
        http.post(path, json={"messages": [{"role": "user", "content": content}]}),
        ["body", "messages", 0, "content", 1, "type"],
        "image_url",
        "deployment 'fake-model' does not accept images",
    )


def test_audio_in_user_content_is_422_with_its_loc(http: httpx.Client) -> None:
    content = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]
    not_supported(
        http.post("/chat/completions", json={"messages": messages}),
        ["body", "messages", 1, "content", 0, "type"],
        "input_audio",
        "deployment 'fake-model' does not accept audio",
    )


def test_n_1_on_v1_is_accepted(http: httpx.Client) -> None:
    assert http.post("/v1/chat/completions", json={**CHAT, "n": 1}).status_code == 200


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_response_format_json_object_is_422_without_constrained_decoding(http: httpx.Client, path: str) -> None:
    not_supported(
        http.post(path, json={**CHAT, "response_format": {"type": "json_object"}}),
        ["body", "response_format"],
        "json_object",
        "response_format 'json_object' needs constrained decoding, which this deployment's engine lacks",
    )


def test_response_format_text_is_accepted(http: httpx.Client) -> None:
    assert http.post("/chat/completions", json={**CHAT, "response_format": {"type": "text"}}).status_code == 200


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_tools_are_422_without_constrained_decoding(http: httpx.Client, path: str) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    not_supported(
        http.post(path, json={**CHAT, "tools": tools}),
        ["body", "tools"],
        ["get_weather"],
        "tools need constrained decoding, which this deployment's engine lacks",
    )


def test_every_unsupported_parameter_is_listed_in_one_422(http: httpx.Client) -> None:
    body = {**CHAT, "use_beam_search": True, "stop_token_ids": [2], "response_format": {"type": "json_object"}}
    error = assert_error(http.post("/v1/chat/completions", json=body), 422, "parameter_not_supported")
    assert [entry["loc"] for entry in error["detail"]] == [
        ["body", "use_beam_search"],
        ["body", "stop_token_ids"],
        ["body", "response_format"],
    ]


def test_a_streaming_request_for_something_unsupported_gets_a_json_422(http: httpx.Client) -> None:
    body = {**CHAT, "response_format": {"type": "json_object"}, "stream": True}
    assert_error(http.post("/v1/chat/completions", json=body), 422, "parameter_not_supported")


# --- Retry-After only on 429 and 503 ---------------------------------------------------------


def test_no_4xx_or_500_error_carries_retry_after() -> None:
    with in_process({**LIMITS, "engine_options": {"fail_after": 1}}) as running, running.client() as authed:
        responses = [
            authed.post("/chat/completions", content=b"{", headers=JSON),
            authed.post("/chat/completions", json={"messages": []}),
            authed.post("/chat/completions", json={**CHAT, "foo": 1}),
            authed.post("/chat/completions", json=CHAT, headers={"extra-parameters": "bogus"}),
            authed.post("/v1/chat/completions", json={**CHAT, "foo": 1}),
            authed.post("/v1/chat/completions", json={**CHAT, "n": 2}),
            authed.post("/chat/completions", json={"messages": [{"role": "user", "content": "w " * 130}]}),
            authed.post("/chat/completions", content=oversized(), headers=JSON),
            authed.get("/nope"),
            authed.get("/chat/completions"),
            httpx.post(f"{running.url}/chat/completions", json=CHAT),
        ]
        with running.client() as fresh:
            responses.append(fresh.post("/chat/completions", json=CHAT))  # engine_error, 500
    assert sorted({r.status_code for r in responses}) == [400, 401, 404, 405, 413, 422, 500]
    for response in responses:
        assert "retry-after" not in response.headers, (response.status_code, response.text)

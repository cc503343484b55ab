"""Azure OpenAI's data plane (/openai/deployments/{name}/...), Foundry's /openai/v1, and the
leniencies of the Azure surface: max_completion_tokens, parallel_tool_calls, the route-word
deployment name litellm's azure_ai provider merges into the path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimi.deployments.profile import ModelProfile
from aimi.deployments.sources import ResolvedModel
from aimi.engines.api import GenerationRequest
from tests.api.helpers import CHAT, COMPLETION, assert_error, sse_payloads
from tests.conftest import InProcessServer, in_process

AOAI = "/openai/deployments/fake-model"
VERSION = {"api-version": "2024-10-21"}
NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, "
    "please wait a moment and try again."
)
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
EMBED_MODEL = ResolvedModel(
    Path("/nonexistent/fake-embed"), "fake-embed", "Fake-Embed", ModelProfile(model_type="embeddings", provider="aimi")
)
CHAT_NAMED_CHAT = ResolvedModel(Path("/nonexistent/chat.gguf"), "chat", "Chat-Model", ModelProfile(provider="aimi"))


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process({"engine_options": {"structured_output": True}}) as running:
        yield running


@pytest.fixture
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.client() as authed:
        yield authed


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# The routes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [f"{AOAI}/chat/completions", "/openai/v1/chat/completions"])
def test_chat_whole_answers_the_openai_shape(http: httpx.Client, path: str) -> None:
    body = ok(http.post(path, params=VERSION, json=CHAT))
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "fake-model"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


@pytest.mark.parametrize("path", [f"{AOAI}/chat/completions", "/openai/v1/chat/completions"])
def test_chat_streamed_ends_with_done_and_usage_when_asked(http: httpx.Client, path: str) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", path, params=VERSION, json=body) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200, raw
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(raw)
    assert {p["object"] for p in payloads} == {"chat.completion.chunk"}
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [p["choices"][0]["finish_reason"] for p in payloads if p["choices"]][-1] == "stop"
    assert payloads[-1]["choices"] == []
    assert payloads[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("path", [f"{AOAI}/completions", "/openai/v1/completions"])
def test_text_completions_answer(http: httpx.Client, path: str) -> None:
    body = ok(http.post(path, params=VERSION, json=COMPLETION))
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"]


def test_the_body_model_is_ignored_where_the_path_names_the_deployment(http: httpx.Client) -> None:
    body = ok(http.post(f"{AOAI}/chat/completions", params=VERSION, json={**CHAT, "model": "gpt-4o"}))
    assert body["model"] == "fake-model"


def test_info_names_the_path_deployment(http: httpx.Client) -> None:
    response = http.get(f"{AOAI}/info", params=VERSION)
    assert response.json() == {
        "model_name": "Fake-Model",
        "model_type": "chat-completions",
        "model_provider_name": "aimi",
    }


def test_openai_v1_models_lists_the_deployments(http: httpx.Client) -> None:
    assert ok(http.get("/openai/v1/models")) == ok(http.get("/v1/models"))


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/openai/deployments/nope/chat/completions"),
        ("POST", "/openai/deployments/nope/completions"),
        ("POST", "/openai/deployments/nope/embeddings"),
        ("GET", "/openai/deployments/nope/info"),
    ],
)
def test_an_unknown_deployment_is_azure_openais_deployment_not_found(
    http: httpx.Client, method: str, path: str
) -> None:
    body = {"input": "hi"} if path.endswith("embeddings") else {**CHAT, "prompt": "hi"}
    response = http.request(method, path, params=VERSION, json=body if method == "POST" else None)
    assert assert_error(response, 404, "DeploymentNotFound", param=None, message=NOT_FOUND) == {
        "error": {"code": "DeploymentNotFound", "message": NOT_FOUND, "type": "not_found_error", "param": None}
    }


def test_an_unknown_deployment_elsewhere_keeps_the_not_found_answer(http: httpx.Client) -> None:
    assert_error(
        http.post("/deployments/nope/chat/completions", json=CHAT),
        404,
        "NotFound",
        message="no deployment named 'nope'",
    )


@pytest.mark.parametrize("api_version", [None, "2024-10-21", "2025-04-01-preview", "not-a-version", ""])
def test_any_api_version_or_none_is_accepted(http: httpx.Client, api_version: str | None) -> None:
    # Azure OpenAI answers 404 "Resource not found" without one; every Azure OpenAI client sends one,
    # so aimi is lenient like its Azure AI Model Inference routes.
    params = {} if api_version is None else {"api-version": api_version}
    assert ok(http.post(f"{AOAI}/chat/completions", params=params, json=CHAT))["object"] == "chat.completion"
    assert ok(http.get(f"{AOAI}/info", params=params))["model_name"] == "Fake-Model"


def test_api_key_and_bearer_both_authenticate_and_a_wrong_key_is_401(server: InProcessServer) -> None:
    key = server.headers.get("api-key") or server.headers["Authorization"].removeprefix("Bearer ")
    path = f"{server.url}{AOAI}/chat/completions"
    assert httpx.post(path, params=VERSION, json=CHAT, headers={"api-key": key}).status_code == 200
    assert httpx.post(path, params=VERSION, json=CHAT, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert_error(httpx.post(path, params=VERSION, json=CHAT, headers={"api-key": "wrong"}), 401, "Unauthorized")


def test_a_tool_call_on_the_azure_openai_route(server: InProcessServer, http: httpx.Client) -> None:
    options = server.engine.options
    saved = dict(options)
    options["text"] = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    try:
        body = ok(
            http.post(
                f"{AOAI}/chat/completions",
                params=VERSION,
                json={**CHAT, "tools": [TOOL], "tool_choice": "required", "parallel_tool_calls": False},
            )
        )
    finally:
        options.clear()
        options.update(saved)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_json_output_on_the_azure_openai_route(server: InProcessServer, http: httpx.Client) -> None:
    options = server.engine.options
    saved = dict(options)
    options["text"] = '{"answer": 4}'
    try:
        body = ok(
            http.post(
                f"{AOAI}/chat/completions", params=VERSION, json={**CHAT, "response_format": {"type": "json_object"}}
            )
        )
    finally:
        options.clear()
        options.update(saved)
    assert json.loads(body["choices"][0]["message"]["content"]) == {"answer": 4}


def test_embeddings_on_the_azure_openai_route() -> None:
    with in_process({"engine_options": {"kind": "embeddings"}}, model=EMBED_MODEL) as running, running.client() as http:
        body = ok(http.post("/openai/deployments/fake-embed/embeddings", params=VERSION, json={"input": ["a", "b"]}))
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert body["model"] == "fake-embed"
        assert ok(http.post("/openai/v1/embeddings", json={"input": "a"}))["data"][0]["object"] == "embedding"
        assert ok(http.get("/openai/deployments/fake-embed/info"))["model_type"] == "embeddings"


def test_usage_records_name_the_azure_openai_surface(server: InProcessServer, http: httpx.Client) -> None:
    from aimi.pipeline.context import AZURE_OPENAI
    from aimi.server.middleware.context import surface_of

    assert surface_of("/openai/deployments/x/chat/completions") == AZURE_OPENAI == "azure-openai"
    assert surface_of("/openai/v1/chat/completions") == "openai"
    assert surface_of("/deployments/x/v1/chat/completions") == "openai"
    assert surface_of("/models/chat/completions") == "azure"


# Leniency of the Azure surface -------------------------------------------------------------------


def last_max_tokens(server: InProcessServer) -> int | None:
    request: GenerationRequest = server.engine.requests[-1]
    return request.max_tokens


@pytest.mark.parametrize("path", ["/chat/completions", "/models/chat/completions"])
def test_max_completion_tokens_is_max_tokens_on_the_azure_surface(
    server: InProcessServer, http: httpx.Client, path: str
) -> None:
    ok(http.post(path, json={**CHAT, "max_completion_tokens": 7}))
    assert last_max_tokens(server) == 7
    ok(http.post(path, json={**CHAT, "max_completion_tokens": 7, "max_tokens": 7}))
    assert last_max_tokens(server) == 7
    ok(http.post(path, json={**CHAT, "max_tokens": 5}))
    assert last_max_tokens(server) == 5


@pytest.mark.parametrize("path", ["/chat/completions", "/models/chat/completions"])
def test_different_max_tokens_and_max_completion_tokens_are_a_400_naming_both(http: httpx.Client, path: str) -> None:
    assert_error(
        http.post(path, json={**CHAT, "max_completion_tokens": 7, "max_tokens": 5}),
        400,
        "invalid_request",
        param="max_completion_tokens",
        message="`max_tokens` and `max_completion_tokens` are the same limit: give one, or the same value to both; "
        "got 5 and 7",
    )


def test_max_completion_tokens_over_the_limit_on_the_azure_surface_names_it(http: httpx.Client) -> None:
    assert_error(
        http.post("/chat/completions", json={**CHAT, "max_completion_tokens": 100_000}),
        400,
        "invalid_request",
        param="max_completion_tokens",
    )


def test_v1_keeps_max_completion_tokens_over_max_tokens(server: InProcessServer, http: httpx.Client) -> None:
    ok(http.post("/v1/chat/completions", json={**CHAT, "max_completion_tokens": 7, "max_tokens": 5}))
    assert last_max_tokens(server) == 7


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("path", ["/chat/completions", "/models/chat/completions", f"{AOAI}/chat/completions"])
def test_parallel_tool_calls_is_a_known_field(
    server: InProcessServer, http: httpx.Client, path: str, parallel: bool
) -> None:
    # A known field even under extra-parameters: error; aimi's tool calling makes one call an answer.
    response = http.post(path, json={**CHAT, "parallel_tool_calls": parallel}, headers={"extra-parameters": "error"})
    ok(response)
    assert server.engine.requests[-1].extra == {}


# A deployment named "chat", as litellm's azure_ai provider calls it ----------------------------


@pytest.fixture(scope="module")
def named_chat() -> Iterator[InProcessServer]:
    with in_process(model=CHAT_NAMED_CHAT) as running:
        yield running


@pytest.mark.parametrize("prefix", ["/deployments/chat", "/openai/deployments/chat"])
def test_a_chat_body_posted_to_the_merged_litellm_path_is_chat(named_chat: InProcessServer, prefix: str) -> None:
    # litellm's add_path_to_api_base(".../deployments/chat", "/chat/completions") merges the
    # repeated "chat" and posts to .../deployments/chat/completions.
    with named_chat.client() as http:
        body = ok(http.post(f"{prefix}/completions", params={"api-version": "2024-05-01-preview"}, json=CHAT))
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["role"] == "assistant"
        text = ok(http.post(f"{prefix}/completions", json=COMPLETION))
        assert text["object"] == "text_completion"
        chat = ok(http.post(f"{prefix}/chat/completions", json=CHAT))
        assert chat["object"] == "chat.completion"


def test_the_merged_path_is_read_as_chat_only_for_the_deployment_named_chat(http: httpx.Client) -> None:
    assert_error(http.post("/deployments/fake-model/completions", json=CHAT), 400, "invalid_request", param="prompt")

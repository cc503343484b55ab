"""The real openai SDK's AzureOpenAI and AsyncAzureOpenAI against a live `aimi serve`: code written
for Azure OpenAI, pointed at aimi, runs unchanged. Every row of the matrix runs with both clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Literal

import openai
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from tests.clients.helpers import (
    AZURE_OPENAI_API_VERSION,
    CHAT_MODEL,
    COLOR_QUESTION,
    COLOR_SCHEMA,
    EMBEDDINGS_DIMS,
    EMBEDDINGS_MODEL,
    PROMPT,
    WEATHER_QUESTION,
    WEATHER_TOOL,
)
from tests.conftest import LiveServer

pytestmark = pytest.mark.model

Flavour = Literal["sync", "async"]
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]


def options(server: LiveServer, key: str | None, deployment: str | None, **more: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "azure_endpoint": server.url,
        "api_version": AZURE_OPENAI_API_VERSION,
        "api_key": server.key if key is None else key,
        "max_retries": 0,
        **more,
    }
    if deployment is not None:
        settings["azure_deployment"] = deployment
    return settings


def call(
    flavour: Flavour,
    settings: dict[str, Any],
    sync: Callable[[AzureOpenAI], Any],
    asynchronous: Callable[[AsyncAzureOpenAI], Any],
) -> Any:
    """``sync(client)`` with an AzureOpenAI, or ``await asynchronous(client)`` with an AsyncAzureOpenAI."""
    if flavour == "sync":
        with AzureOpenAI(**settings) as client:
            return sync(client)

    async def run() -> Any:
        async with AsyncAzureOpenAI(**settings) as client:
            return await asynchronous(client)

    return asyncio.run(run())


def chat(
    server: LiveServer,
    flavour: Flavour,
    key: str | None = None,
    deployment: str | None = CHAT_MODEL,
    **body: Any,
) -> ChatCompletion:
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "temperature": 0, **body}
    answer = call(
        flavour,
        options(server, key, deployment),
        lambda client: client.chat.completions.create(**body),
        lambda client: client.chat.completions.create(**body),
    )
    assert isinstance(answer, ChatCompletion)
    return answer


def streamed(server: LiveServer, flavour: Flavour, **body: Any) -> list[ChatCompletionChunk]:
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "temperature": 0, "stream": True, **body}

    async def collect(client: AsyncAzureOpenAI) -> list[ChatCompletionChunk]:
        return [chunk async for chunk in await client.chat.completions.create(**body)]

    chunks: list[ChatCompletionChunk] = call(
        flavour,
        options(server, None, CHAT_MODEL),
        lambda client: list(client.chat.completions.create(**body)),
        collect,
    )
    return chunks


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    value: Flavour = request.param
    return value


def test_chat_through_azure_endpoint_and_deployment(live_server: LiveServer, flavour: Flavour) -> None:
    # Azure OpenAI ignores the body's model where the path names the deployment.
    answer = chat(live_server, flavour, model="gpt-4o", max_tokens=16)
    assert answer.object == "chat.completion"
    assert answer.model == CHAT_MODEL
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 16


def test_chat_with_the_deployment_as_the_model(live_server: LiveServer, flavour: Flavour) -> None:
    # No azure_deployment: the SDK puts /deployments/{model} in the path itself.
    answer = chat(live_server, flavour, deployment=None, max_completion_tokens=8)
    assert answer.choices[0].message.content
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 8


def test_streamed_chat_matches_the_whole_answer(live_server: LiveServer, flavour: Flavour) -> None:
    whole = chat(live_server, flavour, max_tokens=16)
    chunks = streamed(live_server, flavour, max_tokens=16, stream_options={"include_usage": True})
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_a_required_tool_call(live_server: LiveServer, flavour: Flavour) -> None:
    answer = chat(
        live_server,
        flavour,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=100,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert set(json.loads(calls[0].function.arguments)) == {"city"}


def test_json_object_output(live_server: LiveServer, flavour: Flavour) -> None:
    answer = chat(
        live_server,
        flavour,
        messages=[{"role": "user", "content": "Give a JSON object with a key 'color' naming a color."}],
        response_format={"type": "json_object"},
        max_tokens=100,
    )
    content = answer.choices[0].message.content
    assert content is not None
    assert isinstance(json.loads(content), dict)


def test_json_schema_output(live_server: LiveServer, flavour: Flavour) -> None:
    schema = {k: v for k, v in COLOR_SCHEMA.items() if k not in ("title", "description")}
    answer = chat(
        live_server,
        flavour,
        messages=[{"role": "user", "content": COLOR_QUESTION}],
        response_format={"type": "json_schema", "json_schema": {"name": "color", "schema": schema, "strict": True}},
        max_tokens=40,
    )
    parsed = json.loads(answer.choices[0].message.content or "")
    assert set(parsed) == {"color"} and parsed["color"] in ("red", "green", "blue")


def test_an_unknown_deployment_raises_not_found(live_server: LiveServer, flavour: Flavour) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        chat(live_server, flavour, deployment="no-such-deployment", max_tokens=4)
    assert caught.value.status_code == 404
    assert caught.value.code == "DeploymentNotFound"
    assert caught.value.message.startswith("Error code: 404 - ")
    assert "The API deployment for this resource does not exist." in caught.value.message


def test_wrong_key_raises_authentication_error(live_server: LiveServer, flavour: Flavour) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(live_server, flavour, key="wrong-" + live_server.key, max_tokens=4)
    assert caught.value.status_code == 401


def embed(server: LiveServer, flavour: Flavour, key: str | None = None) -> CreateEmbeddingResponse:
    body: dict[str, Any] = {"model": "text-embedding-3-small", "input": ["red", "blue"]}
    result = call(
        flavour,
        options(server, key, EMBEDDINGS_MODEL),
        lambda client: client.embeddings.create(**body),
        lambda client: client.embeddings.create(**body),
    )
    assert isinstance(result, CreateEmbeddingResponse)
    return result


def test_embeddings(live_embeddings_server: LiveServer, flavour: Flavour) -> None:
    result = embed(live_embeddings_server, flavour)
    assert [d.index for d in result.data] == [0, 1]
    assert [len(d.embedding) for d in result.data] == [EMBEDDINGS_DIMS, EMBEDDINGS_DIMS]
    assert result.model == EMBEDDINGS_MODEL
    assert result.usage.prompt_tokens > 0


def test_embeddings_wrong_key_raises_authentication_error(live_embeddings_server: LiveServer, flavour: Flavour) -> None:
    with pytest.raises(openai.AuthenticationError):
        embed(live_embeddings_server, flavour, key="wrong-" + live_embeddings_server.key)

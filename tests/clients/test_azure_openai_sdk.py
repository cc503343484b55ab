"""The real openai SDK's AzureOpenAI and AsyncAzureOpenAI against a live `aimi serve`: code written
for Azure OpenAI, pointed at aimi, runs unchanged."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.conftest import LiveServer

DEPLOYMENT = "smollm2-135m-instruct"
API_VERSION = "2024-10-21"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colors."}]
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def client(live_server: LiveServer) -> AzureOpenAI:
    return AzureOpenAI(
        azure_endpoint=live_server.url,
        azure_deployment=DEPLOYMENT,
        api_version=API_VERSION,
        api_key=live_server.key,
        max_retries=0,
    )


def test_chat_through_azure_endpoint_and_deployment(client: AzureOpenAI) -> None:
    answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=16, temperature=0)
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 16


def test_chat_with_the_deployment_as_the_model(live_server: LiveServer) -> None:
    # No azure_deployment: the SDK puts /deployments/{model} in the path itself.
    bare = AzureOpenAI(azure_endpoint=live_server.url, api_version=API_VERSION, api_key=live_server.key, max_retries=0)
    answer = bare.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, max_completion_tokens=8)
    assert answer.choices[0].message.content


def test_streamed_chat_matches_the_whole_answer(client: AzureOpenAI) -> None:
    whole = client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, max_tokens=16, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=DEPLOYMENT,
            messages=MESSAGES,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage == whole.usage
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_a_required_tool_call(client: AzureOpenAI) -> None:
    answer = client.chat.completions.create(
        model=DEPLOYMENT,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=100,
        temperature=0,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments)["city"], str)


def test_json_object_output(client: AzureOpenAI) -> None:
    answer = client.chat.completions.create(
        model=DEPLOYMENT,
        messages=[{"role": "user", "content": "Give a JSON object with a key 'color' naming a color."}],
        response_format={"type": "json_object"},
        max_tokens=100,
        temperature=0,
    )
    content = answer.choices[0].message.content
    assert content is not None
    assert isinstance(json.loads(content), dict)


def test_async_client_chat_and_stream(live_server: LiveServer) -> None:
    async def run() -> tuple[str | None, str]:
        async with AsyncAzureOpenAI(
            azure_endpoint=live_server.url,
            azure_deployment=DEPLOYMENT,
            api_version=API_VERSION,
            api_key=live_server.key,
            max_retries=0,
        ) as client:
            whole = await client.chat.completions.create(
                model=DEPLOYMENT, messages=MESSAGES, max_tokens=8, temperature=0
            )
            stream = await client.chat.completions.create(
                model=DEPLOYMENT, messages=MESSAGES, max_tokens=8, temperature=0, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return whole.choices[0].message.content, text

    whole, streamed = asyncio.run(run())
    assert whole and streamed == whole


def test_an_unknown_deployment_raises_not_found(live_server: LiveServer) -> None:
    other = AzureOpenAI(
        azure_endpoint=live_server.url,
        azure_deployment="no-such-deployment",
        api_version=API_VERSION,
        api_key=live_server.key,
        max_retries=0,
    )
    with pytest.raises(openai.NotFoundError) as caught:
        other.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, max_tokens=4)
    assert caught.value.code == "DeploymentNotFound"


def test_wrong_key_raises_authentication_error(live_server: LiveServer) -> None:
    wrong = AzureOpenAI(
        azure_endpoint=live_server.url,
        azure_deployment=DEPLOYMENT,
        api_version=API_VERSION,
        api_key="not-a-key",
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, max_tokens=4)


def test_embeddings(live_embeddings_server: LiveServer) -> None:
    client = AzureOpenAI(
        azure_endpoint=live_embeddings_server.url,
        azure_deployment="all-minilm-l6-v2",
        api_version=API_VERSION,
        api_key=live_embeddings_server.key,
        max_retries=0,
    )
    result = client.embeddings.create(model="text-embedding-3-small", input=["red", "blue"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 384

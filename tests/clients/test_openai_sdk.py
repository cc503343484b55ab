"""The real openai SDK against a live `aimi serve` with the default model."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import LiveServer

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture
def client(live_server: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{live_server.url}/v1", api_key=live_server.key, max_retries=0)


def test_models_lists_the_default_deployment(client: OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["smollm2-135m-instruct"]
    assert models[0].object == "model"


def test_chat_streaming_with_include_usage_matches_the_whole_answer(client: OpenAI) -> None:
    whole = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=MESSAGES, max_tokens=16, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=MESSAGES,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks[:-1]]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert set(finishes[:-1]) == {None}
    assert whole.usage is not None
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


def test_chat_stream_without_include_usage_has_no_usage(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smollm2-135m-instruct", messages=MESSAGES, max_tokens=4, temperature=0, stream=True
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)


def test_completions_stream_equals_the_whole_completion(client: OpenAI) -> None:
    whole = client.completions.create(model="smollm2-135m-instruct", prompt="The sky is", max_tokens=8, temperature=0)
    assert whole.object == "text_completion"
    assert whole.usage is not None and whole.usage.completion_tokens <= 8
    chunks = list(
        client.completions.create(
            model="smollm2-135m-instruct",
            prompt="The sky is",
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage == whole.usage


def test_bad_request_raises_bad_request_error(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smollm2-135m-instruct", messages=[], max_tokens=4)
    assert caught.value.status_code == 400
    assert caught.value.code == "invalid_request"
    assert "`messages`" in caught.value.message


def test_wrong_key_raises_authentication_error(live_server: LiveServer) -> None:
    client = OpenAI(base_url=f"{live_server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()

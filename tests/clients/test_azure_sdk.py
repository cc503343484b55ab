"""The real azure-ai-inference SDK against a live `aimi serve` with the default model."""

from __future__ import annotations

from typing import Any

import pytest
from azure.ai.inference import ChatCompletionsClient, load_client
from azure.ai.inference.models import CompletionsFinishReason, SystemMessage, UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from tests.clients.helpers import azure_response, azure_user
from tests.conftest import LiveServer

MESSAGES = [SystemMessage("You are a helpful assistant."), UserMessage("Name three colors.")]


@pytest.fixture
def client(live_server: LiveServer) -> ChatCompletionsClient:
    return ChatCompletionsClient(
        endpoint=f"{live_server.url}/models", credential=AzureKeyCredential(live_server.key), retry_total=0
    )


def test_get_model_info_names_the_default_model(client: ChatCompletionsClient) -> None:
    info = client.get_model_info()
    assert info.model_name == "SmolLM2-135M-Instruct"
    assert info.model_type == "chat-completions"
    assert info.model_provider_name == "HuggingFaceTB"


def test_load_client_picks_the_chat_client(live_server: LiveServer) -> None:
    loaded = load_client(endpoint=live_server.url, credential=AzureKeyCredential(live_server.key))
    assert isinstance(loaded, ChatCompletionsClient)


def test_complete_returns_text_and_true_usage(client: ChatCompletionsClient) -> None:
    response = client.complete(messages=MESSAGES, max_tokens=12, temperature=0)
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    usage = response.usage
    assert usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens > 10  # the chat template's tokens are counted
    expected = CompletionsFinishReason.TOKEN_LIMIT_REACHED if usage.completion_tokens == 12 else "stop"
    assert choice.finish_reason == expected
    assert response.model == "SmolLM2-135M-Instruct"
    assert response.id and response.created.year >= 2024


def test_streamed_text_equals_the_complete_text(client: ChatCompletionsClient) -> None:
    whole = client.complete(messages=MESSAGES, max_tokens=16, temperature=0)
    updates = list(client.complete(messages=MESSAGES, max_tokens=16, temperature=0, stream=True))
    assert updates[0].choices[0].delta.role == "assistant"
    assert all(u.choices[0].delta.role is None for u in updates[1:])
    text = "".join(u.choices[0].delta.content or "" for u in updates)
    assert text == whole.choices[0].message.content
    last = updates[-1]
    assert last.choices[0].finish_reason == whole.choices[0].finish_reason
    assert last.usage is not None and last.usage.as_dict() == whole.usage.as_dict()


def test_model_extras_reach_the_engine(client: ChatCompletionsClient) -> None:
    # top_k=1 makes sampling greedy whatever the temperature: same text as temperature 0.
    greedy = client.complete(messages=MESSAGES, max_tokens=10, temperature=0)
    extra = client.complete(messages=MESSAGES, max_tokens=10, temperature=1.5, seed=7, model_extras={"top_k": 1})
    assert extra.choices[0].message.content == greedy.choices[0].message.content


def test_unsupported_model_extra_is_422_naming_it(client: ChatCompletionsClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=MESSAGES, max_tokens=4, model_extras={"frobnicate": True})
    error = caught.value
    assert error.status_code == 422
    assert error.error is not None and error.error.code == "parameter_not_supported"
    body: dict[str, Any] = azure_response(error).json()
    assert body["detail"][0]["loc"] == ["body", "frobnicate"]
    assert body["detail"][0]["input"] is True


def test_unknown_key_without_extra_parameters_is_400(client: ChatCompletionsClient) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "n": 1}
    with pytest.raises(HttpResponseError) as caught:
        client.complete(body=body)
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "extra_parameters_not_allowed"
    assert "['n']" in str(caught.value.error.message)


def test_max_tokens_over_the_limit_is_400_naming_the_field(client: ChatCompletionsClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=MESSAGES, max_tokens=1_000_000)
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "invalid_request"
    assert "`max_tokens` must be at most 2048" in str(caught.value.error.message)


def test_prompt_longer_than_the_context_is_400(client: ChatCompletionsClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=azure_user("lorem ipsum " * 3000), max_tokens=4)
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "context_length_exceeded"


def test_wrong_key_is_401(live_server: LiveServer) -> None:
    client = ChatCompletionsClient(endpoint=f"{live_server.url}/models", credential=AzureKeyCredential("wrong"))
    with pytest.raises(ClientAuthenticationError) as caught:
        client.complete(messages=MESSAGES, max_tokens=4)
    assert caught.value.status_code == 401
    assert "Auth token validation failed" in caught.value.message

"""semantic-kernel's Azure AI Inference connector (chat and embeddings) against a live ``aimi serve``.

The connector's own settings accept only https endpoints, so it is handed azure-ai-inference clients.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any, Literal

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError
from pydantic import BaseModel

from tests.clients.helpers import (
    CHAT_MODEL,
    COLOR_QUESTION,
    EMBEDDINGS_DIMS,
    EMBEDDINGS_MODEL,
    PROMPT,
    WEATHER_QUESTION,
)
from tests.conftest import LiveServer

pytest.importorskip("semantic_kernel", reason="needs semantic-kernel[azure] (pip install -e '.[clients]')")
# semantic-kernel's own pydantic models use an API pydantic deprecates, warning as they are imported.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from azure.ai.inference.aio import ChatCompletionsClient, EmbeddingsClient
    from semantic_kernel import Kernel
    from semantic_kernel.connectors.ai.azure_ai_inference import (
        AzureAIInferenceChatCompletion,
        AzureAIInferenceChatPromptExecutionSettings,
        AzureAIInferenceTextEmbedding,
    )
    from semantic_kernel.connectors.ai.function_choice_behavior import FunctionChoiceBehavior
    from semantic_kernel.contents import ChatHistory, FunctionCallContent
    from semantic_kernel.functions import kernel_function

pytestmark = [pytest.mark.model, pytest.mark.clients, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def history(text: str) -> Any:
    chat = ChatHistory()
    chat.add_user_message(text)
    return chat


def test_chat_and_stream(live_server: LiveServer) -> None:
    async def run() -> tuple[Any, list[Any]]:
        async with ChatCompletionsClient(f"{live_server.url}/models", AzureKeyCredential(live_server.key)) as client:
            service = AzureAIInferenceChatCompletion(ai_model_id=CHAT_MODEL, client=client)
            settings = AzureAIInferenceChatPromptExecutionSettings(max_tokens=16, temperature=0)
            whole = await service.get_chat_message_content(history(PROMPT), settings)
            parts = [p async for p in service.get_streaming_chat_message_content(history(PROMPT), settings)]
            return whole, parts

    whole, parts = asyncio.run(run())
    assert whole is not None and str(whole)
    assert whole.metadata["model"] == "SmolLM2-135M-Instruct"
    assert "".join(str(p) for p in parts if p is not None) == str(whole)


class Weather:
    @kernel_function(name="get_weather", description="Get the weather in a city")  # type: ignore[untyped-decorator, unused-ignore]
    def get_weather(self, city: str) -> str:
        return f"sunny in {city}"


def test_a_required_tool_call_names_the_kernel_function(live_server: LiveServer) -> None:
    # The kernel advertises its plugins' functions as tools ("weather-get_weather"); Required
    # sends tool_choice "required", and without auto-invoke the call comes back to the caller.
    async def run() -> Any:
        async with ChatCompletionsClient(f"{live_server.url}/models", AzureKeyCredential(live_server.key)) as client:
            kernel = Kernel()
            kernel.add_plugin(Weather(), plugin_name="weather")
            service = AzureAIInferenceChatCompletion(ai_model_id=CHAT_MODEL, client=client)
            settings = AzureAIInferenceChatPromptExecutionSettings(
                max_tokens=60,
                temperature=0,
                function_choice_behavior=FunctionChoiceBehavior.Required(auto_invoke=False),
            )
            return await service.get_chat_message_content(history(WEATHER_QUESTION), settings, kernel=kernel)

    answer = asyncio.run(run())
    calls = [item for item in answer.items if isinstance(item, FunctionCallContent)]
    assert len(calls) == 1
    assert (calls[0].plugin_name, calls[0].function_name) == ("weather", "get_weather")
    assert set(calls[0].to_kernel_arguments()) == {"city"}
    assert answer.finish_reason == "tool_calls"


class Color(BaseModel):
    color: Literal["red", "green", "blue"]


def test_json_schema_output_parses(live_server: LiveServer) -> None:
    # A dict json_schema response_format fails inside the connector (it hands the dict's "type" to
    # azure-ai-inference's JsonSchemaFormat); a pydantic model is its other documented form.
    async def run() -> Any:
        async with ChatCompletionsClient(f"{live_server.url}/models", AzureKeyCredential(live_server.key)) as client:
            service = AzureAIInferenceChatCompletion(ai_model_id=CHAT_MODEL, client=client)
            settings = AzureAIInferenceChatPromptExecutionSettings(max_tokens=40, temperature=0, response_format=Color)
            return await service.get_chat_message_content(history(COLOR_QUESTION), settings)

    parsed = json.loads(str(asyncio.run(run())))
    assert set(parsed) == {"color"} and parsed["color"] in ("red", "green", "blue")


def test_wrong_key_raises_client_authentication_error(live_server: LiveServer) -> None:
    async def run() -> None:
        async with ChatCompletionsClient(f"{live_server.url}/models", AzureKeyCredential("wrong")) as client:
            service = AzureAIInferenceChatCompletion(ai_model_id=CHAT_MODEL, client=client)
            settings = AzureAIInferenceChatPromptExecutionSettings(max_tokens=4)
            await service.get_chat_message_content(history(PROMPT), settings)

    with pytest.raises(ClientAuthenticationError) as caught:
        asyncio.run(run())
    assert caught.value.status_code == 401


def test_embeddings_have_the_model_dimension(live_embeddings_server: LiveServer) -> None:
    async def run() -> Any:
        credential = AzureKeyCredential(live_embeddings_server.key)
        async with EmbeddingsClient(f"{live_embeddings_server.url}/models", credential) as client:
            service = AzureAIInferenceTextEmbedding(ai_model_id=EMBEDDINGS_MODEL, client=client)
            return await service.generate_embeddings(["hello world", "The quick brown fox."])

    assert asyncio.run(run()).shape == (2, EMBEDDINGS_DIMS)


def test_embeddings_wrong_key_raises_client_authentication_error(live_embeddings_server: LiveServer) -> None:
    async def run() -> Any:
        credential = AzureKeyCredential("wrong-" + live_embeddings_server.key)
        async with EmbeddingsClient(f"{live_embeddings_server.url}/models", credential) as client:
            service = AzureAIInferenceTextEmbedding(ai_model_id=EMBEDDINGS_MODEL, client=client)
            return await service.generate_embeddings(["hello world"])

    with pytest.raises(ClientAuthenticationError) as caught:
        asyncio.run(run())
    assert caught.value.status_code == 401

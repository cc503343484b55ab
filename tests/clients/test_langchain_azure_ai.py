"""langchain-azure-ai against a live ``aimi serve``: its default chat and embeddings models and its
inference classes.

``langchain_azure_ai.chat_models.AzureAIChatCompletionsModel`` is, since 1.x, an alias of
``AzureAIOpenAIApiChatModel`` (langchain-openai's ``ChatOpenAI`` over ``endpoint``), driven here on
the Azure route (``/models``) and on Foundry's OpenAI surface (``/openai/v1``); so is the default
embeddings model, ``AzureAIOpenAIApiEmbeddingsModel`` (langchain-openai's ``OpenAIEmbeddings``). The classes in
``chat_models.inference`` and ``embeddings.inference`` are built on azure-ai-inference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from azure.core.exceptions import ClientAuthenticationError
from langchain_core.messages import AIMessage

from tests.clients.helpers import (
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

pytest.importorskip("langchain_azure_ai", reason="needs langchain-azure-ai (the test extra)")
from langchain_azure_ai.chat_models import AzureAIChatCompletionsModel
from langchain_azure_ai.chat_models.inference import (
    AzureAIChatCompletionsModel as InferenceChatModel,
)
from langchain_azure_ai.embeddings import AzureAIOpenAIApiEmbeddingsModel
from langchain_azure_ai.embeddings.inference import AzureAIEmbeddingsModel

pytestmark = [
    pytest.mark.model,
    # The inference classes warn that azure-ai-inference is deprecated; aimi serves it all the same.
    pytest.mark.filterwarnings("ignore:AzureAI.*Azure AI Inference beta SDK:DeprecationWarning"),
    # /models has no version segment: the default class says so, and goes on.
    pytest.mark.filterwarnings("ignore:The `endpoint` value"),
]

# The inference class drops temperature=0 (it sends only truthy values): top_k=1 makes it greedy.
GREEDY = {"top_k": 1}
# It passes a bare function name through as `tool_choice`, which the API has no form for; its
# docstring also allows the named-choice object, which is what the API defines.
NAMED_CHOICE: Any = {"type": "function", "function": {"name": "get_weather"}}
# It names a dict schema's response_format from its "name" key (a pydantic model's from its title).
NAMED_SCHEMA = {"name": "color", **{k: v for k, v in COLOR_SCHEMA.items() if k != "title"}}


# --- the default chat model (OpenAI API over `endpoint`) ----------------------------------------


@pytest.fixture(params=["/models", "/openai/v1"])
def endpoint(request: pytest.FixtureRequest, live_server: LiveServer) -> str:
    return f"{live_server.url}{request.param}"


def default(endpoint: str, key: str, max_tokens: int = 16) -> Any:
    return AzureAIChatCompletionsModel(
        endpoint=endpoint, credential=key, model=CHAT_MODEL, max_tokens=max_tokens, temperature=0, max_retries=0
    )


def test_default_class_is_the_openai_api_model() -> None:
    assert AzureAIChatCompletionsModel.__name__ == "AzureAIOpenAIApiChatModel"


def test_default_chat_and_stream(endpoint: str, live_server: LiveServer) -> None:
    model = default(endpoint, live_server.key)
    whole = model.invoke(PROMPT)
    assert isinstance(whole, AIMessage)
    assert isinstance(whole.content, str) and whole.content
    assert whole.usage_metadata is not None and 0 < whole.usage_metadata["output_tokens"] <= 16
    chunks = list(model.stream(PROMPT))
    assert "".join(str(c.content) for c in chunks) == whole.content


def test_default_tool_call(endpoint: str, live_server: LiveServer) -> None:
    model = default(endpoint, live_server.key, max_tokens=60).bind_tools([WEATHER_TOOL], tool_choice="get_weather")
    answer = model.invoke(WEATHER_QUESTION)
    assert isinstance(answer, AIMessage) and len(answer.tool_calls) == 1
    assert answer.tool_calls[0]["name"] == "get_weather"
    assert set(answer.tool_calls[0]["args"]) == {"city"}


def test_default_json_schema_output_parses(endpoint: str, live_server: LiveServer) -> None:
    model = default(endpoint, live_server.key, max_tokens=40).with_structured_output(
        COLOR_SCHEMA, method="json_schema", strict=True
    )
    parsed = model.invoke(COLOR_QUESTION)
    assert isinstance(parsed, dict) and set(parsed) == {"color"}
    assert parsed["color"] in ("red", "green", "blue")


def test_default_wrong_key_raises_authentication_error(endpoint: str, live_server: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        default(endpoint, "wrong-" + live_server.key).invoke(PROMPT)
    assert caught.value.status_code == 401


def default_embeddings(endpoint: str, key: str) -> AzureAIOpenAIApiEmbeddingsModel:
    return AzureAIOpenAIApiEmbeddingsModel(
        endpoint=endpoint,
        credential=key,
        model=EMBEDDINGS_MODEL,
        check_embedding_ctx_length=False,  # token ids from tiktoken mean nothing to this model
        max_retries=0,
    )


@pytest.fixture(params=["/models", "/openai/v1"])
def embeddings_endpoint(request: pytest.FixtureRequest, live_embeddings_server: LiveServer) -> str:
    return f"{live_embeddings_server.url}{request.param}"


def test_default_embeddings_have_the_model_dimension(
    embeddings_endpoint: str, live_embeddings_server: LiveServer
) -> None:
    model = default_embeddings(embeddings_endpoint, live_embeddings_server.key)
    documents = model.embed_documents(["hello world", "The quick brown fox."])
    assert [len(v) for v in documents] == [EMBEDDINGS_DIMS, EMBEDDINGS_DIMS]
    assert model.embed_query("hello world") == pytest.approx(documents[0], abs=1e-6)


def test_default_embeddings_wrong_key_raises_authentication_error(
    embeddings_endpoint: str, live_embeddings_server: LiveServer
) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        default_embeddings(embeddings_endpoint, "wrong-" + live_embeddings_server.key).embed_query("hello world")
    assert caught.value.status_code == 401


# --- the inference classes (azure-ai-inference) -------------------------------------------------


@pytest.fixture
def inference(live_server: LiveServer) -> Iterator[InferenceChatModel]:
    yield InferenceChatModel(
        endpoint=f"{live_server.url}/models", credential=live_server.key, max_tokens=16, model_kwargs=GREEDY
    )


def test_inference_reads_the_model_name_from_info(inference: InferenceChatModel) -> None:
    assert inference._model_name == "SmolLM2-135M-Instruct"


def test_inference_chat_and_stream(inference: InferenceChatModel) -> None:
    whole = inference.invoke(PROMPT)
    assert isinstance(whole, AIMessage)
    assert isinstance(whole.content, str) and whole.content
    assert whole.response_metadata["finish_reason"] in ("stop", "length")
    assert whole.usage_metadata is not None and 0 < whole.usage_metadata["output_tokens"] <= 16
    chunks = list(inference.stream(PROMPT))
    assert "".join(str(c.content) for c in chunks) == whole.content


def test_inference_tool_call(live_server: LiveServer) -> None:
    model = InferenceChatModel(
        endpoint=f"{live_server.url}/models", credential=live_server.key, max_tokens=60, model_kwargs=GREEDY
    ).bind_tools([WEATHER_TOOL], tool_choice=NAMED_CHOICE)
    answer = model.invoke(WEATHER_QUESTION)
    assert isinstance(answer, AIMessage) and len(answer.tool_calls) == 1
    assert answer.tool_calls[0]["name"] == "get_weather"
    assert set(answer.tool_calls[0]["args"]) == {"city"}


def test_inference_json_schema_output_parses(live_server: LiveServer) -> None:
    model = InferenceChatModel(
        endpoint=f"{live_server.url}/models", credential=live_server.key, max_tokens=40, model_kwargs=GREEDY
    ).with_structured_output(NAMED_SCHEMA, method="json_schema", include_raw=True)
    result = model.invoke(COLOR_QUESTION)
    assert isinstance(result, dict) and result["parsing_error"] is None
    assert result["parsed"]["color"] in ("red", "green", "blue")
    assert json.loads(str(result["raw"].content)) == result["parsed"]


def test_inference_wrong_key_raises_client_authentication_error(live_server: LiveServer) -> None:
    model = InferenceChatModel(endpoint=f"{live_server.url}/models", credential="wrong-" + live_server.key)
    with pytest.raises(ClientAuthenticationError) as caught:
        model.invoke(PROMPT)
    assert caught.value.status_code == 401


def test_inference_embeddings_have_the_model_dimension(live_embeddings_server: LiveServer) -> None:
    model = AzureAIEmbeddingsModel(
        endpoint=f"{live_embeddings_server.url}/models", credential=live_embeddings_server.key
    )
    documents = model.embed_documents(["hello world", "The quick brown fox."])
    assert [len(v) for v in documents] == [EMBEDDINGS_DIMS, EMBEDDINGS_DIMS]
    assert model.embed_query("hello world") == pytest.approx(documents[0], abs=1e-6)


def test_inference_embeddings_wrong_key_raises_client_authentication_error(
    live_embeddings_server: LiveServer,
) -> None:
    model = AzureAIEmbeddingsModel(
        endpoint=f"{live_embeddings_server.url}/models", credential="wrong-" + live_embeddings_server.key
    )
    with pytest.raises(ClientAuthenticationError):
        model.embed_query("hello world")

"""langchain-openai's Azure classes (``AzureChatOpenAI``, ``AzureOpenAIEmbeddings``) against a live ``aimi serve``.

They speak the Azure OpenAI data plane: ``/openai/deployments/{deployment}/...?api-version=``.
"""

from __future__ import annotations

import json

import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_openai import AzureChatOpenAI, AzureOpenAIEmbeddings

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


def chat(server: LiveServer, key: str | None = None, max_tokens: int = 16) -> AzureChatOpenAI:
    return AzureChatOpenAI(
        azure_endpoint=server.url,
        api_key=key or server.key,
        api_version=AZURE_OPENAI_API_VERSION,
        azure_deployment=CHAT_MODEL,
        max_tokens=max_tokens,
        temperature=0,
        max_retries=0,
    )


def test_chat_answers_text(live_server: LiveServer) -> None:
    answer = chat(live_server).invoke(PROMPT)
    assert isinstance(answer, AIMessage)
    assert isinstance(answer.content, str) and answer.content
    assert answer.response_metadata["finish_reason"] in ("stop", "length")
    usage = answer.usage_metadata
    assert usage is not None and 0 < usage["output_tokens"] <= 16
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_streamed_text_equals_the_whole_text(live_server: LiveServer) -> None:
    model = chat(live_server)
    whole = model.invoke(PROMPT)
    chunks = list(model.stream(PROMPT))
    assert all(isinstance(c.content, str) for c in chunks)
    assert "".join(str(c.content) for c in chunks) == whole.content


def test_tool_call_names_the_function_asked_for(live_server: LiveServer) -> None:
    model = chat(live_server, max_tokens=60).bind_tools([WEATHER_TOOL], tool_choice="get_weather")
    answer = model.invoke(WEATHER_QUESTION)
    assert isinstance(answer, AIMessage)
    assert len(answer.tool_calls) == 1
    call = answer.tool_calls[0]
    assert call["name"] == "get_weather"
    assert set(call["args"]) == {"city"} and isinstance(call["args"]["city"], str)
    assert call["id"] and call["id"].startswith("call_")


def test_json_schema_output_parses(live_server: LiveServer) -> None:
    model = chat(live_server, max_tokens=40).with_structured_output(
        COLOR_SCHEMA, method="json_schema", strict=True, include_raw=True
    )
    result = model.invoke(COLOR_QUESTION)
    assert isinstance(result, dict)
    assert result["parsing_error"] is None
    assert result["parsed"]["color"] in ("red", "green", "blue")
    assert set(result["parsed"]) == {"color"}
    raw = result["raw"]
    assert isinstance(raw, AIMessage) and json.loads(str(raw.content)) == result["parsed"]


def test_wrong_key_raises_authentication_error(live_server: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(live_server, key="wrong-" + live_server.key).invoke(PROMPT)
    assert caught.value.status_code == 401


def embedder(server: LiveServer, key: str | None = None) -> AzureOpenAIEmbeddings:
    return AzureOpenAIEmbeddings(  # type: ignore[call-arg]
        azure_endpoint=server.url,
        api_key=key or server.key,
        api_version=AZURE_OPENAI_API_VERSION,
        azure_deployment=EMBEDDINGS_MODEL,
        check_embedding_ctx_length=False,  # token ids from tiktoken mean nothing to this model
        max_retries=0,
    )


def test_embeddings_have_the_model_dimension(live_embeddings_server: LiveServer) -> None:
    model = embedder(live_embeddings_server)
    documents = model.embed_documents(["hello world", "The quick brown fox."])
    assert [len(v) for v in documents] == [EMBEDDINGS_DIMS, EMBEDDINGS_DIMS]
    assert all(isinstance(x, float) for x in documents[0])
    query = model.embed_query("hello world")
    assert query == pytest.approx(documents[0], abs=1e-6)


def test_embeddings_wrong_key_raises_authentication_error(live_embeddings_server: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        embedder(live_embeddings_server, key="wrong-" + live_embeddings_server.key).embed_query("hello world")

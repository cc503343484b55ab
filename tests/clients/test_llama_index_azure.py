"""llama-index's Azure AI Inference integrations (llms and embeddings) against a live ``aimi serve``."""

from __future__ import annotations

import json

import pytest
from azure.ai.inference.models import JsonSchemaFormat
from azure.core.exceptions import ClientAuthenticationError

from tests.clients.helpers import (
    COLOR_QUESTION,
    COLOR_SCHEMA,
    EMBEDDINGS_DIMS,
    PROMPT,
    WEATHER_QUESTION,
)
from tests.conftest import LiveServer

pytest.importorskip("llama_index.llms.azure_inference", reason="needs llama-index-llms-azure-inference (test extra)")
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.tools import FunctionTool
from llama_index.llms.azure_inference import AzureAICompletionsModel

pytestmark = pytest.mark.model

MESSAGES = [ChatMessage(role=MessageRole.USER, content=PROMPT)]


def get_weather(city: str) -> str:
    """Get the weather in a city."""
    return f"sunny in {city}"


def llm(server: LiveServer, max_tokens: int = 16, key: str | None = None) -> AzureAICompletionsModel:
    return AzureAICompletionsModel(
        endpoint=f"{server.url}/models", credential=key or server.key, temperature=0, max_tokens=max_tokens
    )


def test_metadata_names_the_model_from_info(live_server: LiveServer) -> None:
    assert llm(live_server).metadata.model_name == "SmolLM2-135M-Instruct"


def test_chat_and_stream_chat(live_server: LiveServer) -> None:
    model = llm(live_server)
    whole = model.chat(MESSAGES)
    assert whole.message.role == MessageRole.ASSISTANT
    assert isinstance(whole.message.content, str) and whole.message.content
    assert whole.raw is not None and whole.raw["choices"][0]["finish_reason"] in ("stop", "length")
    chunks = list(model.stream_chat(MESSAGES))
    assert "".join(c.delta or "" for c in chunks) == whole.message.content
    assert chunks[-1].message.content == whole.message.content


def test_chat_with_a_required_tool_calls_it(live_server: LiveServer) -> None:
    model = llm(live_server, max_tokens=60)
    tool = FunctionTool.from_defaults(fn=get_weather)
    response = model.chat_with_tools([tool], user_msg=WEATHER_QUESTION, tool_required=True)
    # Annotated for agent responses; it reads a plain ChatResponse's message the same way.
    calls = model.get_tool_calls_from_response(response)  # type: ignore[arg-type]
    assert len(calls) == 1
    assert calls[0].tool_name == "get_weather"
    assert set(calls[0].tool_kwargs) == {"city"} and isinstance(calls[0].tool_kwargs["city"], str)


def test_json_schema_output_parses(live_server: LiveServer) -> None:
    schema = {k: v for k, v in COLOR_SCHEMA.items() if k not in ("title", "description")}
    response = llm(live_server, max_tokens=40).chat(
        [ChatMessage(role=MessageRole.USER, content=COLOR_QUESTION)],
        response_format=JsonSchemaFormat(name="color", schema=schema, strict=True),
    )
    parsed = json.loads(str(response.message.content))
    assert set(parsed) == {"color"} and parsed["color"] in ("red", "green", "blue")


def test_wrong_key_raises_client_authentication_error(live_server: LiveServer) -> None:
    with pytest.raises(ClientAuthenticationError) as caught:
        llm(live_server, key="wrong-" + live_server.key).chat(MESSAGES)
    assert caught.value.status_code == 401


# The half-built model's __del__ then fails on a missing attribute (a client bug, reported as unraisable).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_embeddings_have_the_model_dimension(live_embeddings_server: LiveServer) -> None:
    embeddings = pytest.importorskip(
        "llama_index.embeddings.azure_inference", reason="needs llama-index-embeddings-azure-inference (test extra)"
    )
    model = embeddings.AzureAIEmbeddingsModel(
        endpoint=f"{live_embeddings_server.url}/models", credential=live_embeddings_server.key
    )
    vectors = model.get_text_embedding_batch(["hello world", "The quick brown fox."])
    assert [len(v) for v in vectors] == [EMBEDDINGS_DIMS, EMBEDDINGS_DIMS]
    assert model.get_query_embedding("hello world") == pytest.approx(vectors[0], abs=1e-6)
    # It reads GET /info while it is built, so a wrong key fails there; handling the 401 it then
    # touches a private attribute not yet set, so the AttributeError carries the auth error.
    with pytest.raises(AttributeError) as caught:
        embeddings.AzureAIEmbeddingsModel(
            endpoint=f"{live_embeddings_server.url}/models", credential="wrong-" + live_embeddings_server.key
        )
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    auth = [e for e in chain if isinstance(e, ClientAuthenticationError)]
    assert auth and auth[0].status_code == 401

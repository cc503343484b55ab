"""Typed helpers for the SDK tests, where an SDK's own annotations are narrower than what it does."""

from __future__ import annotations

from azure.ai.inference.models import ChatRequestMessage, UserMessage
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpResponse


def azure_user(text: str) -> list[ChatRequestMessage]:
    """One user turn for azure-ai-inference's ``complete``. Built inline, ``[UserMessage(text)]``
    is a ``list[UserMessage]``, which the SDK's ``list[ChatRequestMessage]`` refuses (``list`` is
    invariant)."""
    return [UserMessage(text)]


def azure_response(error: HttpResponseError) -> HttpResponse:
    """The HTTP response an azure SDK error carries. azure-core types it as a protocol with no
    ``json()`` or ``headers``; the inference client's is always an ``azure.core.rest.HttpResponse``."""
    response = error.response
    assert isinstance(response, HttpResponse), response
    return response


# What every client of the matrix (tests/clients/test_*_clients.py, test_litellm.py, ...) asks.
CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDINGS_MODEL = "all-minilm-l6-v2"
EMBEDDINGS_DIMS = 384  # all-MiniLM-L6-v2
AZURE_OPENAI_API_VERSION = "2024-10-21"
PROMPT = "Name three colors."
WEATHER_TOOL: dict[str, object] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
WEATHER_QUESTION = "What is the weather in Paris?"
# An enum keeps the answer a few tokens long, so a small max_tokens never cuts the JSON.
COLOR_SCHEMA: dict[str, object] = {
    "title": "color",
    "description": "A color",
    "type": "object",
    "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["color"],
    "additionalProperties": False,
}
COLOR_QUESTION = "Pick a color."

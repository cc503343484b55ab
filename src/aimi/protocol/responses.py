"""Wire models of what aimi answers: model info, model lists, completions and their chunks.

These describe the bodies for the OpenAPI document; the encoders build plain dicts of the same
shape on the hot path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class ModelInfo(BaseModel):
    """``GET /info``; ``model_type`` is one of the strings ``load_client()`` accepts."""

    model_name: str
    model_type: Literal["chat-completion", "embeddings", "image_embeddings"]
    model_provider_name: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessageOut(BaseModel):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length", "content_filter", "content_filter_error", "tool_calls"] | None
    logprobs: dict[str, Any] | None = None
    content_filter_results: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    prompt_filter_results: list[dict[str, Any]] | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: Literal["stop", "length", "content_filter", "content_filter_error", "tool_calls"] | None
    logprobs: dict[str, Any] | None = None
    content_filter_results: dict[str, Any] | None = None


class ChatCompletionChunk(BaseModel):
    """One ``data:`` event of a chat stream; the stream ends with ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    prompt_filter_results: list[dict[str, Any]] | None = None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length", "content_filter", "content_filter_error"] | None
    logprobs: dict[str, Any] | None = None


class TextCompletion(BaseModel):
    """A ``/completions`` answer, and (with ``usage`` optional) each of its stream events."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    type: str
    param: str | None = None


class ErrorBody(BaseModel):
    """The error envelope of both surfaces (``x-ms-error-code`` carries the code too)."""

    error: ErrorDetail
    detail: Any = None


class Health(BaseModel):
    status: Literal["ok", "loading", "unhealthy"]


class EmbeddingItem(BaseModel):
    index: int
    object: Literal["embedding"]
    embedding: list[float] | list[int] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResult(BaseModel):
    """An embeddings answer; ``embedding`` is floats, integers (int8, uint8, binary, ubinary) or
    a base64 string of little-endian float32 values, per ``encoding_format``."""

    id: str
    object: Literal["list"]
    model: str
    data: list[EmbeddingItem]
    usage: EmbeddingsUsage

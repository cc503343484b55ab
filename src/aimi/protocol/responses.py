"""Wire models of what aimi answers: model info, model lists, completions and their chunks.

These describe the bodies for the OpenAPI document; the encoders build plain dicts of the same
shape on the hot path. ``tests/api/test_response_shapes.py`` holds the two together: every body
the encoders build must validate against its model with no field undeclared, a field the
encoders always send is declared required, and every declared field is sent by some answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class ModelInfo(BaseModel):
    """``GET /info``; ``model_type`` is one of the strings ``load_client()`` accepts."""

    model_name: str
    model_type: Literal["chat-completions", "embeddings", "image_embeddings"]
    model_provider_name: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"]
    data: list[ModelCard]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class PromptFilterResult(BaseModel):
    """Content safety's verdict on the prompt, when the deployment's policy annotates."""

    prompt_index: int
    content_filter_results: dict[str, Any]


class FunctionOut(BaseModel):
    name: str
    arguments: str
    """The arguments as JSON text."""


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionOut


class TopLogprobOut(BaseModel):
    token: str
    logprob: float | None
    bytes: list[int]


class TokenLogprobOut(BaseModel):
    token: str
    logprob: float | None
    bytes: list[int]
    top_logprobs: list[TopLogprobOut]


class LogprobsOut(BaseModel):
    content: list[TokenLogprobOut]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCallOut] | None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length", "content_filter", "content_filter_error", "tool_calls"] | None
    logprobs: LogprobsOut | None
    content_filter_results: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    prompt_filter_results: list[PromptFilterResult] | None = None


class FunctionDeltaOut(BaseModel):
    name: str | None = None
    arguments: str


class ToolCallDeltaOut(BaseModel):
    """Part of a streamed tool call: the first part has ``id``, ``type`` and the function's
    ``name``, the later ones fragments of its ``arguments``."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDeltaOut


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDeltaOut] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: Literal["stop", "length", "content_filter", "content_filter_error", "tool_calls"] | None
    logprobs: LogprobsOut | None
    content_filter_results: dict[str, Any] | None = None


class ChatCompletionChunk(BaseModel):
    """One ``data:`` event of a chat stream; the stream ends with ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    prompt_filter_results: list[PromptFilterResult] | None = None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length", "content_filter", "content_filter_error"] | None
    logprobs: None
    """Always null: text completions refuse ``logprobs`` (chat completions have them)."""
    content_filter_results: dict[str, Any] | None = None


class TextCompletion(BaseModel):
    """A ``/completions`` answer, and (with ``usage`` optional) each of its stream events."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None
    prompt_filter_results: list[PromptFilterResult] | None = None


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
    status: Literal["ok", "loading", "restarting", "unhealthy"]


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

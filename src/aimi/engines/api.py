"""The seam between aimi and the engines that run models.

An engine receives a canonical :class:`GenerationRequest` and yields typed events. It never sees
a wire request, an HTTP header or a surface; it knows nothing of auth, quotas or safety.

Cancellation contract (who closes what):

* The caller iterates ``generate()`` and, when it stops early (client gone, timeout, safety
  block), calls ``aclose()`` on the iterator or cancels the task iterating it. The engine must
  then stop generating and free the slot: the iterator's ``finally`` is where it does so.
* ``abort(request_id)`` does the same from outside the iterating task.
* An engine raises :class:`RequestFailed` when one request cannot be served (bad input the
  engine alone can detect, a sampling failure): the engine keeps serving others. It raises
  :class:`EngineDead` when it can serve nothing more; ``health()`` then reports it dead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "content_filter", "content_filter_error", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the assistant made: ``arguments`` is the JSON text of its arguments, as the
    model (or the client, for calls in the history) wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One message of a conversation, after the surface's shapes were folded to text."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class JsonObject:
    """The output must be a JSON object, of any shape."""


@dataclass(frozen=True, slots=True)
class JsonSchema:
    """The output must be JSON valid against ``schema`` (a JSON Schema, as a dict); ``name`` is the
    client's name for it, passed on as it came."""

    name: str | None
    schema: dict[str, Any]


OutputFormat = JsonObject | JsonSchema
"""What decoding is constrained to, when it is."""


@dataclass(slots=True)
class GenerationRequest:
    """What to generate, independent of the surface it came from.

    Exactly one of ``messages`` (chat, rendered with the model's template) and ``prompt``
    (raw text completion) is set. ``extra`` holds pass-through parameters the engine declared
    it understands (see :attr:`EngineCapabilities.extra_parameters`).
    """

    request_id: str
    max_tokens: int | None
    messages: list[ChatTurn] | None = None
    prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    response_format: OutputFormat | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    stream: bool = True
    """``logprobs``: None for none, else how many alternatives to report per token (0-20).
    ``response_format``: what to constrain decoding to, already checked against what grammars can
    express. ``stop_token_ids``: stop after any of these tokens. ``stream``: whether the client reads
    the answer as it comes; an engine may produce it whole, in fewer events, when false."""


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One of the likeliest tokens at a position: its text, log-probability and UTF-8 bytes."""

    token: str
    logprob: float | None
    bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token: its text, log-probability and UTF-8 bytes (a token may hold part of a
    character, so the bytes say what the text cannot), and the likeliest alternatives, at most as
    many as the request asked for."""

    token: str
    logprob: float | None
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New text of choice ``index``; always whole characters.

    ``logprobs`` holds one entry per token of the text when the request asked for them.
    """

    text: str
    index: int = 0
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """Part of tool call ``call_index`` of choice ``index``: the first part carries ``id`` and
    ``name``, the later ones fragments of the JSON ``arguments``."""

    index: int
    call_index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class Finish:
    """Choice ``index`` is complete."""

    reason: FinishReason
    index: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """The engine's own token counts for the whole request; the last event of a generation."""

    prompt_tokens: int
    completion_tokens: int


Event = TextDelta | ToolCallDelta | Finish | Usage


@dataclass(frozen=True, slots=True)
class ImageInput:
    """One image to embed: the decoded bytes of a ``data:`` URL, and optional text for models that
    embed both (CLIP)."""

    image: bytes
    text: str | None = None


@dataclass(slots=True)
class EmbeddingRequest:
    """Inputs to embed: exactly one of ``texts``, ``token_ids`` and ``images`` is set.

    ``truncate``: cut inputs longer than the model's maximum instead of failing the request.
    """

    request_id: str
    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    images: list[ImageInput] | None = None
    truncate: bool = False


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One vector per input, in order, as the model produced them, and the true token count."""

    vectors: list[list[float]]
    prompt_tokens: int


class EngineState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class EngineCapabilities:
    """What an engine can do, whatever the model; the deployment's profile narrows it further.

    ``extra_parameters`` maps each pass-through key the engine understands to the type its
    value must have.
    """

    chat: bool = True
    completions: bool = True
    embeddings: bool = False
    image_embeddings: bool = False
    token_inputs: bool = False
    structured_output: bool = False
    logprobs: bool = False
    logit_bias: bool = False
    stop_token_ids: bool = False
    extra_parameters: dict[str, type | tuple[type, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptBound:
    """How many tokens a plain chat prompt is at most, without asking the engine: the chat
    template's tokens (``fixed`` for a one-message conversation, ``per_turn`` for each further
    message) plus one token per byte of every message's text, plus one per message.

    No token of a byte-level BPE vocabulary is shorter than one byte; a SentencePiece vocabulary
    may add one word-start token per message. The template's share is measured once, when the
    model is loaded. Messages with tool calls or tool results are rendered otherwise by templates:
    they are counted by the engine."""

    fixed: int
    per_turn: int

    def of(self, turns: list[ChatTurn]) -> int | None:
        """The bound for ``turns``, or None when it does not apply."""
        total = self.fixed + self.per_turn * (len(turns) - 1)
        for turn in turns:
            if turn.tool_calls or turn.role == "tool":
                return None
            total += len((turn.content or "").encode("utf-8", "surrogatepass")) + 1
        return total


async def measure_prompt_bound(count: Callable[[GenerationRequest], Awaitable[int | None]]) -> PromptBound | None:
    """The chat template's share of a prompt, from three one-byte conversations counted once by
    ``count`` (an engine's ``count_tokens``): what :class:`PromptBound` adds to the bytes of a
    conversation's text. None when the engine cannot count them."""

    def chat(*roles: Literal["system", "user", "assistant"]) -> GenerationRequest:
        return GenerationRequest("template", None, messages=[ChatTurn(role, "x") for role in roles])

    one, with_system, three = [
        await count(chat(*roles)) for roles in (("user",), ("system", "user"), ("user", "assistant", "user"))
    ]
    if one is None or with_system is None or three is None:
        return None
    return PromptBound(fixed=one, per_turn=max(with_system - one, -(-(three - one) // 2), 0))


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """Facts an engine learns from the loaded model. ``prompt_bound``: how to bound a chat
    prompt's tokens without asking the engine (None: ask its ``count_tokens``)."""

    context_length: int
    n_slots: int
    prompt_bound: PromptBound | None = None


class RequestFailed(Exception):
    """One request could not be served; the engine is fine. Recoverable.

    ``client_error`` marks failures caused by the request itself (a prompt longer than the
    context), which surface as 4xx; ``code`` is the stable error code to report.
    """

    def __init__(self, message: str, *, client_error: bool = False, code: str = "engine_error") -> None:
        super().__init__(message)
        self.message = message
        self.client_error = client_error
        self.code = code


class EngineBusy(RequestFailed):
    """The engine (a pool of replicas at its maximum, each full) takes no more requests now; the
    gateway answers 429 with ``Retry-After`` (seconds), like its own full queue. Recoverable."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, code="queue_full")
        self.retry_after = retry_after


class EngineDead(Exception):
    """The engine can serve nothing more until it is restarted. Unrecoverable."""


@runtime_checkable
class Engine(Protocol):
    """A model runtime. Built by the registry from settings; started once by the app's lifespan."""

    capabilities: EngineCapabilities

    async def start(self) -> ModelFacts:
        """Load the model; return what was learnt. Raise :class:`EngineDead` on failure."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Stream events: any number of :class:`TextDelta`, one :class:`Finish` per choice, then
        one :class:`Usage`. Validation failures the engine alone can see are raised before the
        first event."""
        ...

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Embed every input. An input longer than the model's maximum (without ``truncate``) is a
        :class:`RequestFailed` with ``client_error``. Engines without embeddings raise
        :class:`RequestFailed`."""
        ...

    async def abort(self, request_id: str) -> None:
        """Stop the request's generation and free its slot; a no-op for unknown ids."""
        ...

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """How many tokens the request's prompt is, as the model will read it (chat template
        included); None when the engine cannot tell before generating."""
        ...

    def health(self) -> EngineState:
        """The engine's state, cheaply, without blocking."""
        ...

    async def metrics(self) -> dict[str, float]:
        """The engine's counters; at least ``tokens_generated``, which counts abandoned tokens too."""
        ...

    async def close(self) -> None:
        """Stop every generation and release the model."""
        ...


@dataclass(slots=True)
class EngineConfig:
    """How to build an engine: the model file, the parallel slots, the context, the threads.

    ``context_size`` is per slot. ``options`` holds settings only one engine understands
    (the fake engine's script, for instance).
    """

    model_path: str | None = None
    slots: int = 2
    context_size: int = 2048
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

"""A scripted engine for tests and overhead benchmarks: no model, exact control.

Options (``EngineConfig.options``), all optional:

``text``               what every request answers (default: a short sentence with non-ASCII)
``tokens_per_second``  pacing of the output; 0 (default) yields as fast as possible
``burst``              yield every token at once, never giving way to the loop (as chunks that
                       come many to a packet from an upstream server)
``fail_after``         raise :class:`RequestFailed` after this many tokens
``die_after``          raise :class:`EngineDead` after this many tokens; the engine stays dead
``hang``               never produce a token (until aborted)
``hang_after``         produce this many tokens, then nothing more (until aborted): a stalled engine
``load_seconds``       how long ``start()`` takes
``fail_load``          ``start()`` raises :class:`EngineDead`
``structured_output``  claim constrained decoding (answer with a JSON ``text`` to play along)
``kind``               ``chat`` (default), ``embeddings`` or ``image_embeddings``: what it serves
``dimensions``         length of its embeddings (default 8)

Embeddings are deterministic: a unit vector derived from a hash of each input.

A token is a word with its trailing spaces; the prompt's token count is the number of words in
it. Counters (``started``, ``aborted``, ``completed``, ``active``) let tests see what happened, and
``requests`` / ``embedded`` hold the latest requests served (at most ``2 * KEEP`` of each, so a
long-running fake, a benchmark's, does not grow without bound).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from aimi.engines.api import (
    EmbeddingRequest,
    Embeddings,
    EngineCapabilities,
    EngineConfig,
    EngineDead,
    EngineState,
    Event,
    Finish,
    GenerationRequest,
    ModelFacts,
    RequestFailed,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from aimi.engines.options import EngineOptions

KEEP = 256
DEFAULT_TEXT = "Hello from the fake engine: naïve café, 東京, 🙂 and nothing more."
_TOKEN = re.compile(r"\S+\s*|\s+")


def tokenize(text: str) -> list[str]:
    """The fake engine's tokens: words with their trailing whitespace."""
    return _TOKEN.findall(text)


def _keep(kept: list[Any], request: Any) -> None:
    """Remember ``request``, forgetting the oldest ones past ``2 * KEEP`` (in one cut, so appending stays cheap)."""
    kept.append(request)
    if len(kept) > 2 * KEEP:
        del kept[:-KEEP]


def _logprobs(token: str, position: int, alternatives: int | None) -> tuple[TokenLogprob, ...]:
    if alternatives is None:
        return ()
    logprob = -0.1 * position
    chosen = TopLogprob(token, logprob, tuple(token.encode()))
    others = [TopLogprob(f"alt{k}", logprob - k, tuple(f"alt{k}".encode())) for k in range(1, alternatives)]
    return (TokenLogprob(token, logprob, chosen.bytes, tuple([chosen, *others][:alternatives])),)


class FakeOptions(EngineOptions):
    """The script, as the module's docstring describes it."""

    engine_name: ClassVar[str] = "fake"

    text: str = DEFAULT_TEXT
    tokens_per_second: Annotated[float, Field(ge=0)] = 0
    burst: bool = False
    fail_after: Annotated[int, Field(ge=0)] | None = None
    die_after: Annotated[int, Field(ge=0)] | None = None
    hang: bool = False
    hang_after: Annotated[int, Field(ge=0)] | None = None
    load_seconds: Annotated[float, Field(ge=0)] = 0
    fail_load: bool = False
    structured_output: bool = False
    kind: Literal["chat", "embeddings", "image_embeddings"] = "chat"
    dimensions: Annotated[int, Field(ge=1)] = 8


class FakeEngine:
    """Answers every request with ``options["text"]``, paced and failing as scripted."""

    # Logprobs are synthetic (token k has log-probability -0.1 * (k + 1)); the fake engine has
    # no grammar, no vocabulary and no token ids, so the pipeline's 422s can be tested on it.
    capabilities = EngineCapabilities(
        chat=True,
        completions=True,
        logprobs=True,
        extra_parameters={"top_k": int, "min_p": (int, float), "ignore_eos": bool},
    )

    Options = FakeOptions

    def __init__(self, config: EngineConfig) -> None:
        FakeOptions.parse(config.options)
        self.config = config
        # The script stays a plain dict: a test may change it while the engine runs.
        self.options: dict[str, Any] = dict(config.options)
        kind = self.options.get("kind", "chat")
        if self.options.get("structured_output"):
            self.capabilities = replace(FakeEngine.capabilities, structured_output=True)
        elif kind != "chat":
            self.capabilities = EngineCapabilities(
                chat=False,
                completions=False,
                embeddings=True,
                image_embeddings=kind == "image_embeddings",
                token_inputs=True,
            )
        self.embedded: list[EmbeddingRequest] = []
        self._state = EngineState.LOADING
        self._cancelled: dict[str, asyncio.Event] = {}
        self.started = 0
        self.aborted = 0
        self.completed = 0
        self.tokens_generated = 0
        self.requests: list[GenerationRequest] = []

    @property
    def active(self) -> int:
        return len(self._cancelled)

    async def start(self) -> ModelFacts:
        if self.options.get("load_seconds"):
            await asyncio.sleep(float(self.options["load_seconds"]))
        if self.options.get("fail_load"):
            self._state = EngineState.DEAD
            raise EngineDead("the fake engine was told to fail loading")
        self._state = EngineState.READY
        return ModelFacts(context_length=self.config.context_size, n_slots=self.config.slots)

    def health(self) -> EngineState:
        return self._state

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        if self._state is not EngineState.READY:
            raise EngineDead("the fake engine is dead")
        if not self.capabilities.embeddings:
            raise RequestFailed("the fake engine serves chat")
        _keep(self.embedded, request)
        dims = int(self.options.get("dimensions", 8))
        keys: list[str] = (
            list(request.texts or ())
            or [" ".join(map(str, ids)) for ids in request.token_ids or ()]
            or [hashlib.sha256(i.image).hexdigest() + (i.text or "") for i in request.images or ()]
        )
        vectors = []
        for key in keys:
            digest = hashlib.sha256(key.encode()).digest()
            raw = [digest[i % len(digest)] - 127.5 for i in range(dims)]
            norm = math.sqrt(sum(x * x for x in raw))
            vectors.append([x / norm for x in raw])
        tokens = sum(len(tokenize(k)) for k in request.texts or ()) + sum(len(t) for t in request.token_ids or ())
        return Embeddings(vectors, tokens + len(request.images or ()))

    async def metrics(self) -> dict[str, float]:
        return {"tokens_generated": self.tokens_generated, "started": self.started, "aborted": self.aborted}

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        return self._prompt_tokens(request)

    async def abort(self, request_id: str) -> None:
        event = self._cancelled.get(request_id)
        if event is not None:
            event.set()

    def _prompt_tokens(self, request: GenerationRequest) -> int:
        if request.messages is not None:
            return sum(len(tokenize(turn.content or "")) + 3 for turn in request.messages)
        return len(tokenize(request.prompt or ""))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if self._state is not EngineState.READY:
            raise EngineDead("the fake engine is dead")
        prompt_tokens = self._prompt_tokens(request)
        if prompt_tokens > self.config.context_size:
            raise RequestFailed(
                f"the prompt is {prompt_tokens} tokens long; this deployment's context is "
                f"{self.config.context_size} tokens",
                client_error=True,
                code="context_length_exceeded",
            )
        _keep(self.requests, request)
        self.started += 1
        cancelled = asyncio.Event()
        self._cancelled[request.request_id] = cancelled
        finished = False
        try:
            if self.options.get("hang"):
                await cancelled.wait()
                return
            tokens = tokenize(str(self.options.get("text", DEFAULT_TEXT)))
            limit = request.max_tokens if request.max_tokens is not None else len(tokens)
            delay = 1 / float(self.options["tokens_per_second"]) if self.options.get("tokens_per_second") else 0
            produced = 0
            for token in tokens[:limit]:
                if cancelled.is_set():
                    return
                if self.options.get("fail_after") is not None and produced >= int(self.options["fail_after"]):
                    raise RequestFailed("the fake engine failed as scripted")
                if self.options.get("hang_after") is not None and produced >= int(self.options["hang_after"]):
                    await cancelled.wait()
                    return
                if self.options.get("die_after") is not None and produced >= int(self.options["die_after"]):
                    self._state = EngineState.DEAD
                    raise EngineDead("the fake engine died as scripted")
                if delay:
                    await asyncio.sleep(delay)
                elif not self.options.get("burst"):
                    await asyncio.sleep(0)
                produced += 1
                self.tokens_generated += 1
                yield TextDelta(token, 0, _logprobs(token, produced, request.logprobs))
            yield Finish("length" if limit < len(tokens) else "stop")
            yield Usage(prompt_tokens, produced)
            finished = True
        finally:
            self._cancelled.pop(request.request_id, None)
            if finished:
                self.completed += 1
            else:
                self.aborted += 1

    async def close(self) -> None:
        self._state = EngineState.DEAD
        for event in self._cancelled.values():
            event.set()

"""GGUF models in process through ``xllamacpp`` (llama.cpp's server core).

llama.cpp batches every running request over its parallel slots. Its request handlers block,
so each generation runs in a worker thread; chunks come back through a callback that hands
them to the event loop. Returning true from that callback is how llama.cpp is told to stop a
request: when the iterator is closed (client gone), the next chunk cancels the task and frees
its slot. Every request runs streamed inside, so non-streamed requests can be aborted too.

xllamacpp also starts llama.cpp's own HTTP server; aimi binds it to loopback on a free port and
locks it with a random key nobody is told, so it serves nobody but aimi.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import httpx

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
    Usage,
    measure_prompt_bound,
)
from aimi.engines.openai_wire import Dialect, chunk_events, request_payload, turn_to_json
from aimi.engines.options import EngineOptions

log = logging.getLogger(__name__)

_END = object()
# Pass-through parameters llama.cpp understands, with the name it knows them by.
_EXTRAS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "top_k": ("top_k", int),
    "min_p": ("min_p", (int, float)),
    "typical_p": ("typical_p", (int, float)),
    "repetition_penalty": ("repeat_penalty", (int, float)),
    "ignore_eos": ("ignore_eos", bool),
}
# llama.cpp generates until the context is full for max_tokens -1, and aimi watches for
# stop_token_ids itself, through the token ids that come with the logprobs.
_DIALECT = Dialect(
    max_tokens_unset=-1,
    legacy_logprobs=False,
    watches_stop_tokens=True,
    extra_names={key: (name,) for key, (name, _) in _EXTRAS.items()},
)


def _error_message(chunk: dict[str, Any]) -> RequestFailed:
    error = chunk.get("error")
    if not isinstance(error, dict):
        return RequestFailed(f"llama.cpp failed: {chunk!r}"[:500])
    message = str(error.get("message", "llama.cpp failed"))
    if error.get("type") == "exceed_context_size_error":
        return RequestFailed(
            f"the prompt is {error.get('n_prompt_tokens')} tokens long; this deployment's context is "
            f"{error.get('n_ctx')} tokens",
            client_error=True,
            code="context_length_exceeded",
        )
    if "too large" in message:  # an embedding input longer than the physical batch (the context)
        return RequestFailed(f"an input is longer than this model's context: {message}", client_error=True)
    return RequestFailed(message, client_error=error.get("code") == 400)


class LlamaCppOptions(EngineOptions):
    """``embedding``: serve embeddings instead of generations; ``verbosity``: llama.cpp's own log
    level (-1, the default, keeps it quiet)."""

    engine_name: ClassVar[str] = "llamacpp"

    embedding: bool = False
    verbosity: int = -1


class LlamaCppEngine:
    """llama.cpp through xllamacpp: continuous batching over ``config.slots`` parallel slots."""

    capabilities = EngineCapabilities(
        chat=True,
        completions=True,
        structured_output=True,
        logprobs=True,
        logit_bias=True,
        stop_token_ids=True,
        extra_parameters={key: kind for key, (_, kind) in _EXTRAS.items()},
    )
    Options = LlamaCppOptions

    def __init__(self, config: EngineConfig) -> None:
        if not config.model_path:
            raise ValueError("the llamacpp engine needs a model_path")
        self._config = config
        self._options = LlamaCppOptions.parse(config.options)
        self._server: Any = None
        self._state = EngineState.LOADING
        # Worker threads wait inside llama.cpp (without the GIL) while their request queues
        # or runs; more threads than slots lets llama.cpp's own queue hold the overflow.
        self._executor = ThreadPoolExecutor(max_workers=max(16, config.slots * 8), thread_name_prefix="aimi-llamacpp")
        self._active: dict[str, threading.Event] = {}
        self._embedding = self._options.embedding
        # llama.cpp's own HTTP server listens on loopback, locked with this key; aimi asks it only
        # to count tokens.
        self._internal_key = secrets.token_urlsafe(32)
        self._internal: httpx.AsyncClient | None = None
        if self._embedding:
            self.capabilities = EngineCapabilities(chat=False, completions=False, embeddings=True, token_inputs=True)

    async def start(self) -> ModelFacts:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.run_in_executor(self._executor, self._load)
        except Exception as exc:
            self._state = EngineState.DEAD
            raise EngineDead(f"llama.cpp could not load {self._config.model_path}: {exc}") from exc
        self._state = EngineState.READY
        bound = None if self._embedding else await measure_prompt_bound(self.count_tokens)
        return ModelFacts(context_length=self._config.context_size, n_slots=self._config.slots, prompt_bound=bound)

    def _load(self) -> Any:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = self._config.model_path
        params.n_parallel = self._config.slots
        params.n_ctx = self._config.context_size * self._config.slots
        threads = self._config.threads or max(1, os.cpu_count() or 1)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [self._internal_key]
        params.verbosity = self._options.verbosity
        params.endpoint_metrics = True
        if self._embedding:
            params.embedding = True
            # Models without a pooling of their own (decoders) are mean-pooled.
            if params.pooling_type == xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_UNSPECIFIED:
                params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
            # One input is one batch: the physical batch must hold the whole context.
            params.n_batch = params.n_ubatch = self._config.context_size
        return xllamacpp.Server(params)

    def health(self) -> EngineState:
        return self._state

    async def metrics(self) -> dict[str, float]:
        if self._server is None:
            return {"tokens_generated": 0}
        # llama.cpp answers through its task queue: wait for it off the event loop.
        raw = await asyncio.get_running_loop().run_in_executor(self._executor, self._server.handle_metrics)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        values: dict[str, float] = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name and not name.startswith("#") and value:
                values[name.removeprefix("llamacpp:")] = float(value)
        values["tokens_generated"] = values.get("tokens_predicted_total", 0)
        return values

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        if self._state is not EngineState.READY or not self._embedding:
            raise RequestFailed("this deployment does not serve embeddings")
        if request.images is not None:
            raise RequestFailed("this model embeds text, not images", client_error=True)
        inputs: list[Any] = list(request.texts or request.token_ids or ())
        body = json.dumps({"input": inputs, "encoding_format": "float"})
        raw = await asyncio.get_running_loop().run_in_executor(self._executor, self._server.handle_embeddings, body)
        answer = json.loads(raw)
        if "error" in answer:
            raise _error_message(answer)
        data = sorted(answer["data"], key=lambda item: item["index"])
        return Embeddings([list(item["embedding"]) for item in data], int(answer["usage"]["prompt_tokens"]))

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        if self._state is not EngineState.READY or self._embedding:
            return None
        if self._internal is None:
            self._internal = httpx.AsyncClient(
                base_url=str(self._server.listening_address),
                headers={"Authorization": f"Bearer {self._internal_key}"},
                timeout=10.0,
            )
        try:
            prompt = request.prompt or ""
            if request.messages is not None:
                rendered = await self._internal.post(
                    "/apply-template", json={"messages": [turn_to_json(turn) for turn in request.messages]}
                )
                prompt = rendered.raise_for_status().json()["prompt"]
            tokens = await self._internal.post("/tokenize", json={"content": prompt, "add_special": True})
            return len(tokens.raise_for_status().json()["tokens"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            log.warning("llama.cpp could not count the prompt's tokens: %s", exc)
            return None

    async def abort(self, request_id: str) -> None:
        cancelled = self._active.get(request_id)
        if cancelled is not None:
            cancelled.set()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if self._state is not EngineState.READY:
            raise EngineDead("the llama.cpp engine is not running")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def on_chunk(data: str) -> bool:
            if cancelled.is_set():
                return True
            loop.call_soon_threadsafe(queue.put_nowait, data)
            return False

        handle: Callable[[str, Callable[[str], bool]], None]
        if request.messages is not None:
            handle = self._server.handle_chat_completions
        else:
            handle = self._server.handle_completions
        body = json.dumps(request_payload(request, _DIALECT))

        def handler(body: str, on_chunk: Callable[[str], bool]) -> None:
            # A request abandoned while it waited for a worker thread never reaches llama.cpp.
            if not cancelled.is_set():
                handle(body, on_chunk)

        self._active[request.request_id] = cancelled
        future = loop.run_in_executor(self._executor, handler, body, on_chunk)
        future.add_done_callback(lambda _: queue.put_nowait(_END))
        chat = request.messages is not None
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    if future.exception() is not None:
                        raise RequestFailed(f"llama.cpp failed: {future.exception()}")
                    return
                chunk = json.loads(item)
                if "error" in chunk:
                    raise _error_message(chunk)
                for event in chunk_events(chunk, chat, request.logprobs):
                    yield event
                if _hits_stop_token(chunk, request.stop_token_ids):
                    # Stop after the chunk holding the stop token; its text is kept.
                    cancelled.set()
                    timings = chunk.get("timings") or {}
                    yield Finish("stop")
                    yield Usage(
                        int(timings.get("cache_n", 0)) + int(timings.get("prompt_n", 0)),
                        int(timings.get("predicted_n", 0)),
                    )
                    return
        finally:
            cancelled.set()
            self._active.pop(request.request_id, None)

    async def close(self) -> None:
        self._state = EngineState.DEAD
        for cancelled in self._active.values():
            cancelled.set()
        if self._internal is not None:
            await self._internal.aclose()
        # Dropping the last reference joins llama.cpp's loop thread: do it off the event loop.
        holder = [self._server]
        self._server = None
        await asyncio.get_running_loop().run_in_executor(self._executor, holder.clear)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _hits_stop_token(chunk: dict[str, Any], stop_token_ids: list[int]) -> bool:
    if not stop_token_ids:
        return False
    for choice in chunk.get("choices") or ():
        for entry in (choice.get("logprobs") or {}).get("content") or ():
            if entry.get("id") in stop_token_ids:
                return True
    return False

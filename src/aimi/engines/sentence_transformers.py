"""Text embedding models through sentence-transformers, on the CPU or a GPU.

Requests that arrive while a batch runs are gathered into the next one (up to ``max_batch``
inputs), so concurrent clients share forward passes. The model runs in a worker thread; torch,
transformers and sentence-transformers are imported only when the engine starts.

Options (``EngineConfig.options``): ``max_batch`` (default 64 inputs), ``device`` (default
"cpu").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import Field

from aimi.engines.api import (
    EmbeddingRequest,
    Embeddings,
    EngineCapabilities,
    EngineConfig,
    EngineDead,
    EngineState,
    Event,
    GenerationRequest,
    ModelFacts,
    RequestFailed,
)
from aimi.engines.options import EngineOptions


@dataclass
class _Pending:
    request: EmbeddingRequest
    done: asyncio.Future[Embeddings] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def size(self) -> int:
        return len(self.request.texts or self.request.token_ids or ())


class SentenceTransformersOptions(EngineOptions):
    """``max_batch``: most inputs in one forward pass; ``device``: where the model runs."""

    engine_name: ClassVar[str] = "sentence-transformers"

    max_batch: Annotated[int, Field(ge=1)] = 64
    device: str = "cpu"


class SentenceTransformersEngine:
    """A sentence-transformers model directory (config, weights, tokenizer, pooling modules)."""

    capabilities = EngineCapabilities(chat=False, completions=False, embeddings=True, token_inputs=True)
    Options = SentenceTransformersOptions

    def __init__(self, config: EngineConfig) -> None:
        if not config.model_path:
            raise ValueError("the sentence-transformers engine needs a model_path")
        self._config = config
        self._options = SentenceTransformersOptions.parse(config.options)
        self._model: Any = None
        self._state = EngineState.LOADING
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimi-embed")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._max_batch = self._options.max_batch
        self.batches = 0
        self.inputs = 0

    async def start(self) -> ModelFacts:
        loop = asyncio.get_running_loop()
        try:
            self._model = await loop.run_in_executor(self._executor, self._load)
        except Exception as exc:
            self._state = EngineState.DEAD
            raise EngineDead(f"sentence-transformers could not load {self._config.model_path}: {exc}") from exc
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._batches())
        self._state = EngineState.READY
        return ModelFacts(context_length=int(self._model.max_seq_length), n_slots=1)

    def _load(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: nothing to fetch
        import torch
        from sentence_transformers import SentenceTransformer

        if self._config.threads:
            torch.set_num_threads(self._config.threads)
        device = self._options.device
        return SentenceTransformer(str(self._config.model_path), device=device, local_files_only=True)

    @property
    def dimensions(self) -> int:
        return int(self._model.get_embedding_dimension())

    def health(self) -> EngineState:
        return self._state

    async def metrics(self) -> dict[str, float]:
        return {"tokens_generated": 0, "batches": self.batches, "inputs_embedded": self.inputs}

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        return None

    async def abort(self, request_id: str) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        raise RequestFailed("this deployment serves embeddings, not text generation")
        yield  # pragma: no cover - makes this an async generator

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        if self._state is not EngineState.READY or self._queue is None:
            raise EngineDead("the sentence-transformers engine is not running")
        if request.images is not None:
            raise RequestFailed("this model embeds text, not images", client_error=True)
        pending = _Pending(request)
        self._queue.put_nowait(pending)
        return await pending.done

    async def _batches(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = batch[0].size
            while not self._queue.empty() and size + self._queue._queue[0].size <= self._max_batch:  # type: ignore[attr-defined]
                item = self._queue.get_nowait()
                batch.append(item)
                size += item.size
            live = [p for p in batch if not p.done.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run, [p.request for p in live])
            except Exception as exc:  # one failed forward pass fails its batch, not the engine
                for p in live:
                    if not p.done.done():
                        p.done.set_exception(RequestFailed(f"embedding failed: {exc}"))
                continue
            self.batches += 1
            for p, result in zip(live, results, strict=True):
                if not p.done.done():
                    if isinstance(result, RequestFailed):
                        p.done.set_exception(result)
                    else:
                        p.done.set_result(result)

    def _run(self, requests: list[EmbeddingRequest]) -> list[Embeddings | RequestFailed]:
        """One forward pass over every valid input of ``requests`` (in the worker thread)."""
        import torch

        model, tokenizer = self._model, self._model.tokenizer
        limit = int(model.max_seq_length)
        ids: list[list[int]] = []
        owners: list[int] = []
        outcome: list[Embeddings | RequestFailed | None] = [None] * len(requests)
        for r, request in enumerate(requests):
            if request.token_ids is not None:
                encoded = [list(t) for t in request.token_ids]
                vocab = int(tokenizer.vocab_size)
                bad = next((i for i, t in enumerate(encoded) if any(not 0 <= x < vocab for x in t)), None)
                if bad is not None:
                    outcome[r] = RequestFailed(
                        f"input {bad} holds a token id outside this model's vocabulary (0-{vocab - 1})",
                        client_error=True,
                    )
                    continue
            else:
                encoded = tokenizer(list(request.texts or ()), add_special_tokens=True)["input_ids"]
            too_long = next((i for i, t in enumerate(encoded) if len(t) > limit), None)
            if too_long is not None and not request.truncate:
                outcome[r] = RequestFailed(
                    f"input {too_long} is {len(encoded[too_long])} tokens long; this model takes at most {limit} "
                    '(send "truncate": true to cut inputs to fit)',
                    client_error=True,
                    code="context_length_exceeded",
                )
                continue
            for t in encoded:
                if len(t) > limit:
                    # Cut as the tokenizer would: text keeps its closing special token.
                    t = t[:limit] if request.token_ids is not None else t[: limit - 1] + t[-1:]
                ids.append(t)
                owners.append(r)
        vectors: list[list[float]] = []
        if ids:
            width = max(len(t) for t in ids)
            pad = int(tokenizer.pad_token_id or 0)
            input_ids = torch.tensor([t + [pad] * (width - len(t)) for t in ids])
            mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in ids])
            features: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
            if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
                features["token_type_ids"] = torch.zeros_like(input_ids)
            with torch.inference_mode():
                output = model.forward(features)["sentence_embedding"]
            vectors = output.float().cpu().tolist()
        self.inputs += len(ids)
        for r in range(len(requests)):
            if outcome[r] is None:
                mine = [i for i, owner in enumerate(owners) if owner == r]
                outcome[r] = Embeddings([vectors[i] for i in mine], sum(len(ids[i]) for i in mine))
        return [o for o in outcome if o is not None]

    async def close(self) -> None:
        self._state = EngineState.DEAD
        if self._worker is not None:
            self._worker.cancel()
        self._model = None
        self._executor.shutdown(wait=False, cancel_futures=True)

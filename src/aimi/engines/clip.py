"""CLIP-family image-text embedding models in process through ``transformers`` and ``torch``.

The model is a Hugging Face directory that ``CLIPModel.from_pretrained`` loads (``config.json``,
``model.safetensors`` or ``pytorch_model.bin``, ``preprocessor_config.json`` and the tokenizer's
files); it is read from ``config.model_path`` only, never from the Hub.

What comes back, one L2-normalised vector per input, in the shared image-text space:

* an image: the image tower's projected embedding;
* an image with ``text``: the normalised mean of the image's and the text's normalised embeddings
  (both towers project into the same space, so the result stays comparable with either);
* a text: the text tower's projected embedding.

``prompt_tokens`` counts what the towers processed: for a text, its tokens with the start and end
tokens, after truncation; for an image, the vision transformer's sequence, that is
``(image_size / patch_size) ** 2`` patches plus the class token (50 for ViT-B/32, 257 for
ViT-L/14); for an image with text, both.

Images arrive as bytes (decoded ``data:`` URLs, already size-capped by the caller); Pillow decodes
them here, and only the raster formats of :data:`IMAGE_FORMATS`. An input that does not decode, or
a text longer than the text tower's positions without ``truncate``, fails its request as a client
error; the engine keeps serving.

Concurrency: a request is prepared (images decoded and resized, texts tokenised) in one worker
thread, then queued; a second worker thread runs the model. Whenever the model is free, every
request waiting is taken into one forward pass per tower, up to ``max_batch`` inputs, so
concurrent requests are batched together without waiting for a batch to fill. A request is never
split between batches; one with more than ``max_batch`` inputs runs alone, its towers in passes
of ``max_batch`` inputs, which bounds the activations' memory (a ViT-L/14 pass over 2048 images
at once would need tens of GiB).

Options (``EngineConfig.options``), all optional:

``max_batch``         most inputs (images and texts) in one forward pass (default 64)
``max_image_pixels``  refuse images with more pixels than this (default 40 000 000)
``dtype``             ``float32`` (default), ``bfloat16`` or ``float16``: the weights' type
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, field_validator

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

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "AVIF", "BMP", "TIFF")
"""The formats Pillow may decode here (those its build has): common rasters, none that runs a
helper program (EPS)."""

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(slots=True)
class _Loaded:
    """The model and its preprocessors, and what the engine learnt from them."""

    model: Any
    tokenizer: Any
    image_processor: Any
    max_positions: int
    tokens_per_image: int
    pad_id: int
    eos_id: int | None
    dtype: torch.dtype


@dataclass(slots=True)
class _Job:
    """One prepared request waiting for the model.

    ``pixels`` holds the request's images (``None`` for a text request); ``texts`` the token ids
    of every text to embed; ``layout`` says, per input, which image and which text it is made of.
    """

    pixels: torch.Tensor | None
    texts: list[list[int]]
    layout: list[tuple[int | None, int | None]]
    prompt_tokens: int
    future: asyncio.Future[list[list[float]]] = field(repr=False)

    @property
    def size(self) -> int:
        return (0 if self.pixels is None else int(self.pixels.shape[0])) + len(self.texts)


class ClipOptions(EngineOptions):
    """The options in the module's docstring."""

    engine_name: ClassVar[str] = "clip"

    max_batch: int = DEFAULT_MAX_BATCH
    max_image_pixels: Annotated[int, Field(ge=1)] = DEFAULT_MAX_IMAGE_PIXELS
    dtype: str = "float32"

    @field_validator("max_batch")
    @classmethod
    def _at_least_one(cls, max_batch: int) -> int:
        return max(1, max_batch)

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, dtype: str) -> str:
        if dtype not in _DTYPES:
            raise ValueError(f"clip engine: dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
        return dtype


class ClipEngine:
    """Embeds images, images with text and texts with a CLIP-family model; see the module doc."""

    capabilities = EngineCapabilities(chat=False, completions=False, embeddings=True, image_embeddings=True)
    Options = ClipOptions

    def __init__(self, config: EngineConfig) -> None:
        if not config.model_path:
            raise ValueError("the clip engine needs a model_path: a local Hugging Face CLIP directory")
        self._config = config
        options = ClipOptions.parse(config.options)
        self._max_batch = options.max_batch
        self._max_image_pixels = options.max_image_pixels
        self._dtype_name = options.dtype
        self._state = EngineState.LOADING
        self._loaded: _Loaded | None = None
        # Preparation (Pillow, the image processor, the tokenizer) and the model each get one
        # thread: the tokenizer is not safe to share between threads, and batches run in order.
        self._prepare_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimi-clip-prepare")
        self._model_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimi-clip-model")
        self._queue: collections.deque[_Job] = collections.deque()
        self._wakeup = asyncio.Event()
        self._batcher: asyncio.Task[None] | None = None
        self._running: list[_Job] = []
        self.images_embedded = 0
        self.texts_embedded = 0
        self.requests_embedded = 0
        self.batches = 0

    # Lifecycle.

    async def start(self) -> ModelFacts:
        loop = asyncio.get_running_loop()
        try:
            self._loaded = await loop.run_in_executor(self._model_pool, self._load)
        except Exception as exc:
            self._state = EngineState.DEAD
            raise EngineDead(f"the clip engine could not load {self._config.model_path}: {exc}") from exc
        self._batcher = asyncio.create_task(self._run_batches(), name="aimi-clip-batcher")
        self._state = EngineState.READY
        return ModelFacts(context_length=self._loaded.max_positions, n_slots=self._config.slots)

    def _load(self) -> _Loaded:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        path = str(self._config.model_path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path} is not a directory")
        if self._config.threads:
            torch.set_num_threads(self._config.threads)
        dtype: torch.dtype = getattr(torch, self._dtype_name)
        # Typed as Any: the configs' attributes are typed loosely (``dict | Config | None``).
        model: Any = CLIPModel.from_pretrained(path, local_files_only=True, dtype=dtype)
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)  # type: ignore[no-untyped-call, unused-ignore]  # typed from transformers 5.25
        text_config = model.config.text_config
        vision_config = model.config.vision_config
        patches_per_side = int(vision_config.image_size) // int(vision_config.patch_size)
        eos_id = tokenizer.eos_token_id
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = eos_id if eos_id is not None else 0
        loaded = _Loaded(
            model=model,
            tokenizer=tokenizer,
            image_processor=image_processor,
            max_positions=int(text_config.max_position_embeddings),
            tokens_per_image=patches_per_side * patches_per_side + 1,
            pad_id=int(pad_id),
            eos_id=None if eos_id is None else int(eos_id),
            dtype=dtype,
        )
        log.info(
            "clip engine: loaded %s (projection %d, %d text positions, %d image tokens)",
            path,
            int(model.config.projection_dim),
            loaded.max_positions,
            loaded.tokens_per_image,
        )
        return loaded

    def health(self) -> EngineState:
        return self._state

    async def metrics(self) -> dict[str, float]:
        return {
            "tokens_generated": 0,
            "images_embedded": self.images_embedded,
            "texts_embedded": self.texts_embedded,
            "requests_embedded": self.requests_embedded,
            "batches": self.batches,
        }

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        return None

    async def abort(self, request_id: str) -> None:
        """Nothing to stop: an embedding request is one short batch; cancelling the task that
        awaits :meth:`embed` drops it from the queue if it has not reached the model yet."""

    async def close(self) -> None:
        self._state = EngineState.DEAD
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except asyncio.CancelledError:
                pass
            self._batcher = None
        self._fail_queued(EngineDead("the clip engine was closed"))
        loaded, self._loaded = self._loaded, None
        holder = [loaded]
        await asyncio.get_running_loop().run_in_executor(self._model_pool, holder.clear)
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)
        self._model_pool.shutdown(wait=False, cancel_futures=True)

    # Requests.

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        raise RequestFailed("this deployment serves embeddings")
        yield  # an async generator, like every engine's generate()

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        loaded = self._loaded
        if self._state is not EngineState.READY or loaded is None:
            raise EngineDead("the clip engine is not running")
        if request.token_ids is not None:
            raise RequestFailed("this model embeds texts and images, not token ids", client_error=True)
        count = len(request.images) if request.images is not None else len(request.texts or ())
        if count == 0:
            return Embeddings([], 0)
        loop = asyncio.get_running_loop()
        pixels, texts, layout, prompt_tokens = await loop.run_in_executor(
            self._prepare_pool, self._prepare, loaded, request
        )
        if self._state is not EngineState.READY:  # closed while this request was prepared
            raise EngineDead("the clip engine is not running")
        job = _Job(pixels, texts, layout, prompt_tokens, loop.create_future())
        self._queue.append(job)
        self._wakeup.set()
        vectors = await job.future
        self.requests_embedded += 1
        self.images_embedded += 0 if pixels is None else int(pixels.shape[0])
        self.texts_embedded += len(texts)
        return Embeddings(vectors, prompt_tokens)

    def _prepare(
        self, loaded: _Loaded, request: EmbeddingRequest
    ) -> tuple[torch.Tensor | None, list[list[int]], list[tuple[int | None, int | None]], int]:
        """Decode, resize and tokenise (in the preparation thread); raise the client's errors."""
        texts: list[list[int]] = []
        layout: list[tuple[int | None, int | None]] = []
        if request.images is None:
            for index, text in enumerate(request.texts or ()):
                texts.append(self._tokenize(loaded, text, index, request.truncate))
                layout.append((None, index))
            return None, texts, layout, sum(len(ids) for ids in texts)
        images = []
        for index, item in enumerate(request.images):
            images.append(self._decode(item.image, index))
            text_index: int | None = None
            if item.text:
                text_index = len(texts)
                texts.append(self._tokenize(loaded, item.text, index, request.truncate))
            layout.append((index, text_index))
        try:
            processed = loaded.image_processor(images=images, return_tensors="pt")
        except Exception as exc:  # an image Pillow opened but the processor cannot take
            raise RequestFailed(f"the images could not be prepared: {exc}", client_error=True) from exc
        pixels: torch.Tensor = processed["pixel_values"]
        tokens = len(images) * loaded.tokens_per_image + sum(len(ids) for ids in texts)
        return pixels, texts, layout, tokens

    def _decode(self, data: bytes, index: int) -> Any:
        from PIL import Image

        Image.init()
        formats = [name for name in IMAGE_FORMATS if name in Image.OPEN]
        try:
            image: Image.Image = Image.open(io.BytesIO(data), formats=formats)
            width, height = image.size
            if width * height > self._max_image_pixels:
                raise RequestFailed(
                    f"input {index}: the image is {width}x{height} pixels; at most "
                    f"{self._max_image_pixels} pixels are accepted",
                    client_error=True,
                    code="invalid_image",
                )
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")
            return image.convert("RGB")
        except RequestFailed:
            raise
        except Exception as exc:
            raise RequestFailed(
                f"input {index}: the image could not be decoded ({type(exc).__name__}: {exc}); "
                f"accepted formats: {', '.join(formats)}",
                client_error=True,
                code="invalid_image",
            ) from exc

    def _tokenize(self, loaded: _Loaded, text: str, index: int, truncate: bool) -> list[int]:
        ids = [int(token) for token in loaded.tokenizer(text)["input_ids"]]
        limit = loaded.max_positions
        if len(ids) <= limit:
            return ids
        if not truncate:
            raise RequestFailed(
                f"input {index}: the text is {len(ids)} tokens long; this model takes at most {limit}",
                client_error=True,
                code="context_length_exceeded",
            )
        if loaded.eos_id is not None and ids[-1] == loaded.eos_id:
            # Keep the end token: CLIP's text tower pools at it.
            return ids[: limit - 1] + [ids[-1]]
        return ids[:limit]

    # The batcher.

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    batch = self._take_batch()
                    if not batch:
                        continue
                    loaded = self._loaded
                    if loaded is None:
                        raise EngineDead("the clip engine was closed")
                    # Kept where close() can fail them if it cancels this pass.
                    self._running = batch
                    try:
                        results = await loop.run_in_executor(self._model_pool, self._forward, loaded, batch)
                    except Exception as exc:
                        self._running = []
                        log.exception("clip engine: a batch of %d requests failed", len(batch))
                        for job in batch:
                            if not job.future.done():
                                job.future.set_exception(RequestFailed(f"the clip model failed: {exc}"))
                        continue
                    self._running = []
                    self.batches += 1
                    for job, vectors in zip(batch, results, strict=True):
                        if not job.future.done():
                            job.future.set_result(vectors)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.exception("clip engine: the batcher stopped")
            self._state = EngineState.DEAD
            self._fail_queued(EngineDead(f"the clip engine stopped: {exc}"))
            raise

    def _take_batch(self) -> list[_Job]:
        """The waiting requests that fit one pass; always at least the first live one."""
        batch: list[_Job] = []
        total = 0
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # its caller went away
                self._queue.popleft()
                continue
            if batch and total + job.size > self._max_batch:
                break
            batch.append(self._queue.popleft())
            total += job.size
        return batch

    def _fail_queued(self, error: Exception) -> None:
        waiting, self._running = self._running + list(self._queue), []
        self._queue.clear()
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(error)

    def _forward(self, loaded: _Loaded, batch: list[_Job]) -> list[list[list[float]]]:
        """Every input of the batch through its tower (in the model thread): one pass per tower,
        or one per ``max_batch`` inputs for a request larger than that."""
        import torch
        import torch.nn.functional as F

        image_offsets: list[int] = []
        text_offsets: list[int] = []
        pixel_parts: list[torch.Tensor] = []
        token_rows: list[list[int]] = []
        images_seen = 0
        for job in batch:
            image_offsets.append(images_seen)
            text_offsets.append(len(token_rows))
            if job.pixels is not None:
                pixel_parts.append(job.pixels)
                images_seen += int(job.pixels.shape[0])
            token_rows.extend(job.texts)
        step = self._max_batch
        with torch.inference_mode():
            image_vectors = None
            if pixel_parts:
                pixels = torch.cat(pixel_parts).to(loaded.dtype)
                image_vectors = torch.cat(
                    [
                        _features(loaded.model.get_image_features(pixel_values=pixels[start : start + step]))
                        for start in range(0, len(pixels), step)
                    ]
                )
                image_vectors = F.normalize(image_vectors.float())
            text_vectors = None
            if token_rows:
                text_vectors = torch.cat(
                    [
                        self._encode_texts(loaded, token_rows[start : start + step])
                        for start in range(0, len(token_rows), step)
                    ]
                )
                text_vectors = F.normalize(text_vectors.float())
            results: list[list[list[float]]] = []
            for job, image_offset, text_offset in zip(batch, image_offsets, text_offsets, strict=True):
                rows: list[torch.Tensor] = []
                for image_index, text_index in job.layout:
                    if image_index is None:
                        assert text_vectors is not None and text_index is not None
                        rows.append(text_vectors[text_offset + text_index])
                        continue
                    assert image_vectors is not None
                    vector = image_vectors[image_offset + image_index]
                    if text_index is not None:
                        assert text_vectors is not None
                        vector = F.normalize(vector + text_vectors[text_offset + text_index], dim=0)
                    rows.append(vector)
                vectors: list[list[float]] = torch.stack(rows).tolist()
                results.append(vectors)
            return results

    @staticmethod
    def _encode_texts(loaded: _Loaded, token_rows: list[list[int]]) -> torch.Tensor:
        """The text tower over right-padded rows; the padding is masked, so it changes nothing."""
        import torch

        width = max(len(row) for row in token_rows)
        input_ids = torch.full((len(token_rows), width), loaded.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(token_rows), width), dtype=torch.long)
        for row, ids in enumerate(token_rows):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return _features(loaded.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def _features(output: Any) -> torch.Tensor:
    """The projected embeddings: transformers 5 returns them as ``pooler_output``, 4 as a tensor."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled: torch.Tensor = output.pooler_output
    return pooled

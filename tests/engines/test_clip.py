"""The CLIP engine on a tiny random CLIP model built here (nothing comes from the Hub)."""

from __future__ import annotations

import asyncio
import io
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from aimi.engines import build_engine
from aimi.engines.api import (
    EmbeddingRequest,
    Engine,
    EngineConfig,
    EngineDead,
    EngineState,
    GenerationRequest,
    ImageInput,
    RequestFailed,
)
from aimi.engines.clip import ClipEngine

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("PIL")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECTION_DIM = 24
MAX_POSITIONS = 16
IMAGE_SIZE = 32
PATCH_SIZE = 8
TOKENS_PER_IMAGE = (IMAGE_SIZE // PATCH_SIZE) ** 2 + 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _byte_level_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode table: the characters a byte-level BPE vocabulary starts from."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP model with a character-level CLIP tokenizer, saved as Hugging Face files."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in _byte_level_alphabet():
        vocab[char] = len(vocab)
    for char in _byte_level_alphabet():
        vocab[char + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    small = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPConfig(
        text_config={
            **small,
            "vocab_size": len(vocab),
            "max_position_embeddings": MAX_POSITIONS,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**small, "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE},
        projection_dim=PROJECTION_DIM,
    )
    torch.manual_seed(0)
    model = CLIPModel(config)
    processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    path = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture
async def engine(clip_dir: Path) -> AsyncIterator[ClipEngine]:
    built = ClipEngine(EngineConfig(model_path=str(clip_dir), slots=4, threads=1))
    assert built.health() is EngineState.LOADING
    facts = await built.start()
    assert (facts.context_length, facts.n_slots) == (MAX_POSITIONS, 4)
    assert built.health() is EngineState.READY
    yield built
    await built.close()
    assert built.health() is EngineState.DEAD


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new(mode, size, color if mode == "RGB" else 0)
    ImageDraw.Draw(image).rectangle((5, 5, 20, 15), fill=(255 - color[0], color[1] // 2, 255 - color[2]))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


RED, GREEN, BLUE = png((220, 20, 20)), png((20, 200, 30)), png((10, 30, 240), size=(64, 64))


def images(*items: ImageInput, truncate: bool = False) -> EmbeddingRequest:
    return EmbeddingRequest(request_id=uuid.uuid4().hex, images=list(items), truncate=truncate)


def texts(*items: str, truncate: bool = False) -> EmbeddingRequest:
    return EmbeddingRequest(request_id=uuid.uuid4().hex, texts=list(items), truncate=truncate)


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def close_to(a: list[float], b: list[float], tolerance: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


async def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def text_tokens(engine: ClipEngine, text: str) -> int:
    loaded: Any = engine._loaded
    return len(loaded.tokenizer(text)["input_ids"])


def test_the_engine_is_registered_and_importing_it_does_not_import_torch(clip_dir: Path) -> None:
    built = build_engine("clip", EngineConfig(model_path=str(clip_dir)))
    assert isinstance(built, ClipEngine)
    assert isinstance(built, Engine)
    assert built.capabilities.image_embeddings and built.capabilities.embeddings
    assert not built.capabilities.chat and not built.capabilities.completions
    code = "import sys, aimi.engines.clip; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.anyio
async def test_images_give_unit_vectors_of_the_projection_dim(engine: ClipEngine) -> None:
    result = await engine.embed(images(ImageInput(RED), ImageInput(GREEN), ImageInput(BLUE)))
    assert len(result.vectors) == 3
    for vector in result.vectors:
        assert len(vector) == PROJECTION_DIM
        assert all(isinstance(x, float) for x in vector)
        assert norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert not close_to(result.vectors[0], result.vectors[1])
    assert result.prompt_tokens == 3 * TOKENS_PER_IMAGE
    metrics = await engine.metrics()
    assert metrics["tokens_generated"] == 0
    assert metrics["images_embedded"] == 3


@pytest.mark.anyio
async def test_the_same_image_gives_the_same_vector(engine: ClipEngine) -> None:
    twice = await engine.embed(images(ImageInput(RED), ImageInput(GREEN), ImageInput(RED)))
    assert twice.vectors[0] == twice.vectors[2]
    again = await engine.embed(images(ImageInput(RED)))
    assert close_to(again.vectors[0], twice.vectors[0])


@pytest.mark.anyio
async def test_an_image_with_text_is_the_normalised_mean_of_both(engine: ClipEngine) -> None:
    caption = "a red square"
    both = await engine.embed(images(ImageInput(RED, caption), ImageInput(RED)))
    fused, alone = both.vectors
    assert norm(fused) == pytest.approx(1.0, abs=1e-5)
    assert not close_to(fused, alone, 1e-3)
    text = (await engine.embed(texts(caption))).vectors[0]
    summed = [a + b for a, b in zip(alone, text, strict=True)]
    expected = [x / norm(summed) for x in summed]
    assert close_to(fused, expected)
    assert both.prompt_tokens == 2 * TOKENS_PER_IMAGE + text_tokens(engine, caption)


@pytest.mark.anyio
async def test_texts_are_embedded_with_the_text_tower(engine: ClipEngine) -> None:
    inputs = ["a photo of a cat", "hi", ""]
    result = await engine.embed(texts(*inputs))
    assert len(result.vectors) == 3
    for vector in result.vectors:
        assert len(vector) == PROJECTION_DIM
        assert norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert result.prompt_tokens == sum(text_tokens(engine, text) for text in inputs)
    # Padding in a batch does not change a text's vector.
    alone = await engine.embed(texts("hi"))
    assert close_to(alone.vectors[0], result.vectors[1])


@pytest.mark.anyio
async def test_an_undecodable_image_is_a_client_error_naming_its_input(engine: ClipEngine) -> None:
    for bad in (b"not an image at all", RED[:40], b"%!PS-Adobe-3.0 EPSF-3.0\n"):
        with pytest.raises(RequestFailed) as caught:
            await engine.embed(images(ImageInput(GREEN), ImageInput(bad)))
        assert caught.value.client_error
        assert "input 1" in caught.value.message
    # The engine keeps serving.
    assert len((await engine.embed(images(ImageInput(GREEN)))).vectors) == 1
    assert engine.health() is EngineState.READY


@pytest.mark.anyio
async def test_other_image_modes_are_converted(engine: ClipEngine) -> None:
    from PIL import Image

    results = []
    for mode in ("L", "RGBA", "P"):
        image = Image.new(mode, (20, 20))
        if mode == "P":
            image.info["transparency"] = 0
        out = io.BytesIO()
        image.save(out, format="PNG" if mode != "RGBA" else "WEBP")
        results.append(await engine.embed(images(ImageInput(out.getvalue()))))
    assert all(len(result.vectors[0]) == PROJECTION_DIM for result in results)


@pytest.mark.anyio
async def test_too_long_texts_fail_unless_truncated(engine: ClipEngine) -> None:
    letters = list("abcdefghijklmnopqrstuvwxyz")
    long_text = " ".join(letters)  # one token per letter, plus the start and end tokens
    with pytest.raises(RequestFailed) as caught:
        await engine.embed(texts("short", long_text))
    assert caught.value.client_error
    assert caught.value.code == "context_length_exceeded"
    assert "input 1" in caught.value.message
    with pytest.raises(RequestFailed) as caught:
        await engine.embed(images(ImageInput(RED, long_text)))
    assert caught.value.client_error
    cut = await engine.embed(texts(long_text, truncate=True))
    assert cut.prompt_tokens == MAX_POSITIONS
    assert norm(cut.vectors[0]) == pytest.approx(1.0, abs=1e-5)
    fused = await engine.embed(images(ImageInput(RED, long_text), truncate=True))
    assert fused.prompt_tokens == TOKENS_PER_IMAGE + MAX_POSITIONS
    # Truncation keeps the first tokens and the end token: the text is seen as its prefix.
    prefix = await engine.embed(texts(" ".join(letters[: MAX_POSITIONS - 2])))
    assert prefix.prompt_tokens == MAX_POSITIONS
    assert close_to(prefix.vectors[0], cut.vectors[0])


@pytest.mark.anyio
async def test_concurrent_requests_share_forward_passes(engine: ClipEngine) -> None:
    requests = [images(ImageInput(png((30 * i, 100, 200 - 20 * i)))) for i in range(6)]
    requests += [texts(f"caption number {i}") for i in range(4)]
    alone = [await engine.embed(request) for request in requests]
    before = (await engine.metrics())["batches"]
    # Hold the model thread so that every request is prepared and queued before the next pass.
    release = threading.Event()
    busy = asyncio.get_running_loop().run_in_executor(engine._model_pool, release.wait)
    pending = asyncio.gather(*(engine.embed(request) for request in requests))
    await wait_for(lambda: len(engine._queue) + len(engine._running) == len(requests))
    release.set()
    await busy
    together = await pending
    batches = (await engine.metrics())["batches"] - before
    assert batches <= 2  # the first request may have reached the batcher alone
    for one, other in zip(alone, together, strict=True):
        assert one.prompt_tokens == other.prompt_tokens
        assert close_to(one.vectors[0], other.vectors[0], 1e-4)


@pytest.mark.anyio
async def test_a_request_larger_than_max_batch_runs_in_several_passes(clip_dir: Path, engine: ClipEngine) -> None:
    colors = [png((40 * i, 90, 250 - 40 * i)) for i in range(5)]
    request = images(*(ImageInput(color, "a caption" if i % 2 else None) for i, color in enumerate(colors)))
    whole = await engine.embed(request)
    small = ClipEngine(EngineConfig(model_path=str(clip_dir), options={"max_batch": 2}))
    await small.start()
    model: Any = small._loaded.model if small._loaded else None
    sizes: list[int] = []
    image_tower = model.get_image_features

    def counting(pixel_values: Any) -> Any:
        sizes.append(len(pixel_values))
        return image_tower(pixel_values=pixel_values)

    model.get_image_features = counting
    try:
        chunked = await small.embed(request)
    finally:
        await small.close()
    assert sizes == [2, 2, 1]
    assert chunked.prompt_tokens == whole.prompt_tokens
    for one, other in zip(whole.vectors, chunked.vectors, strict=True):
        assert close_to(one, other, 1e-4)


@pytest.mark.anyio
async def test_a_bad_request_does_not_fail_the_ones_batched_with_it(engine: ClipEngine) -> None:
    good = [engine.embed(images(ImageInput(GREEN))) for _ in range(3)]
    bad = engine.embed(images(ImageInput(b"garbage")))
    outcomes = await asyncio.gather(*good, bad, return_exceptions=True)
    assert all(not isinstance(outcome, BaseException) for outcome in outcomes[:3])
    assert isinstance(outcomes[3], RequestFailed) and outcomes[3].client_error


@pytest.mark.anyio
async def test_a_cancelled_request_leaves_the_engine_serving(engine: ClipEngine) -> None:
    task = asyncio.create_task(engine.embed(images(*(ImageInput(BLUE) for _ in range(8)))))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len((await engine.embed(texts("still here"))).vectors) == 1


@pytest.mark.anyio
async def test_closing_fails_the_requests_still_waiting(clip_dir: Path) -> None:
    built = ClipEngine(EngineConfig(model_path=str(clip_dir), slots=2))
    await built.start()
    release = threading.Event()
    busy = asyncio.get_running_loop().run_in_executor(built._model_pool, release.wait)
    pending = [asyncio.create_task(built.embed(texts(f"text {i}"))) for i in range(3)]
    await wait_for(lambda: len(built._queue) + len(built._running) == 3)
    closing = asyncio.create_task(built.close())
    await wait_for(lambda: built.health() is EngineState.DEAD)
    release.set()
    await busy
    await closing
    for task in pending:
        with pytest.raises(EngineDead):
            await task


@pytest.mark.anyio
async def test_generation_and_token_ids_are_refused(engine: ClipEngine) -> None:
    with pytest.raises(RequestFailed, match="serves embeddings"):
        async for _ in engine.generate(GenerationRequest(request_id="x", max_tokens=4, prompt="hi")):
            pass
    with pytest.raises(RequestFailed) as caught:
        await engine.embed(EmbeddingRequest(request_id="y", token_ids=[[1, 2, 3]]))
    assert caught.value.client_error
    await engine.abort("unknown")  # a no-op
    assert (await engine.embed(texts())).vectors == []


@pytest.mark.anyio
async def test_a_missing_directory_is_a_dead_engine(tmp_path: Path) -> None:
    built = ClipEngine(EngineConfig(model_path=str(tmp_path / "nowhere")))
    with pytest.raises(EngineDead):
        await built.start()
    assert built.health() is EngineState.DEAD
    with pytest.raises(EngineDead):
        await built.embed(texts("hello"))
    await built.close()


@pytest.mark.anyio
async def test_a_directory_without_a_model_is_a_dead_engine(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    built = ClipEngine(EngineConfig(model_path=str(tmp_path)))
    with pytest.raises(EngineDead):
        await built.start()
    assert built.health() is EngineState.DEAD
    await built.close()


@pytest.mark.anyio
async def test_requests_after_close_fail(clip_dir: Path) -> None:
    built = ClipEngine(EngineConfig(model_path=str(clip_dir), slots=1))
    await built.start()
    await built.close()
    assert built.health() is EngineState.DEAD
    with pytest.raises(EngineDead):
        await built.embed(images(ImageInput(RED)))


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError):
        ClipEngine(EngineConfig(model_path=None))
    with pytest.raises(ValueError):
        ClipEngine(EngineConfig(model_path="/x", options={"dtype": "int8"}))

"""The embedding side of the engine contract, over sentence-transformers and llama.cpp."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aimi.engines import build_engine
from aimi.engines.api import EmbeddingRequest, Engine, EngineConfig, EngineState, RequestFailed


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sentence-transformers", "llamacpp"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if request.param == "llamacpp":
        path: Path = request.getfixturevalue("default_model_path")
        config = EngineConfig(model_path=str(path), context_size=256, threads=2, options={"embedding": True})
    else:
        path = request.getfixturevalue("embeddings_model_path")
        config = EngineConfig(model_path=str(path), threads=2)
    built = build_engine(request.param, config)
    assert built.capabilities.embeddings and not built.capabilities.chat
    await built.start()
    assert built.health() is EngineState.READY
    yield built
    await built.close()


@pytest.mark.anyio
async def test_one_unit_vector_per_input_and_true_token_counts(engine: Engine) -> None:
    single = await engine.embed(EmbeddingRequest("a", texts=["hello world"]))
    both = await engine.embed(EmbeddingRequest("b", texts=["hello world", "a cat sat on the mat"]))
    assert len(both.vectors) == 2 and len(both.vectors[0]) == len(single.vectors[0])
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in both.vectors)
    assert both.vectors[0] == pytest.approx(single.vectors[0], abs=1e-5)
    assert both.prompt_tokens > single.prompt_tokens > 0


@pytest.mark.anyio
async def test_an_input_longer_than_the_model_is_a_client_error(engine: Engine) -> None:
    with pytest.raises(RequestFailed) as caught:
        await engine.embed(EmbeddingRequest("c", texts=["word " * 600]))
    assert caught.value.client_error


@pytest.mark.anyio
async def test_images_are_refused_by_text_models(engine: Engine) -> None:
    from aimi.engines.api import ImageInput

    with pytest.raises(RequestFailed) as caught:
        await engine.embed(EmbeddingRequest("d", images=[ImageInput(b"\x89PNG")]))
    assert caught.value.client_error

"""An engine pool in Serve's local testing mode (no cluster): events leave it in batches that add
up to the engine's own stream, and failures come as the stream's last item."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aimi.engines.api import EngineConfig, Finish, GenerationRequest, TextDelta, Usage
from aimi.engines.fake import DEFAULT_TEXT, FakeEngine
from aimi.scale.pool import MAX_BATCH, EnginePool, Failure, PoolMember

pytestmark = pytest.mark.ray


def _pool(tmp_path: Path, **options: Any) -> Any:
    from ray import serve

    member = PoolMember("chat", "fake", EngineConfig(model_path=str(tmp_path / "m.gguf"), options=options))
    return serve.run(serve.deployment(EnginePool).bind({"chat": member}), _local_testing_mode=True)


def _request() -> GenerationRequest:
    return GenerationRequest(request_id="r1", max_tokens=None, prompt="hi")


async def _items(handle: Any) -> list[Any]:
    return [item async for item in handle.options(stream=True).generate.remote(_request())]


async def _direct(**options: Any) -> list[Any]:
    engine = FakeEngine(EngineConfig(options=options))
    await engine.start()
    return [event async for event in engine.generate(_request())]


def test_batches_add_up_to_the_engine_stream(tmp_path: Path) -> None:
    text = " ".join(f"w{i}" for i in range(3 * MAX_BATCH))
    items = asyncio.run(_items(_pool(tmp_path, text=text)))
    events = [event for batch in items for event in batch]
    assert events == asyncio.run(_direct(text=text))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == text
    assert isinstance(events[-2], Finish) and isinstance(events[-1], Usage)
    assert all(1 <= len(batch) <= MAX_BATCH for batch in items)
    assert len(items) < len(events)  # batched, not one item an event


def test_the_fake_default_text_arrives_whole(tmp_path: Path) -> None:
    items = asyncio.run(_items(_pool(tmp_path)))
    assert "".join(e.text for batch in items for e in batch if isinstance(e, TextDelta)) == DEFAULT_TEXT


@pytest.mark.parametrize(
    ("options", "failure"),
    [
        ({"fail_after": 2}, Failure(False, "the fake engine failed as scripted")),
        ({"die_after": 2}, Failure(True, "the fake engine died as scripted")),
    ],
)
def test_a_failure_is_the_last_item(tmp_path: Path, options: dict[str, Any], failure: Failure) -> None:
    items = asyncio.run(_items(_pool(tmp_path, **options)))
    assert items[-1] == failure
    tokens = [e.text for batch in items[:-1] for e in batch if isinstance(e, TextDelta)]
    assert "".join(tokens) == "Hello from "

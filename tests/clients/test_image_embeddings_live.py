"""The real Azure ImageEmbeddingsClient against `aimi serve` with a CLIP model (a tiny one built
offline: no package ships CLIP weights)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.ai.inference import ImageEmbeddingsClient, load_client
from azure.ai.inference.models import ImageEmbeddingInput
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from tests.conftest import LiveServer, aimi_process
from tests.engines.test_clip import PROJECTION_DIM, clip_dir  # noqa: F401 - the fixture builds the model


@pytest.fixture(scope="module")
def clip_server(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path) -> Iterator[LiveServer]:  # noqa: F811
    with aimi_process(tmp_path_factory.mktemp("clip-home"), ["--model", str(clip_dir)],
                      env={"HF_HUB_OFFLINE": "1"}) as server:  # fmt: skip
        yield server


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format="PNG")
    path = tmp_path / "red.png"
    path.write_bytes(buffer.getvalue())
    return path


def test_info_and_load_client_pick_the_image_embeddings_client(clip_server: LiveServer, clip_dir: Path) -> None:  # noqa: F811
    client = ImageEmbeddingsClient(endpoint=f"{clip_server.url}/models", credential=AzureKeyCredential(clip_server.key))
    info = client.get_model_info()
    assert (info.model_name, info.model_type) == (clip_dir.name, "image_embeddings")
    assert isinstance(load_client(clip_server.url, AzureKeyCredential(clip_server.key)), ImageEmbeddingsClient)


def test_images_with_and_without_text_embed_to_unit_vectors(clip_server: LiveServer, png_file: Path) -> None:
    client = ImageEmbeddingsClient(endpoint=clip_server.url, credential=AzureKeyCredential(clip_server.key))
    result = client.embed(
        input=[
            ImageEmbeddingInput.load(image_file=str(png_file), image_format="png"),
            ImageEmbeddingInput.load(image_file=str(png_file), image_format="png", text="a red square"),
        ]
    )
    first, second = (item.embedding for item in result.data)
    assert isinstance(first, list) and isinstance(second, list)
    assert len(first) == len(second) == PROJECTION_DIM
    assert abs(sum(x * x for x in first) - 1) < 1e-4
    assert first != second
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


def test_a_remote_image_url_is_refused_not_fetched(clip_server: LiveServer) -> None:
    client = ImageEmbeddingsClient(endpoint=clip_server.url, credential=AzureKeyCredential(clip_server.key))
    with pytest.raises(HttpResponseError) as caught:
        client.embed(input=[ImageEmbeddingInput(image="http://127.0.0.1:9/cat.png")])
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "invalid_request"
    assert "never fetches remote images" in str(caught.value.error.message)


def test_chat_on_an_image_embeddings_deployment_is_404(clip_server: LiveServer) -> None:
    response = httpx.post(
        f"{clip_server.url}/chat/completions",
        headers={"api-key": clip_server.key},
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"

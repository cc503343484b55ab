"""Real clients against a live ``aimi serve --model all-minilm-l6-v2`` (sentence-transformers on the CPU).

The Azure SDK, the openai SDK, LangChain, raw HTTP and the Azure JS SDK; vectors and token counts
are checked against sentence-transformers itself, every encoding against the documented layouts
(``aimi.pipeline.embeddings``).
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from azure.ai.inference import ChatCompletionsClient, EmbeddingsClient, load_client
from azure.ai.inference.models import EmbeddingEncodingFormat
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from openai import OpenAI

from tests.api.helpers import assert_error
from tests.clients.helpers import azure_response, azure_user
from tests.clients.test_js_sdk import DEPENDENCIES, JS_DIR, last_json_line, run_node
from tests.conftest import LiveServer

pytestmark = pytest.mark.model

DIMS = 384
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog.", "naïve café, 東京 🙂"]
FORMATS = ["float", "base64", "int8", "uint8", "binary", "ubinary"]
LONG = "word " * 300  # 300 words: 302 tokens with [CLS] and [SEP]
HELLO_IDS = [101, 7592, 2088, 102]  # [CLS] hello world [SEP]


@pytest.fixture(scope="module")
def reference(embeddings_model_path: Path) -> Any:
    """The same model, loaded by sentence-transformers in this process."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embeddings_model_path), device="cpu", local_files_only=True)


@pytest.fixture
def http(live_embeddings_server: LiveServer) -> Iterator[httpx.Client]:
    headers = {"api-key": live_embeddings_server.key}
    with httpx.Client(base_url=live_embeddings_server.url, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture
def azure(live_embeddings_server: LiveServer) -> EmbeddingsClient:
    return EmbeddingsClient(
        endpoint=f"{live_embeddings_server.url}/models",
        credential=AzureKeyCredential(live_embeddings_server.key),
        retry_total=0,
    )


@pytest.fixture
def openai_client(live_embeddings_server: LiveServer) -> Iterator[tuple[OpenAI, list[dict[str, Any]]]]:
    """An OpenAI client and the JSON bodies it sent."""
    sent: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> None:
        sent.append(json.loads(request.content))

    with httpx.Client(event_hooks={"request": [record]}) as transport:
        client = OpenAI(
            base_url=f"{live_embeddings_server.url}/v1",
            api_key=live_embeddings_server.key,
            max_retries=0,
            # openai takes a legacy httpx.Client too (it checks for either), but annotates only httpx2's.
            http_client=transport,  # type: ignore[arg-type]
        )
        yield client, sent


def floats(http: httpx.Client, texts: list[str], path: str = "/embeddings") -> list[list[float]]:
    response = http.post(path, json={"input": texts})
    assert response.status_code == 200, response.text
    return [item["embedding"] for item in response.json()["data"]]


def true_tokens(reference: Any, texts: list[str]) -> int:
    return sum(len(ids) for ids in reference.tokenizer(texts, add_special_tokens=True)["input_ids"])


def assert_close(actual: Any, expected: Any, tolerance: float) -> None:
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    worst = float(np.max(np.abs(a - e)))
    assert worst <= tolerance, f"largest difference {worst} > {tolerance}"


def assert_encodes(fmt: str, encoded: Any, vector: list[float]) -> None:
    """``encoded`` is ``vector`` in ``fmt``, by the layouts documented in aimi.pipeline.embeddings."""
    assert len(vector) == DIMS
    if fmt == "float":
        assert encoded == vector
    elif fmt == "base64":
        assert isinstance(encoded, str)
        raw = base64.b64decode(encoded, validate=True)
        assert len(raw) == 4 * DIMS
        # Exactly the float vector as float32 (the engine computes in float32: no rounding at all).
        assert list(struct.unpack(f"<{DIMS}f", raw)) == [float(np.float32(x)) for x in vector]
        assert np.array_equal(np.frombuffer(raw, dtype="<f4"), np.asarray(vector, dtype=np.float32))
    elif fmt == "int8":
        assert encoded == [int(np.clip(round(x * 127), -127, 127)) for x in vector]
    elif fmt == "uint8":
        assert encoded == [int(np.clip(round((x + 1) * 127.5), 0, 255)) for x in vector]
    else:
        bits = np.packbits(np.asarray(vector) > 0, bitorder="big").tolist()  # first dimension = top bit
        assert len(bits) == DIMS // 8
        assert encoded == (bits if fmt == "ubinary" else [b - 128 for b in bits])
    if fmt != "base64":
        assert all(type(x) is (float if fmt == "float" else int) for x in encoded), fmt


# --- Azure SDK ---------------------------------------------------------------------------------


def test_get_model_info(azure: EmbeddingsClient) -> None:
    info = azure.get_model_info()
    assert info.as_dict() == {
        "model_name": "all-MiniLM-L6-v2",
        "model_type": "embeddings",
        "model_provider_name": "sentence-transformers",
    }


def test_load_client_returns_an_embeddings_client(live_embeddings_server: LiveServer) -> None:
    loaded = load_client(live_embeddings_server.url, AzureKeyCredential(live_embeddings_server.key))
    assert isinstance(loaded, EmbeddingsClient)


def test_azure_embed_matches_sentence_transformers(azure: EmbeddingsClient, reference: Any) -> None:
    result = azure.embed(input=TEXTS)
    assert result.model == "all-MiniLM-L6-v2"
    assert [item.index for item in result.data] == [0, 1, 2]
    vectors = [item.embedding for item in result.data]
    for vector in vectors:
        assert isinstance(vector, list) and len(vector) == DIMS
        assert math.isclose(math.sqrt(math.fsum(x * x for x in vector)), 1.0, abs_tol=1e-5)
    assert_close(vectors, reference.encode(TEXTS), 1e-5)
    tokens = true_tokens(reference, TEXTS)
    assert tokens > len(TEXTS) * 2  # [CLS] and [SEP] at least
    assert result.usage.prompt_tokens == tokens
    assert result.usage.total_tokens == tokens


def test_usage_counts_every_token_of_every_input(http: httpx.Client, reference: Any) -> None:
    for texts in (["a"], ["hello world"], ["hello world", "hello world"], [LONG[:200]]):
        usage = http.post("/embeddings", json={"input": texts}).json()["usage"]
        assert usage == {"prompt_tokens": true_tokens(reference, texts), "total_tokens": true_tokens(reference, texts)}
    assert http.post("/embeddings", json={"input": ["hello world"]}).json()["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize("fmt", FORMATS)
def test_azure_sdk_every_encoding_format(azure: EmbeddingsClient, http: httpx.Client, fmt: str) -> None:
    expected = floats(http, TEXTS)
    result = azure.embed(input=TEXTS, encoding_format=EmbeddingEncodingFormat(fmt))
    assert len(result.data) == len(TEXTS)
    for item, vector in zip(result.data, expected, strict=True):
        assert_encodes(fmt, item.embedding, vector)


@pytest.mark.parametrize("path", ["/embeddings", "/models/embeddings", "/v1/embeddings"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_raw_http_every_encoding_format(http: httpx.Client, fmt: str, path: str) -> None:
    expected = floats(http, TEXTS)
    response = http.post(path, json={"input": TEXTS, "encoding_format": fmt})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == ("all-minilm-l6-v2" if path.startswith("/v1") else "all-MiniLM-L6-v2")
    for item, vector in zip(body["data"], expected, strict=True):
        assert_encodes(fmt, item["embedding"], vector)


def test_semantic_sanity(http: httpx.Client) -> None:
    triples = [
        ("A man is playing a guitar.", "Someone is strumming a guitar.", "The stock market fell sharply today."),
        ("How do I reset my password?", "I forgot my password; how can I change it?", "Add two eggs to the flour."),
        ("The cat sat on the mat.", "A kitten is lying on a rug.", "Quantum computers use qubits."),
        ("It is raining heavily outside.", "There is a lot of rain today.", "She bought a new laptop."),
    ]
    for anchor, paraphrase, unrelated in triples:
        a, p, u = (np.asarray(v) for v in floats(http, [anchor, paraphrase, unrelated]))
        assert float(a @ p) > float(a @ u) + 0.2, (anchor, float(a @ p), float(a @ u))


# --- openai SDK and LangChain ------------------------------------------------------------------


def test_openai_default_is_base64_decoded_whole(
    openai_client: tuple[OpenAI, list[dict[str, Any]]], http: httpx.Client, reference: Any
) -> None:
    client, sent = openai_client
    result = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS)
    assert sent[-1]["encoding_format"] == "base64"  # what the SDK asks for on the wire
    assert result.model == "all-minilm-l6-v2"
    vectors = [item.embedding for item in result.data]
    assert [len(v) for v in vectors] == [DIMS] * len(TEXTS)
    expected = floats(http, TEXTS, "/v1/embeddings")
    assert vectors == [[float(np.float32(x)) for x in v] for v in expected]  # float32 is all there is
    assert result.usage.prompt_tokens == result.usage.total_tokens == true_tokens(reference, TEXTS)


def test_openai_float_format(
    openai_client: tuple[OpenAI, list[dict[str, Any]]], http: httpx.Client, reference: Any
) -> None:
    client, sent = openai_client
    result = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS, encoding_format="float")
    assert sent[-1]["encoding_format"] == "float"
    vectors = [item.embedding for item in result.data]
    assert vectors == floats(http, TEXTS, "/v1/embeddings")
    assert_close(vectors, reference.encode(TEXTS), 1e-5)


def test_openai_single_string(openai_client: tuple[OpenAI, list[dict[str, Any]]], http: httpx.Client) -> None:
    client, _ = openai_client
    result = client.embeddings.create(model="all-minilm-l6-v2", input="hello world", encoding_format="float")
    assert [item.index for item in result.data] == [0]
    assert result.data[0].embedding == floats(http, ["hello world"])[0]
    assert result.usage.prompt_tokens == 4


def test_openai_token_arrays(openai_client: tuple[OpenAI, list[dict[str, Any]]], http: httpx.Client) -> None:
    client, _ = openai_client
    hello = floats(http, ["hello world"])[0]
    nested = client.embeddings.create(model="all-minilm-l6-v2", input=[HELLO_IDS], encoding_format="float")
    assert len(nested.data) == 1
    assert_close(nested.data[0].embedding, hello, 1e-6)
    assert nested.usage.prompt_tokens == 4
    flat = client.embeddings.create(model="all-minilm-l6-v2", input=HELLO_IDS, encoding_format="float")
    assert len(flat.data) == 1
    assert_close(flat.data[0].embedding, hello, 1e-6)


def test_token_ids_outside_the_vocabulary_are_a_400(http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"input": [[101, 30522, 102]]})
    body = assert_error(response, 400, "invalid_request")
    assert body["error"]["message"] == "input 0 holds a token id outside this model's vocabulary (0-30521)"


def test_langchain_openai_embeddings(live_embeddings_server: LiveServer, reference: Any) -> None:
    from langchain_openai import OpenAIEmbeddings

    # The pydantic mypy plugin reads only field names where a model also takes aliases (base_url, api_key).
    embedder = OpenAIEmbeddings(  # type: ignore[call-arg]
        base_url=f"{live_embeddings_server.url}/v1",
        api_key=live_embeddings_server.key,
        model="all-minilm-l6-v2",
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    documents = embedder.embed_documents(TEXTS)
    assert [len(v) for v in documents] == [DIMS] * len(TEXTS)
    assert_close(documents, reference.encode(TEXTS), 1e-5)
    query = embedder.embed_query("hello world")
    assert len(query) == DIMS
    assert_close(query, documents[0], 1e-6)


# --- what this model cannot do ----------------------------------------------------------------


def assert_unsupported(response: httpx.Response, loc: str, value: Any, msg: str) -> None:
    body = assert_error(response, 422, "parameter_not_supported", param=loc, message=msg)
    assert body["detail"] == [{"loc": ["body", loc], "input": value, "msg": msg, "type": "parameter_not_supported"}]


@pytest.mark.parametrize("path", ["/embeddings", "/v1/embeddings"])
def test_dimensions_is_422(http: httpx.Client, path: str) -> None:
    response = http.post(path, json={"input": ["hello world"], "dimensions": 128})
    assert_unsupported(response, "dimensions", 128, "deployment 'all-minilm-l6-v2' cannot shorten its embeddings")


def test_dimensions_is_422_through_the_azure_sdk(azure: EmbeddingsClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        azure.embed(input=["hello world"], dimensions=128)
    assert caught.value.status_code == 422
    assert caught.value.error is not None and caught.value.error.code == "parameter_not_supported"
    assert azure_response(caught.value).json()["detail"][0]["loc"] == ["body", "dimensions"]


@pytest.mark.parametrize("input_type", ["query", "document"])
@pytest.mark.parametrize("path", ["/embeddings", "/v1/embeddings"])
def test_query_and_document_input_types_are_422(http: httpx.Client, path: str, input_type: str) -> None:
    response = http.post(path, json={"input": ["hello world"], "input_type": input_type})
    assert_unsupported(
        response, "input_type", input_type, f"deployment 'all-minilm-l6-v2' has no '{input_type}' input type"
    )


def test_text_input_type_is_the_plain_vector(http: httpx.Client, azure: EmbeddingsClient) -> None:
    plain = floats(http, TEXTS)
    response = http.post("/embeddings", json={"input": TEXTS, "input_type": "text"})
    assert response.status_code == 200, response.text
    assert [item["embedding"] for item in response.json()["data"]] == plain
    assert [item.embedding for item in azure.embed(input=TEXTS, input_type="text").data] == plain


def test_token_arrays_on_the_azure_route_are_a_400(http: httpx.Client) -> None:
    for body in ({"input": [HELLO_IDS]}, {"input": HELLO_IDS}):
        assert_error(http.post("/embeddings", json=body), 400, "invalid_request", param="input")


# --- inputs longer than the model --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/embeddings", "/v1/embeddings"])
def test_an_input_longer_than_256_tokens_is_a_400(http: httpx.Client, reference: Any, path: str) -> None:
    length = true_tokens(reference, [LONG])
    assert length == 302
    response = http.post(path, json={"input": ["hello world", LONG]})
    body = assert_error(response, 400, "context_length_exceeded", param="input")
    message = body["error"]["message"]
    assert "input 1" in message, message
    assert f"{length} tokens" in message, message
    assert f"at most {MAX_TOKENS}" in message, message


def test_truncate_on_the_openai_route(http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"input": [LONG], "truncate": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["usage"] == {"prompt_tokens": MAX_TOKENS, "total_tokens": MAX_TOKENS}
    assert len(body["data"][0]["embedding"]) == DIMS
    both = http.post("/v1/embeddings", json={"input": ["hello world", LONG], "truncate": True}).json()
    assert both["usage"]["prompt_tokens"] == 4 + MAX_TOKENS
    # Short inputs are untouched (batched with a longer one: padding moves the last float32 bits only).
    assert_close(both["data"][0]["embedding"], floats(http, ["hello world"])[0], 1e-6)


def test_truncate_cuts_as_sentence_transformers_does(http: httpx.Client, reference: Any) -> None:
    # sentence-transformers keeps [SEP] last when it cuts an input to max_seq_length: the vector
    # of a truncated input is the one `SentenceTransformer.encode` gives for the same text.
    kept = reference.tokenizer([LONG], truncation=True, max_length=MAX_TOKENS)["input_ids"][0]
    assert len(kept) == MAX_TOKENS and kept[-1] == 102
    response = http.post("/v1/embeddings", json={"input": [LONG], "truncate": True})
    assert response.status_code == 200, response.text
    assert_close(response.json()["data"][0]["embedding"], reference.encode([LONG])[0], 1e-5)


def test_truncate_on_the_azure_route_needs_pass_through(http: httpx.Client, azure: EmbeddingsClient) -> None:
    assert_error(
        http.post("/embeddings", json={"input": [LONG], "truncate": True}),
        400,
        "extra_parameters_not_allowed",
        param="truncate",
    )
    response = http.post(
        "/embeddings", json={"input": [LONG], "truncate": True}, headers={"extra-parameters": "pass-through"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == MAX_TOKENS
    result = azure.embed(input=[LONG], model_extras={"truncate": True})  # the SDK sends the header
    assert result.usage.prompt_tokens == MAX_TOKENS
    assert result.data[0].embedding == response.json()["data"][0]["embedding"]


# --- routes the deployment does not serve -------------------------------------------------------


def assert_not_found(response: httpx.Response) -> None:
    body = assert_error(response, 404, "NotFound")
    assert "not found" in body["error"]["message"], body


@pytest.mark.parametrize("path", ["/chat/completions", "/models/chat/completions", "/v1/chat/completions"])
def test_chat_on_the_embeddings_server_is_404(http: httpx.Client, path: str) -> None:
    response = http.post(path, json={"messages": [{"role": "user", "content": "hi"}]})
    assert_not_found(response)
    assert response.json()["error"]["message"] == (
        "chat completions not found on deployment 'all-minilm-l6-v2', which serves embeddings"
    )


def test_chat_sdk_on_the_embeddings_server_raises_not_found(live_embeddings_server: LiveServer) -> None:
    client = ChatCompletionsClient(
        endpoint=f"{live_embeddings_server.url}/models",
        credential=AzureKeyCredential(live_embeddings_server.key),
        retry_total=0,
    )
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=azure_user("hi"))
    assert isinstance(caught.value, ResourceNotFoundError)
    assert caught.value.status_code == 404
    assert caught.value.error is not None and caught.value.error.code == "NotFound"


@pytest.mark.parametrize("path", ["/embeddings", "/models/embeddings", "/v1/embeddings"])
def test_embeddings_on_the_chat_server_is_404(live_server: LiveServer, path: str) -> None:
    response = httpx.post(
        f"{live_server.url}{path}", json={"input": ["hello world"]}, headers={"api-key": live_server.key}, timeout=60
    )
    assert_not_found(response)
    assert response.json()["error"]["message"] == (
        "embeddings not found on deployment 'smollm2-135m-instruct', which serves chat-completions"
    )


def test_embeddings_sdk_on_the_chat_server_raises_not_found(live_server: LiveServer) -> None:
    client = EmbeddingsClient(
        endpoint=f"{live_server.url}/models", credential=AzureKeyCredential(live_server.key), retry_total=0
    )
    with pytest.raises(HttpResponseError) as caught:
        client.embed(input=["hello world"])
    assert isinstance(caught.value, ResourceNotFoundError)
    assert caught.value.status_code == 404
    assert caught.value.error is not None and caught.value.error.code == "NotFound"


# --- the Azure JS SDK --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def js_dir() -> Path:
    """tests/clients/js with its locked node_modules installed (``npm ci`` once, if missing)."""
    if not all((JS_DIR / "node_modules" / name / "package.json").is_file() for name in DEPENDENCIES):
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return JS_DIR


@pytest.mark.node
@pytest.mark.timeout(900)  # `npm ci` on a fresh checkout
@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="the JS SDK tests need Node.js (node) and npm on PATH",
)
def test_js_sdk_embeddings(js_dir: Path, live_embeddings_server: LiveServer, http: httpx.Client) -> None:
    result = run_node(js_dir, "embeddings.mjs", f"{live_embeddings_server.url}/models", live_embeddings_server.key)
    out = last_json_line(result)
    assert out["info"] == {
        "model_name": "all-MiniLM-L6-v2",
        "model_type": "embeddings",
        "model_provider_name": "sentence-transformers",
    }
    assert out["model"] == "all-MiniLM-L6-v2"
    texts = out["input"]
    assert len(texts) == 2 and texts[1] == "naïve café, 東京"  # the text crossed intact
    assert [item["index"] for item in out["data"]] == [0, 1]
    vectors = [item["embedding"] for item in out["data"]]
    assert [len(v) for v in vectors] == [DIMS, DIMS]
    assert_close(vectors, floats(http, texts), 1e-6)
    tokens = http.post("/embeddings", json={"input": texts}).json()["usage"]["prompt_tokens"]
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

"""Embeddings on the fake engine: profile flags (dimensions, input_type), images, limits, schema."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimi.deployments.profile import ModelProfile
from aimi.deployments.sources import ResolvedModel
from tests.api.helpers import CHAT, assert_error
from tests.conftest import InProcessServer, in_process

PREFIXES = {"query": "query: ", "document": "passage: "}
TEXT_MODEL = ResolvedModel(
    Path("/nonexistent/fake-embed"),
    "fake-embed",
    "Fake-Embed",
    ModelProfile(model_type="embeddings", provider="aimi", dimensions=True, input_prefixes=PREFIXES),
)
# No flags at all: the model type follows from the engine (see create_app).
PLAIN_MODEL = ResolvedModel(Path("/nonexistent/fake-plain"), "fake-plain", "Fake-Plain", ModelProfile(provider="aimi"))
DIMS = 16
MAX_INPUTS = 4
MAX_CHARS = 40
MAX_IMAGE = 2048
# The eight bytes that open every PNG file, then filler: the fake engine hashes whatever it gets.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
AZURE_PATHS = ["/embeddings", "/models/embeddings", "/api/models/embeddings"]


def data_url(raw: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    settings = {
        "engine_options": {"kind": "embeddings", "dimensions": DIMS},
        "max_embedding_inputs": MAX_INPUTS,
        "max_embedding_chars": MAX_CHARS,
    }
    with in_process(settings, model=TEXT_MODEL) as running:
        yield running


@pytest.fixture(scope="module")
def plain_server() -> Iterator[InProcessServer]:
    with in_process({"engine_options": {"kind": "embeddings"}}, model=PLAIN_MODEL) as running:
        yield running


@pytest.fixture(scope="module")
def image_server() -> Iterator[InProcessServer]:
    settings = {"engine_options": {"kind": "image_embeddings"}, "max_image_bytes": MAX_IMAGE}
    with in_process(settings, model=PLAIN_MODEL) as running:
        yield running


@pytest.fixture
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.client() as authed:
        yield authed


def vectors(response: httpx.Response) -> list[Any]:
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [item["index"] for item in data] == list(range(len(data)))
    return [item["embedding"] for item in data]


def norm(vector: list[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in vector))


# --- the response ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", AZURE_PATHS)
def test_azure_response_shape_and_usage(http: httpx.Client, path: str) -> None:
    response = http.post(path, json={"input": ["one two three", "four"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "object", "model", "data", "usage"}
    assert body["object"] == "list"
    assert body["model"] == "Fake-Embed"  # Azure answers with the display name
    assert isinstance(body["id"], str) and body["id"]
    assert [(d["index"], d["object"]) for d in body["data"]] == [(0, "embedding"), (1, "embedding")]
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}  # the fake engine counts words
    for vector in vectors(response):
        assert len(vector) == DIMS
        assert math.isclose(norm(vector), 1.0, rel_tol=1e-9)


def test_openai_response_names_the_deployment(http: httpx.Client) -> None:
    body = http.post("/v1/embeddings", json={"input": "one two", "model": "fake-embed"}).json()
    assert body["model"] == "fake-embed"
    assert len(body["data"]) == 1
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_the_same_text_gives_the_same_vector(http: httpx.Client) -> None:
    first = vectors(http.post("/embeddings", json={"input": ["alpha", "beta", "alpha"]}))
    assert first[0] == first[2]
    assert first[0] != first[1]
    assert vectors(http.post("/v1/embeddings", json={"input": "alpha"})) == [first[0]]


def test_info_of_text_and_plain_servers(http: httpx.Client, plain_server: InProcessServer) -> None:
    assert http.get("/info").json() == {
        "model_name": "Fake-Embed",
        "model_type": "embeddings",
        "model_provider_name": "aimi",
    }
    with plain_server.client() as plain:
        assert plain.get("/info").json() == {
            "model_name": "Fake-Plain",
            "model_type": "embeddings",
            "model_provider_name": "aimi",
        }


# --- dimensions ------------------------------------------------------------------------------


def test_dimensions_shortens_to_the_renormalised_head(http: httpx.Client) -> None:
    texts = ["red", "green", "blue"]
    full = vectors(http.post("/embeddings", json={"input": texts}))
    short = vectors(http.post("/embeddings", json={"input": texts, "dimensions": 4}))
    assert len(short) == 3
    for whole, head in zip(full, short, strict=True):
        assert len(whole) == DIMS
        assert len(head) == 4
        assert math.isclose(norm(head), 1.0, rel_tol=1e-12)
        scale = norm(whole[:4])
        assert head == pytest.approx([x / scale for x in whole[:4]], rel=1e-12, abs=1e-15)


def test_dimensions_on_the_openai_route_too(http: httpx.Client) -> None:
    full = vectors(http.post("/v1/embeddings", json={"input": "red"}))[0]
    head = vectors(http.post("/v1/embeddings", json={"input": "red", "dimensions": 1}))[0]
    assert head == [math.copysign(1.0, full[0])]


def test_dimensions_equal_to_the_model_keeps_the_vector(http: httpx.Client) -> None:
    full = vectors(http.post("/embeddings", json={"input": ["red"]}))
    same = vectors(http.post("/embeddings", json={"input": ["red"], "dimensions": DIMS}))
    assert same[0] == pytest.approx(full[0], rel=1e-12, abs=1e-15)


def test_dimensions_past_the_model_is_a_400(http: httpx.Client) -> None:
    response = http.post("/embeddings", json={"input": ["red"], "dimensions": DIMS + 1})
    assert_error(
        response,
        400,
        "invalid_request",
        param="dimensions",
        message=f"`dimensions` must be at most {DIMS} for this model; got {DIMS + 1}",
    )


@pytest.mark.parametrize("value", [0, -3, "four", 2.5])
def test_dimensions_must_be_a_positive_integer(http: httpx.Client, value: Any) -> None:
    assert_error(
        http.post("/embeddings", json={"input": ["red"], "dimensions": value}),
        400,
        "invalid_request",
        param="dimensions",
    )


def test_dimensions_then_encoding(http: httpx.Client) -> None:
    head = vectors(http.post("/embeddings", json={"input": ["red"], "dimensions": 4}))[0]
    ints = vectors(http.post("/embeddings", json={"input": ["red"], "dimensions": 4, "encoding_format": "int8"}))[0]
    assert ints == [max(-127, min(127, round(x * 127))) for x in head]
    bits = vectors(http.post("/embeddings", json={"input": ["red"], "dimensions": 4, "encoding_format": "ubinary"}))
    assert bits == [[sum(0x80 >> i for i, x in enumerate(head) if x > 0)]]


# --- input_type ------------------------------------------------------------------------------


@pytest.mark.parametrize("input_type, prefix", [("query", "query: "), ("document", "passage: ")])
def test_input_type_puts_the_profile_prefix_before_each_text(
    server: InProcessServer, http: httpx.Client, input_type: str, prefix: str
) -> None:
    typed = vectors(http.post("/embeddings", json={"input": ["what is aimi", "x"], "input_type": input_type}))
    assert server.engine.embedded[-1].texts == [prefix + "what is aimi", prefix + "x"]
    # The vector is the one of the prefixed text.
    plain = vectors(http.post("/embeddings", json={"input": [prefix + "what is aimi", prefix + "x"]}))
    assert server.engine.embedded[-1].texts == [prefix + "what is aimi", prefix + "x"]
    assert typed == plain
    assert typed != vectors(http.post("/embeddings", json={"input": ["what is aimi", "x"]}))


def test_input_type_on_the_openai_route_and_a_single_string(server: InProcessServer, http: httpx.Client) -> None:
    vectors(http.post("/v1/embeddings", json={"input": "hello", "input_type": "query"}))
    assert server.engine.embedded[-1].texts == ["query: hello"]


@pytest.mark.parametrize("body_extra", [{"input_type": "text"}, {}])
def test_text_input_type_and_none_add_no_prefix(
    server: InProcessServer, http: httpx.Client, body_extra: dict[str, Any]
) -> None:
    vectors(http.post("/embeddings", json={"input": ["hello"], **body_extra}))
    assert server.engine.embedded[-1].texts == ["hello"]


def test_unknown_input_type_is_a_400(http: httpx.Client) -> None:
    assert_error(
        http.post("/embeddings", json={"input": ["a"], "input_type": "passage"}),
        400,
        "invalid_request",
        param="input_type",
    )


def test_input_type_with_token_arrays_is_422(server: InProcessServer, http: httpx.Client) -> None:
    count = len(server.engine.embedded)
    response = http.post("/v1/embeddings", json={"input": [[1, 2, 3]], "input_type": "query"})
    body = assert_error(response, 422, "parameter_not_supported", param="input_type")
    assert body["detail"] == [
        {
            "loc": ["body", "input_type"],
            "input": "query",
            "msg": "input_type needs text inputs, not token arrays",
            "type": "parameter_not_supported",
        }
    ]
    assert len(server.engine.embedded) == count  # the engine never saw it


def test_profile_without_flags_refuses_dimensions_and_prefixes(plain_server: InProcessServer) -> None:
    with plain_server.client() as plain:
        body = assert_error(
            plain.post("/embeddings", json={"input": ["a"], "dimensions": 4, "input_type": "query"}),
            422,
            "parameter_not_supported",
            param="dimensions",
        )
        assert [(d["loc"], d["input"]) for d in body["detail"]] == [
            (["body", "dimensions"], 4),
            (["body", "input_type"], "query"),
        ]
        assert body["detail"][0]["msg"] == "deployment 'fake-plain' cannot shorten its embeddings"
        assert body["detail"][1]["msg"] == "deployment 'fake-plain' has no 'query' input type"
        assert vectors(plain.post("/embeddings", json={"input": ["a"], "input_type": "text"}))
        assert plain_server.engine.embedded[-1].texts == ["a"]


# --- token arrays (/v1 only) -------------------------------------------------------------------


def test_token_arrays_reach_the_engine_as_ids(server: InProcessServer, http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"input": [[5, 6, 7], [8]]})
    assert len(vectors(response)) == 2
    assert server.engine.embedded[-1].token_ids == [[5, 6, 7], [8]]
    assert server.engine.embedded[-1].texts is None
    assert response.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    vectors(http.post("/v1/embeddings", json={"input": [5, 6, 7]}))  # one flat array is one input
    assert server.engine.embedded[-1].token_ids == [[5, 6, 7]]


def test_token_arrays_on_the_azure_route_are_a_schema_400(server: InProcessServer, http: httpx.Client) -> None:
    count = len(server.engine.embedded)
    assert_error(http.post("/embeddings", json={"input": [[5, 6, 7]]}), 400, "invalid_request", param="input")
    assert_error(http.post("/embeddings", json={"input": [5, 6, 7]}), 400, "invalid_request", param="input")
    assert len(server.engine.embedded) == count


def test_a_token_array_longer_than_the_limit_is_a_400(http: httpx.Client) -> None:
    assert vectors(http.post("/v1/embeddings", json={"input": [[1] * MAX_CHARS]}))
    response = http.post("/v1/embeddings", json={"input": [[1], [1] * (MAX_CHARS + 1)]})
    assert_error(
        response,
        400,
        "invalid_request",
        message=f"a token array holds {MAX_CHARS + 1} tokens; the limit is {MAX_CHARS}",
    )


# --- limits ---------------------------------------------------------------------------------


def test_at_most_max_embedding_inputs(server: InProcessServer, http: httpx.Client) -> None:
    assert len(vectors(http.post("/embeddings", json={"input": ["a"] * MAX_INPUTS}))) == MAX_INPUTS
    count = len(server.engine.embedded)
    for path in ("/embeddings", "/v1/embeddings"):
        response = http.post(path, json={"input": ["a"] * (MAX_INPUTS + 1)})
        assert_error(
            response,
            400,
            "invalid_request",
            param="input",
            message=f"`input` may hold at most {MAX_INPUTS} items; got {MAX_INPUTS + 1}",
        )
    assert len(server.engine.embedded) == count


def test_at_most_max_embedding_chars_per_input(http: httpx.Client) -> None:
    assert vectors(http.post("/embeddings", json={"input": ["ok", "x" * MAX_CHARS]}))
    response = http.post("/embeddings", json={"input": ["ok", "x" * (MAX_CHARS + 1)]})
    assert_error(
        response,
        400,
        "invalid_request",
        param="input.1",
        message=f"`input.1` is {MAX_CHARS + 1} characters long; the limit is {MAX_CHARS}",
    )
    response = http.post("/v1/embeddings", json={"input": "é" * (MAX_CHARS + 1)})  # characters, not bytes
    assert_error(
        response,
        400,
        "invalid_request",
        param="input",
        message=f"`input` is {MAX_CHARS + 1} characters long; the limit is {MAX_CHARS}",
    )


def test_an_empty_input_is_a_400(http: httpx.Client) -> None:
    assert_error(
        http.post("/embeddings", json={"input": ["ok", ""]}),
        400,
        "invalid_request",
        param="input.1",
        message="`input.1` is empty; every input needs text",
    )
    assert_error(
        http.post("/v1/embeddings", json={"input": ""}),
        400,
        "invalid_request",
        param="input",
        message="`input` is empty; every input needs text",
    )


@pytest.mark.parametrize("path", ["/embeddings", "/v1/embeddings"])
def test_an_empty_input_list_is_a_400(http: httpx.Client, path: str) -> None:
    assert_error(http.post(path, json={"input": []}), 400, "invalid_request", param="input")


def test_a_missing_input_is_a_400(http: httpx.Client) -> None:
    assert_error(http.post("/embeddings", json={"encoding_format": "float"}), 400, "invalid_request", param="input")


@pytest.mark.parametrize("path", ["/embeddings", "/v1/embeddings"])
@pytest.mark.parametrize("fmt", ["float16", "FLOAT", "bits", ""])
def test_an_unknown_encoding_format_is_a_400(http: httpx.Client, path: str, fmt: str) -> None:
    response = http.post(path, json={"input": ["a"], "encoding_format": fmt})
    body = assert_error(response, 400, "invalid_request", param="encoding_format")
    assert "'float', 'base64', 'int8', 'uint8', 'binary' or 'ubinary'" in body["error"]["message"]


@pytest.mark.parametrize("fmt", ["float", "base64", "int8", "uint8", "binary", "ubinary"])
def test_every_encoding_format_is_accepted(http: httpx.Client, fmt: str) -> None:
    (encoded,) = vectors(http.post("/embeddings", json={"input": ["red"], "encoding_format": fmt}))
    length = {"base64": None, "binary": DIMS // 8, "ubinary": DIMS // 8}.get(fmt, DIMS)
    if length is None:
        assert isinstance(encoded, str) and len(base64.b64decode(encoded)) == 4 * DIMS
    else:
        assert len(encoded) == length


# --- extra parameters ------------------------------------------------------------------------


NOT_ALLOWED = (
    "Extra parameters ['foo'] are not allowed when extra-parameters is not set or set to be "
    "'error'. Set extra-parameters to 'pass-through' to pass to the model."
)


@pytest.mark.parametrize("path", AZURE_PATHS)
def test_unknown_extra_on_azure_without_header_is_a_400(server: InProcessServer, http: httpx.Client, path: str) -> None:
    count = len(server.engine.embedded)
    response = http.post(path, json={"input": ["a"], "foo": 1})
    assert_error(response, 400, "extra_parameters_not_allowed", param="foo", message=NOT_ALLOWED)
    assert response.json()["detail"] == NOT_ALLOWED
    assert len(server.engine.embedded) == count


def test_unknown_extra_with_drop_is_ignored(http: httpx.Client) -> None:
    response = http.post("/embeddings", json={"input": ["a"], "foo": 1}, headers={"extra-parameters": "drop"})
    assert len(vectors(response)) == 1


@pytest.mark.parametrize(
    "path, headers",
    [("/embeddings", {"extra-parameters": "pass-through"}), ("/v1/embeddings", {})],
)
def test_unknown_extra_passed_through_is_a_422(http: httpx.Client, path: str, headers: dict[str, str]) -> None:
    body = assert_error(
        http.post(path, json={"input": ["a"], "foo": 1}, headers=headers), 422, "parameter_not_supported", param="foo"
    )
    assert body["detail"] == [
        {
            "loc": ["body", "foo"],
            "input": 1,
            "msg": "extra parameter 'foo' is not supported by this deployment's engine",
            "type": "parameter_not_supported",
        }
    ]


def test_truncate_reaches_the_engine(server: InProcessServer, http: httpx.Client) -> None:
    vectors(http.post("/v1/embeddings", json={"input": ["a"], "truncate": True}))
    assert server.engine.embedded[-1].truncate is True
    vectors(http.post("/embeddings", json={"input": ["a"], "truncate": True}, headers={"extra-parameters": "allow"}))
    assert server.engine.embedded[-1].truncate is True
    vectors(http.post("/embeddings", json={"input": ["a"]}))
    assert server.engine.embedded[-1].truncate is False


def test_truncate_must_be_a_boolean(http: httpx.Client) -> None:
    assert_error(
        http.post("/v1/embeddings", json={"input": ["a"], "truncate": "yes"}),
        400,
        "invalid_request",
        param="truncate",
        message="`truncate` must be a boolean; got 'yes'",
    )


# --- routes the deployment does not serve -------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, what",
    [
        ("/chat/completions", CHAT, "chat completions"),
        ("/v1/chat/completions", CHAT, "chat completions"),
        ("/completions", {"prompt": "hi"}, "text completions"),
        ("/images/embeddings", {"input": [{"image": data_url(PNG)}]}, "image embeddings"),
    ],
)
def test_a_kind_the_text_model_does_not_serve_is_a_404(http: httpx.Client, path: str, body: Any, what: str) -> None:
    response = http.post(path, json=body)
    assert_error(
        response,
        404,
        "NotFound",
        param=None,
        message=f"{what} not found on deployment 'fake-embed', which serves embeddings",
    )


# --- images ---------------------------------------------------------------------------------


@pytest.fixture
def images(image_server: InProcessServer) -> Iterator[httpx.Client]:
    with image_server.client() as authed:
        yield authed


def test_image_server_info(images: httpx.Client) -> None:
    assert images.get("/info").json() == {
        "model_name": "Fake-Plain",
        "model_type": "image_embeddings",
        "model_provider_name": "aimi",
    }


def test_data_url_images_reach_the_engine_as_bytes(image_server: InProcessServer, images: httpx.Client) -> None:
    jpeg = b"\xff\xd8\xff\xe0 not really a jpeg"
    body = {"input": [{"image": data_url(PNG)}, {"image": data_url(jpeg, "image/jpeg"), "text": "a cat"}]}
    response = images.post("/images/embeddings", json=body)
    embedded = vectors(response)
    assert len(embedded) == 2 and all(len(v) == 8 for v in embedded)
    assert embedded[0] != embedded[1]
    request = image_server.engine.embedded[-1]
    assert request.texts is None and request.token_ids is None
    assert [(i.image, i.text) for i in request.images] == [(PNG, None), (jpeg, "a cat")]
    assert response.json()["model"] == "Fake-Plain"


@pytest.mark.parametrize("prefix", ["/models", "/api/models"])
def test_image_embeddings_under_every_azure_prefix(
    image_server: InProcessServer, images: httpx.Client, prefix: str
) -> None:
    vectors(images.post(f"{prefix}/images/embeddings", json={"input": [{"image": data_url(PNG)}]}))
    assert image_server.engine.embedded[-1].images[0].image == PNG


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://127.0.0.1/cat.png", "file:///etc/passwd"])
def test_a_remote_image_url_is_a_400(image_server: InProcessServer, images: httpx.Client, url: str) -> None:
    count = len(image_server.engine.embedded)
    body = {"input": [{"image": data_url(PNG)}, {"image": url}]}
    response = images.post("/images/embeddings", json=body)
    message = assert_error(response, 400, "invalid_request", param="input.1.image")["error"]["message"]
    assert "`input.1.image`" in message
    assert "data:image/<format>;base64," in message
    assert "never fetches remote images" in message
    response = images.post("/images/embeddings", json={"input": [{"image": url}]})
    assert assert_error(response, 400, "invalid_request", param="input.0.image")["error"]["message"].startswith(
        "`input.0.image` must be a data:"
    )
    assert len(image_server.engine.embedded) == count


@pytest.mark.parametrize("payload", ["@@@not-base64@@@", "iVBORw0KGgo", "iVBO Rw0K"])
def test_invalid_base64_is_a_400(images: httpx.Client, payload: str) -> None:
    response = images.post("/images/embeddings", json={"input": [{"image": "data:image/png;base64," + payload}]})
    assert_error(response, 400, "invalid_request", param="input.0.image", message="`input.0.image` is not valid base64")


def test_an_image_at_the_limit_is_accepted(image_server: InProcessServer, images: httpx.Client) -> None:
    raw = bytes(i % 251 for i in range(MAX_IMAGE))
    vectors(images.post("/images/embeddings", json={"input": [{"image": data_url(raw)}]}))
    assert image_server.engine.embedded[-1].images[0].image == raw


@pytest.mark.parametrize("size", [MAX_IMAGE + 1, MAX_IMAGE + 2, MAX_IMAGE + 3, MAX_IMAGE + 4, 2 * MAX_IMAGE])
def test_an_image_over_max_image_bytes_is_a_400(image_server: InProcessServer, images: httpx.Client, size: int) -> None:
    count = len(image_server.engine.embedded)
    raw = bytes(i % 251 for i in range(size))
    response = images.post("/images/embeddings", json={"input": [{"image": data_url(raw)}]})
    assert_error(
        response,
        400,
        "invalid_request",
        param="input.0.image",
        message=f"`input.0.image` is larger than the image limit of {MAX_IMAGE} bytes",
    )
    assert len(image_server.engine.embedded) == count


def test_an_image_request_needs_an_image(images: httpx.Client) -> None:
    assert_error(images.post("/images/embeddings", json={"input": []}), 400, "invalid_request", param="input")
    assert_error(
        images.post("/images/embeddings", json={"input": [{"text": "no image"}]}),
        400,
        "invalid_request",
        param="input.0.image",
    )


def test_image_server_embeds_text_too(image_server: InProcessServer, images: httpx.Client) -> None:
    assert len(vectors(images.post("/embeddings", json={"input": ["a photo of a cat"]}))) == 1
    assert image_server.engine.embedded[-1].texts == ["a photo of a cat"]


def test_image_encoding_format_applies(images: httpx.Client) -> None:
    body: dict[str, Any] = {"input": [{"image": data_url(PNG)}]}
    (whole,) = vectors(images.post("/images/embeddings", json=body))
    (bits,) = vectors(images.post("/images/embeddings", json={**body, "encoding_format": "binary"}))
    assert bits == [sum(0x80 >> i for i, x in enumerate(whole) if x > 0) - 128]

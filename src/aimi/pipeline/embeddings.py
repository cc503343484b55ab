"""Embedding requests: inputs, ``input_type``, ``dimensions`` and the six encodings.

Byte layouts of ``encoding_format`` (vectors are L2-normalised, components in [-1, 1]):

``float``    JSON numbers
``base64``   base64 of the vector as little-endian IEEE-754 float32 (OpenAI's layout): it
             decodes to exactly the ``float`` vector, rounded to float32
``int8``     ``round(x * 127)``, clipped to [-127, 127]
``uint8``    ``round((x + 1) * 127.5)``, clipped to [0, 255]
``ubinary``  one bit per dimension, 1 where ``x > 0``, packed 8 dimensions a byte, first dimension
             in the most significant bit; ``ceil(dims / 8)`` integers in [0, 255]
``binary``   the ``ubinary`` bytes minus 128, as signed integers in [-128, 127] (Cohere's layout)
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from aimi.deployments.registry import Deployment
from aimi.engines.api import EmbeddingRequest, ImageInput
from aimi.pipeline import extra_parameters
from aimi.pipeline.canonical import valid_unicode
from aimi.pipeline.extra_parameters import Policy
from aimi.protocol.embeddings import AzureEmbeddingsRequest, AzureImageEmbeddingsRequest
from aimi.protocol.errors import ApiError, invalid_request, parameter_not_supported
from aimi.protocol.ids import new_id

GATEWAY_PARAMETERS = frozenset({"truncate"})
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)


@dataclass
class EmbeddingWork:
    """A canonical embedding request and what the gateway does to its vectors."""

    request: EmbeddingRequest
    encoding_format: str = "float"
    dimensions: int | None = None


def _truncate(extras: dict[str, Any]) -> bool:
    value = extras.get("truncate", False)
    if not isinstance(value, bool):
        raise invalid_request(f"`truncate` must be a boolean; got {value!r}", param="truncate")
    return value


def _common(
    body: AzureEmbeddingsRequest | AzureImageEmbeddingsRequest, policy: Policy, deployment: Deployment
) -> tuple[bool, list[tuple[tuple[str | int, ...], Any, str]], str]:
    gateway, _ = extra_parameters.apply(
        dict(body.model_extra or {}), policy, deployment.engine.capabilities, GATEWAY_PARAMETERS
    )
    problems: list[tuple[tuple[str | int, ...], Any, str]] = []
    if body.dimensions is not None and not deployment.profile.dimensions:
        problems.append(
            (("dimensions",), body.dimensions, f"deployment '{deployment.name}' cannot shorten its embeddings")
        )
    prefix = ""
    if body.input_type not in (None, "text"):
        prefixes = deployment.profile.input_prefixes
        if body.input_type not in prefixes:
            problems.append(
                (
                    ("input_type",),
                    body.input_type,
                    f"deployment '{deployment.name}' has no '{body.input_type}' input type",
                )
            )
        prefix = prefixes.get(str(body.input_type), "")
    elif body.input_type == "text":
        prefix = deployment.profile.input_prefixes.get("text", "")
    return _truncate(gateway), problems, prefix


def text_request(body: AzureEmbeddingsRequest, policy: Policy, deployment: Deployment) -> EmbeddingWork:
    """The work for ``/embeddings`` and ``/v1/embeddings``."""
    limits = deployment.limits
    truncate, problems, prefix = _common(body, policy, deployment)
    raw = body.input
    inputs: list[Any] = [raw] if isinstance(raw, str) else list(raw)
    if inputs and isinstance(inputs[0], int):
        inputs = [inputs]  # one token array
    if len(inputs) > limits.max_embedding_inputs:
        raise invalid_request(
            f"`input` may hold at most {limits.max_embedding_inputs} items; got {len(inputs)}", param="input"
        )
    texts: list[str] | None = None
    tokens: list[list[int]] | None = None
    if isinstance(inputs[0], str):
        texts = []
        for i, text in enumerate(inputs):
            where = "input" if isinstance(raw, str) else f"input.{i}"
            if not text:
                raise invalid_request(f"`{where}` is empty; every input needs text", param=where)
            if len(text) > limits.max_embedding_chars:
                raise invalid_request(
                    f"`{where}` is {len(text)} characters long; the limit is {limits.max_embedding_chars}", param=where
                )
            texts.append(prefix + valid_unicode(text, where))
    else:
        tokens = [list(t) for t in inputs]
        if prefix:
            problems.append((("input_type",), body.input_type, "input_type needs text inputs, not token arrays"))
        if not deployment.engine.capabilities.token_inputs:
            problems.append((("input",), "tokens", f"deployment '{deployment.name}' takes text, not token arrays"))
        longest = max(len(t) for t in tokens)
        if longest > limits.max_embedding_chars:
            raise invalid_request(f"a token array holds {longest} tokens; the limit is {limits.max_embedding_chars}")
    if problems:
        raise parameter_not_supported(problems)
    request = EmbeddingRequest(new_id(), texts=texts, token_ids=tokens, truncate=truncate)
    return EmbeddingWork(request, body.encoding_format or "float", body.dimensions)


def decode_image(url: str, where: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URL, refusing anything else and anything too large."""
    match = _DATA_URL.match(url)
    if match is None:
        shown = url[:40] + ("..." if len(url) > 40 else "")
        raise invalid_request(
            f"`{where}` must be a data:image/<format>;base64,... URL (aimi never fetches remote images); got {shown!r}",
            param=where,
        )
    encoded = url[match.end() :]
    if len(encoded) * 3 // 4 > max_bytes + 3:
        raise invalid_request(f"`{where}` is larger than the image limit of {max_bytes} bytes", param=where)
    try:
        image = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"`{where}` is not valid base64", param=where) from None
    if len(image) > max_bytes:
        raise invalid_request(f"`{where}` is larger than the image limit of {max_bytes} bytes", param=where)
    return image


def image_request(body: AzureImageEmbeddingsRequest, policy: Policy, deployment: Deployment) -> EmbeddingWork:
    """The work for ``/images/embeddings``."""
    limits = deployment.limits
    truncate, problems, prefix = _common(body, policy, deployment)
    if len(body.input) > limits.max_embedding_inputs:
        raise invalid_request(
            f"`input` may hold at most {limits.max_embedding_inputs} items; got {len(body.input)}", param="input"
        )
    if problems:
        raise parameter_not_supported(problems)
    images = [
        ImageInput(
            decode_image(item.image, f"input.{i}.image", limits.max_image_bytes),
            None if item.text is None else prefix + valid_unicode(item.text, f"input.{i}.text"),
        )
        for i, item in enumerate(body.input)
    ]
    request = EmbeddingRequest(new_id(), images=images, truncate=truncate)
    return EmbeddingWork(request, body.encoding_format or "float", body.dimensions)


def shorten(vector: list[float], dimensions: int, model_dimensions: int) -> list[float]:
    """The first ``dimensions`` components, renormalised to unit length."""
    if dimensions > model_dimensions:
        raise ApiError(
            "invalid_request",
            f"`dimensions` must be at most {model_dimensions} for this model; got {dimensions}",
            param="dimensions",
        )
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head)) or 1.0
    return [x / norm for x in head]


def _bits(vector: list[float]) -> list[int]:
    packed = []
    for start in range(0, len(vector), 8):
        byte = 0
        for offset, x in enumerate(vector[start : start + 8]):
            if x > 0:
                byte |= 0x80 >> offset
        packed.append(byte)
    return packed


def encode(vector: list[float], encoding_format: str) -> list[float] | list[int] | str:
    """One vector in ``encoding_format`` (layouts in this module's docstring)."""
    if encoding_format == "float":
        return vector
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    if encoding_format == "int8":
        return [max(-127, min(127, round(x * 127))) for x in vector]
    if encoding_format == "uint8":
        return [max(0, min(255, round((x + 1) * 127.5))) for x in vector]
    if encoding_format == "ubinary":
        return _bits(vector)
    if encoding_format == "binary":
        return [b - 128 for b in _bits(vector)]
    raise ValueError(f"unknown encoding {encoding_format!r}")


def finish(work: EmbeddingWork, vectors: list[list[float]]) -> list[list[float] | list[int] | str]:
    """The vectors as the request asked for them."""
    if work.dimensions is not None:
        vectors = [shorten(v, work.dimensions, len(v)) for v in vectors]
    return [encode(v, work.encoding_format) for v in vectors]

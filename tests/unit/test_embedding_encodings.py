"""aimi.pipeline.embeddings: the six encodings' byte layouts and shortening, on hand-made vectors."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from aimi.engines.api import EmbeddingRequest
from aimi.pipeline.embeddings import EmbeddingWork, encode, finish, shorten
from aimi.protocol.errors import ApiError

# Ten dimensions: the bit formats need two bytes, the second one only partly filled.
VECTOR = [0.2, -0.3, 0.0, 1.0, -1.0, 0.9, 0.1, -0.1, 0.6, -0.6]


def test_float_is_the_vector_itself() -> None:
    assert encode(VECTOR, "float") == VECTOR


def test_base64_is_little_endian_float32() -> None:
    # 1.0 = 0x3f800000, -1.0 = 0xbf800000, 0.5 = 0x3f000000, 0.0 = 0: each little-endian.
    assert encode([1.0, -1.0, 0.5, 0.0], "base64") == "AACAPwAAgL8AAAA/AAAAAA=="
    raw = base64.b64decode("AACAPwAAgL8AAAA/AAAAAA==")
    assert raw == bytes.fromhex("0000803f 000080bf 0000003f 00000000")


def test_base64_decodes_to_the_vector_rounded_to_float32() -> None:
    encoded = encode([0.1, -0.25, 0.0, 0.75], "base64")
    assert encoded == "zczMPQAAgL4AAAAAAABAPw=="
    decoded = struct.unpack("<4f", base64.b64decode(encoded))
    # 0.1 is not a float32: it comes back as the nearest one (0x3dcccccd); the others are exact.
    assert decoded == (0.10000000149011612, -0.25, 0.0, 0.75)


def test_base64_of_every_dimension() -> None:
    encoded = encode(VECTOR, "base64")
    assert isinstance(encoded, str)
    assert len(base64.b64decode(encoded)) == 4 * len(VECTOR)


def test_int8_is_x_times_127_rounded() -> None:
    # 25.4, -38.1, 0, 127, -127, 114.3, 12.7, -12.7, 76.2, -76.2
    assert encode(VECTOR, "int8") == [25, -38, 0, 127, -127, 114, 13, -13, 76, -76]


def test_uint8_is_x_plus_1_times_127_5_rounded() -> None:
    # 153, 89.25, 127.5, 255, 0, 242.25, 140.25, 114.75, 204, 51
    assert encode(VECTOR, "uint8") == [153, 89, 128, 255, 0, 242, 140, 115, 204, 51]


def test_int8_and_uint8_clip_out_of_range_components() -> None:
    assert encode([1.5, -1.5, 1.0000001, -3.0], "int8") == [127, -127, 127, -127]
    assert encode([1.5, -1.5, 1.0000001, -3.0], "uint8") == [255, 0, 255, 0]


def test_ubinary_packs_positive_bits_first_dimension_most_significant() -> None:
    # bits 1 0 0 1 0 1 1 0 | 1 0 (then zero padding): 0b10010110, 0b10000000
    assert encode(VECTOR, "ubinary") == [0b10010110, 0b10000000]
    assert encode(VECTOR, "ubinary") == [150, 128]


def test_binary_is_ubinary_minus_128() -> None:
    assert encode(VECTOR, "binary") == [22, 0]


def test_bit_formats_take_ceil_dims_over_8_bytes() -> None:
    assert encode([1.0] * 8, "ubinary") == [255]
    assert encode([1.0] * 8, "binary") == [127]
    assert encode([-1.0] * 8, "ubinary") == [0]
    assert encode([-1.0] * 8, "binary") == [-128]
    assert encode([1.0] * 9, "ubinary") == [255, 128]
    assert encode([0.5], "ubinary") == [128]
    assert encode([0.0] * 3, "ubinary") == [0]  # zero is not positive
    assert len(encode([0.1] * 384, "ubinary")) == 48


def test_an_unknown_encoding_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown encoding 'bfloat16'"):
        encode(VECTOR, "bfloat16")


def test_shorten_keeps_the_head_renormalised() -> None:
    assert shorten([3.0, 4.0, 12.0], 2, 3) == [0.6, 0.8]
    assert shorten([0.6, 0.8, 0.0], 1, 3) == [1.0]
    head = shorten(VECTOR, 4, 10)
    norm = math.sqrt(0.2 * 0.2 + 0.3 * 0.3 + 0.0 + 1.0)
    assert head == [0.2 / norm, -0.3 / norm, 0.0, 1.0 / norm]
    assert math.isclose(math.fsum(x * x for x in head), 1.0, rel_tol=1e-12)


def test_shorten_to_every_dimension_renormalises_the_whole_vector() -> None:
    assert shorten([3.0, 4.0], 2, 2) == [0.6, 0.8]


def test_shorten_an_all_zero_head_stays_zero() -> None:
    assert shorten([0.0, 0.0, 1.0], 2, 3) == [0.0, 0.0]


def test_shorten_past_the_model_dimensions_is_a_400_on_dimensions() -> None:
    with pytest.raises(ApiError) as caught:
        shorten([0.6, 0.8], 3, 2)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_request"
    assert caught.value.param == "dimensions"
    assert caught.value.message == "`dimensions` must be at most 2 for this model; got 3"


def test_finish_shortens_then_encodes() -> None:
    work = EmbeddingWork(EmbeddingRequest("r", texts=["a", "b"]), encoding_format="int8", dimensions=2)
    assert finish(work, [[3.0, 4.0, 12.0], [-0.6, 0.8, 0.0]]) == [[76, 102], [-76, 102]]


def test_finish_without_dimensions_encodes_every_vector_whole() -> None:
    work = EmbeddingWork(EmbeddingRequest("r", texts=["a"]), encoding_format="ubinary")
    assert finish(work, [VECTOR]) == [[150, 128]]
    assert finish(EmbeddingWork(EmbeddingRequest("r", texts=["a"])), [VECTOR]) == [VECTOR]

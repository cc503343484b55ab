"""The JSON bytes aimi sends: compact and pure ASCII.

Non-ASCII is escaped (``\\uXXXX``), so no multi-byte character can be split between two reads of
a stream, and a value quoted back to the client (a lone surrogate included) can never make a body
unencodable. orjson writes the common, ASCII-only case; anything else falls back to the standard
library, which escapes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def ascii_json(value: Any) -> bytes:
    try:
        data = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an integer past 64 bits
        data = b"\x80"
    if data.isascii():
        return data
    return json.dumps(value, separators=(",", ":")).encode("ascii")

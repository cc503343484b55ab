"""Server-sent events exactly as the Azure Python SDK parses them.

LF line endings only, ``data: `` with its space, one JSON object per line, no comments, no
``event:``/``id:``/``retry:`` lines, and ``data: [DONE]`` at the end.
"""

from __future__ import annotations

from typing import Any

from aimi.protocol.jsonbytes import ascii_json

DONE = b"data: [DONE]\n\n"


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + ascii_json(payload) + b"\n\n"

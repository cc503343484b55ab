"""Server-sent events exactly as the Azure Python SDK parses them.

LF line endings only, ``data: `` with its space, one JSON object per line, no comments, no
``event:``/``id:``/``retry:`` lines, and ``data: [DONE]`` at the end.
"""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def frame(payload: dict[str, Any]) -> bytes:
    # ensure_ascii keeps every event pure ASCII: no multi-byte character can be split.
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

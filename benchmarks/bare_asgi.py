"""A minimal Starlette app under uvicorn: the reference point for aimi's own overhead.

It answers ``POST /v1/chat/completions`` with the same bytes aimi sends on its fake engine (one
JSON body, or the same SSE chunks, one ASGI send each), but does nothing else: no validation, no
auth, no engine, no middleware. Served like aimi serves: one uvicorn process, default loop and
HTTP implementation, no access log.

    python benchmarks/bare_asgi.py --port 8082
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TEXT = "Hello from the fake engine: naïve café, 東京, 🙂 and nothing more."
TOKENS = [
    "Hello ",
    "from ",
    "the ",
    "fake ",
    "engine: ",
    "naïve ",
    "café, ",
    "東京, ",
    "🙂 ",
    "and ",
    "nothing ",
    "more.",
]
USAGE = {"prompt_tokens": 4, "completion_tokens": len(TOKENS), "total_tokens": 4 + len(TOKENS)}
ID = "chatcmpl-" + "0" * 32
MODEL = "bare-asgi"


def _envelope(obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": ID, "object": obj, "created": int(time.time()), "model": MODEL, "choices": choices}


def _frame(body: dict[str, Any] | str) -> bytes:
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _whole() -> dict[str, Any]:
    message = {"role": "assistant", "content": TEXT, "tool_calls": None}
    body = _envelope("chat.completion", [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}])
    body["usage"] = USAGE
    return body


def _frames() -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        body = _envelope(
            "chat.completion.chunk", [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        )
        body["usage"] = None
        return _frame(body)

    frames = [chunk({"role": "assistant", "content": ""}, None)]
    frames += [chunk({"content": token}, None) for token in TOKENS]
    frames.append(chunk({"content": ""}, "stop"))
    usage = _envelope("chat.completion.chunk", [])
    usage["usage"] = USAGE
    frames += [_frame(usage), _frame("[DONE]")]
    return frames


FRAMES = _frames()


async def chat_completions(request: Request) -> Response:
    """The fixed answer, whole or streamed, after reading the JSON body."""
    body = await request.json()
    if body.get("stream"):

        async def frames() -> AsyncIterator[bytes]:
            for frame in FRAMES:
                yield frame

        return StreamingResponse(frames(), media_type="text/event-stream")
    return JSONResponse(_whole())


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

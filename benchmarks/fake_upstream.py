"""A canned OpenAI-compatible server, fast enough not to be the bottleneck of bench_gateway.py.

A raw asyncio ``Protocol`` speaking just enough HTTP/1.1 (keep-alive, pipelining,
``Content-Length`` bodies) on uvloop when it is installed. Every answer is built once at start:

- ``POST /v1/chat/completions``: one fixed answer of ``CHUNKS`` content pieces, as one JSON
  object, or with ``"stream": true`` as SSE (``Transfer-Encoding: chunked``, one HTTP chunk per
  event): the role chunk, the content chunks, the ``finish_reason`` chunk, the usage chunk when
  ``stream_options.include_usage`` is set, then ``data: [DONE]``. The request's other fields are
  ignored (the answer does not depend on them).
- ``GET /v1/models``: one model, ``MODEL``; ``GET /health``: 200.

Anything else is a 404, a body that is not a JSON object a 400. It checks no key.

    .venv/bin/python benchmarks/fake_upstream.py --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any, cast

MODEL = "fake-model"
CHUNKS = 12
PIECES = [f"word{i} " for i in range(CHUNKS)]
PROMPT_TOKENS = 12
CREATED = 1_700_000_000
ANSWER_ID = "chatcmpl-fake"
MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


def _usage() -> dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": CHUNKS, "total_tokens": PROMPT_TOKENS + CHUNKS}


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    return head + body


def _json(status: str, payload: Any) -> bytes:
    return _response(status, json.dumps(payload, separators=(",", ":")).encode())


def whole_answer() -> bytes:
    return _json(
        "200 OK",
        {
            "id": ANSWER_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(PIECES)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(),
        },
    )


def _chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": ANSWER_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def stream_answer(include_usage: bool) -> bytes:
    """The SSE answer, each event its own HTTP chunk, ready to write in one go."""
    events: list[dict[str, Any]] = [_chunk({"role": "assistant", "content": ""}, None)]
    events += [_chunk({"content": piece}, None) for piece in PIECES]
    events.append(_chunk({}, "stop"))
    if include_usage:
        events.append(
            {
                "id": ANSWER_ID,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "choices": [],
                "usage": _usage(),
            }
        )
    frames = [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events]
    frames.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(frame), frame) for frame in frames) + b"0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    return head + body


WHOLE = whole_answer()
STREAM = stream_answer(include_usage=False)
STREAM_USAGE = stream_answer(include_usage=True)
MODELS = _json(
    "200 OK", {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}]}
)
HEALTH = _json("200 OK", {"status": "ok"})
NOT_FOUND = _json("404 Not Found", {"error": {"message": "not found", "type": "invalid_request_error"}})
BAD_BODY = _json(
    "400 Bad Request", {"error": {"message": "the body is not a JSON object", "type": "invalid_request_error"}}
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def chat_answer(body: bytes) -> bytes:
    try:
        request = json.loads(body)
    except ValueError:
        return BAD_BODY
    if not isinstance(request, dict):
        return BAD_BODY
    if request.get("stream") is not True:
        return WHOLE
    options = request.get("stream_options")
    return STREAM_USAGE if isinstance(options, dict) and options.get("include_usage") is True else STREAM


class Http(asyncio.Protocol):
    """One connection: requests parsed from the buffer as they complete, answered in order."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        close = False
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                close = len(self.buffer) > MAX_HEAD
                break
            lines = self.buffer[:end].split(b"\r\n")
            parts = lines[0].split(b" ")
            length = 0
            keep_alive = True
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        length = -1
                elif name == b"connection" and value.strip().lower() == b"close":
                    keep_alive = False
                elif name == b"transfer-encoding":
                    length = -1  # chunked request bodies: not needed here
            if len(parts) != 3 or not 0 <= length <= MAX_BODY:
                out.append(BAD_REQUEST)
                close = True
                break
            if len(self.buffer) < end + 4 + length:
                break
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, target = parts[0], parts[1].split(b"?", 1)[0]
            if method == b"POST" and target == b"/v1/chat/completions":
                out.append(chat_answer(body))
            elif method == b"GET" and target == b"/v1/models":
                out.append(MODELS)
            elif method == b"GET" and target == b"/health":
                out.append(HEALTH)
            else:
                out.append(NOT_FOUND)
            if not keep_alive:
                close = True
                break
        assert self.transport is not None
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if close:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, host, port, backlog=1024)
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    print(f"fake upstream on http://{host}:{port}/v1", flush=True)
    async with server:
        await stopped.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

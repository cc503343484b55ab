"""``aimi chat``: a small terminal client that streams answers from a running aimi."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from aimi.auth.keys import read_key
from aimi.settings import Settings


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("chat", help="chat with a running aimi from the terminal")
    parser.add_argument(
        "--url",
        default=os.environ.get("AIMI_URL", "http://127.0.0.1:8000"),
        help="aimi's address (default http://127.0.0.1:8000, or AIMI_URL)",
    )
    parser.add_argument("--api-key", help="key to use (default: AIMI_API_KEY, then the local generated key)")
    parser.add_argument("--system", help="a system message to start the conversation with")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float)
    parser.add_argument(
        "-m", "--message", action="append", help="send this message instead of reading the terminal (repeatable)"
    )
    parser.set_defaults(run=run)


def _key(args: argparse.Namespace) -> str | None:
    if args.api_key:
        return str(args.api_key)
    env = os.environ.get("AIMI_API_KEY")
    if env:
        return env.split(",")[0].strip()
    return read_key(Settings().home)


def stream_reply(client: httpx.Client, messages: list[dict[str, str]], args: argparse.Namespace) -> str:
    """Send the conversation, print the answer as it streams, return it."""
    body: dict[str, Any] = {"messages": messages, "stream": True, "max_tokens": args.max_tokens}
    if args.temperature is not None:
        body["temperature"] = args.temperature
    parts: list[str] = []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise RuntimeError(f"{response.status_code}: {message}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"].get("message", "the stream failed"))
            for choice in chunk.get("choices", ()):
                text = choice.get("delta", {}).get("content") or ""
                parts.append(text)
                print(text, end="", flush=True)
    print()
    return "".join(parts)


def run(args: argparse.Namespace) -> int:
    key = _key(args)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    scripted = list(args.message or [])
    interactive = not scripted
    with httpx.Client(base_url=args.url, headers=headers, timeout=httpx.Timeout(10, read=600)) as client:
        while True:
            if scripted:
                text = scripted.pop(0)
            elif interactive:
                try:
                    text = input("you> ")
                except (EOFError, KeyboardInterrupt):
                    print()
                    return 0
            else:
                return 0
            if not text.strip():
                continue
            messages.append({"role": "user", "content": text})
            try:
                answer = stream_reply(client, messages, args)
            except (RuntimeError, httpx.HTTPError) as exc:
                print(f"aimi chat: {exc}", file=sys.stderr)
                return 1
            messages.append({"role": "assistant", "content": answer})

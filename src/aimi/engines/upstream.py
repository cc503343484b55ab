"""A deployment served by another server: anything speaking the OpenAI API (vLLM, SGLang, TGI,
llama-server, Ollama, another aimi), reached over HTTP through one pooled ``aiohttp`` session.

Options (``EngineConfig.options``); an unknown option is a ``ValueError``, so a typo cannot pass
silently:

``url``              the upstream's base URL, ``/v1`` included (``http://127.0.0.1:8080/v1``); required
``model``            the model name sent upstream; default: the first one the upstream's
                     ``/models`` lists (none listed: the field is left out)
``api_key``          sent as ``Authorization: Bearer``; never logged, never in an error message
``connect_timeout``  seconds to open a connection (default 5)
``read_timeout``     the longest silence, in seconds, between two reads of an answer (default 300)
``max_connections``  the pool's size (default 64); also the deployment's ``n_slots``
``context_length``   the model's context for :class:`ModelFacts` (default: the ``max_model_len``
                     vLLM lists in ``/models``, else 4096)
``kind``             ``chat`` (default: chat and text completions) or ``embeddings``
``capabilities``     which optional features the upstream really has, as ``{flag: bool}`` for
                     ``structured_output``, ``logprobs``, ``logit_bias``, ``stop_token_ids`` and
                     ``token_inputs``; all false by default, since a server that ignores an unknown
                     field would silently not honour it
``start_timeout``    how long ``start()`` keeps trying to reach the upstream (default 0: one try)

``start()`` asks ``GET {url}/models``. An upstream that cannot be reached (or answers 5xx) until
``start_timeout`` has passed, or that refuses the key (401/403), is an :class:`EngineDead`: the
deployment reports itself unhealthy instead of failing every request. After that the engine stays
READY whatever the upstream does: a restart or a network hiccup fails the requests it touches
(:class:`RequestFailed`), not the engine.

A client that streams is streamed to from the upstream (``stream_options.include_usage``); a
client that asked for the whole answer gets it from the upstream whole, in one read, which costs
the upstream and aimi less. Either way, closing the iterator, or aborting the request, closes the
upstream connection and the upstream stops too.
Errors map as follows:

* HTTP 400, 413, 422 and other 4xx blamed on the request: ``RequestFailed(client_error=True)``,
  code ``context_length_exceeded`` when the upstream says the input is too long for the context,
  else ``invalid_request``, with the upstream's own message (truncated).
* HTTP 401/403 (the deployment's key), 404 (its model name or a missing route), 408, 429 and 5xx:
  ``RequestFailed(client_error=False)``: not the client's fault, so not a 4xx for the client.
* Connection refused, a timeout, a connection broken mid-answer, a redirect, an ``{"error": ...}``
  frame in the stream (unless it carries a 4xx ``code``, as llama-server's do: then as above), a
  stream that ends before the answer does: ``RequestFailed(client_error=False)``.

``EngineConfig.slots``, ``context_size``, ``threads`` and ``model_path`` mean nothing here: the
upstream decides them (see ``max_connections`` and ``context_length``).

Usage is the upstream's own ``usage``. An upstream that sends none gets ``prompt_tokens`` 0 and
``completion_tokens`` = the number of chunks that carried text (one token per chunk, which holds
for vLLM and llama-server, but is an approximation).

``extra_parameters``: ``top_k``, ``min_p``, ``repetition_penalty`` and ``ignore_eos`` are passed
through as they are; ``repetition_penalty`` also as ``repeat_penalty``, llama-server's name for it.
Reasoning text (``reasoning_content``) is not forwarded. The request body and the reading of
its chunks are :mod:`aimi.engines.openai_wire`'s, shared with the llama.cpp engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import Field, field_validator, model_validator

from aimi.engines.api import (
    EmbeddingRequest,
    Embeddings,
    EngineCapabilities,
    EngineConfig,
    EngineDead,
    EngineState,
    Event,
    Finish,
    GenerationRequest,
    ModelFacts,
    RequestFailed,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from aimi.engines.openai_wire import Dialect, chunk_events, request_payload
from aimi.engines.options import EngineOptions, OptionError

log = logging.getLogger(__name__)

_FLAGS = ("structured_output", "logprobs", "logit_bias", "stop_token_ids", "token_inputs")
_EXTRAS: dict[str, type | tuple[type, ...]] = {
    "top_k": int,
    "min_p": (int, float),
    "repetition_penalty": (int, float),
    "ignore_eos": bool,
}
_JSON = {"Content-Type": "application/json"}
_LINE_END = re.compile(rb"\r\n|\r|\n")
# llama-server knows repetition_penalty as repeat_penalty: both names are sent.
_DIALECT = Dialect(extra_names={"repetition_penalty": ("repetition_penalty", "repeat_penalty")})
# Upstream statuses that are not the client's fault: the deployment's key, its model name or a
# route the upstream lacks, and the upstream being busy.
_NOT_CLIENT_ERRORS = frozenset({401, 403, 404, 407, 408, 429})
_MAX_MESSAGE = 500
_MAX_ERROR_BODY = 64 * 1024
_MAX_ANSWER = 64 * 1024 * 1024
_START_PROBE_TIMEOUT = 10.0
_START_RETRY_DELAY = 0.5
# uvicorn (vLLM, SGLang, aimi) and cpp-httplib (llama-server) drop idle connections after 5 s:
# reusing one just as it is dropped fails the request, so idle connections are let go sooner.
_KEEPALIVE_EXPIRY = 3.0


_Seconds = Annotated[float, Field(strict=True, gt=0)]
_Count = Annotated[int, Field(strict=True, gt=0)]


class UpstreamOptions(EngineOptions):
    """The upstream engine's options (see the module's docstring). A deployments file names the
    upstream's key by its environment variable, ``api_key_env``, never writes it as ``api_key``."""

    engine_name: ClassVar[str] = "upstream"
    needs_model: ClassVar[bool] = False

    url: str
    model: Annotated[str, Field(strict=True)] | None = None
    api_key: Annotated[str, Field(strict=True)] | None = Field(None, repr=False)
    connect_timeout: _Seconds = 5.0
    read_timeout: _Seconds = 300.0
    max_connections: _Count = 64
    context_length: _Count | None = None
    kind: Literal["chat", "embeddings"] = "chat"
    capabilities: dict[str, Annotated[bool, Field(strict=True)]] | None = None
    start_timeout: Annotated[float, Field(strict=True, ge=0)] = 0.0

    @model_validator(mode="before")
    @classmethod
    def _known_and_url(cls, options: Any) -> Any:
        if isinstance(options, dict):
            unknown = sorted(set(options) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"unknown upstream option(s) {unknown}; known: {', '.join(sorted(cls.model_fields))}")
            url = options.get("url")
            if not isinstance(url, str) or not url:
                raise ValueError("the upstream engine needs a 'url' option, e.g. http://127.0.0.1:8080/v1")
        return options

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the upstream url must be an http:// or https:// URL, not {_shown(url)!r}")
        return url.rstrip("/")

    @field_validator("capabilities")
    @classmethod
    def _known_flags(cls, flags: dict[str, bool] | None) -> dict[str, bool] | None:
        if flags and set(flags) - set(_FLAGS):
            raise ValueError(f"upstream option 'capabilities' must map some of {', '.join(_FLAGS)} to true or false")
        return flags

    @classmethod
    def check_file(cls, options: Mapping[str, Any]) -> None:
        if "api_key" in options:
            raise ValueError("put the upstream's key in the environment and name it with api_key_env, not api_key")

    @classmethod
    def from_file(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        given = dict(options)
        key_env = given.pop("api_key_env", None)
        if key_env is not None:
            if key_env not in os.environ:
                raise OptionError("api_key_env", f"the environment has no {key_env}")
            given["api_key"] = os.environ[key_env]
        return given


def _shown(url: str) -> str:
    """The URL as it may appear in logs and messages: no user or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _level(exc: RequestFailed) -> int:
    """Requests the upstream refused as invalid are the client's business; the rest are ours."""
    return logging.INFO if exc.client_error else logging.WARNING


def _is_context_error(error: dict[str, Any], message: str) -> bool:
    tags = f"{error.get('code', '')} {error.get('type', '')}".lower()
    text = message.lower()
    return (
        "context_length" in tags
        or "exceed_context" in tags
        or "context length" in text
        or "context size" in text
        or "context window" in text
        or ("maximum context" in text)
    )


def _error_parts(body: Any) -> tuple[dict[str, Any], str]:
    """The error object and its message, from the shapes servers use: OpenAI's (and aimi's,
    llama-server's) ``{"error": {...}}``, vLLM's older flat ``{"object": "error", "message"}``,
    TGI's ``{"error": "..."}``, FastAPI's ``{"detail": ...}``."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error, str(error.get("message") or json.dumps(error))
        if isinstance(error, str):
            return body, error
        if isinstance(body.get("message"), str):
            return body, body["message"]
        if "detail" in body:
            return body, str(body["detail"])
        return body, json.dumps(body)
    return {}, str(body)


@dataclass
class _Progress:
    """One streamed request, as the engine tracks it."""

    response: aiohttp.ClientResponse | None = None
    aborted: bool = False
    done: bool = False
    finished: set[int] = field(default_factory=set)
    text_chunks: int = 0
    usage: Usage | None = None


class UpstreamEngine:
    """Generations and embeddings served by an OpenAI-compatible server over HTTP."""

    capabilities = EngineCapabilities(chat=True, completions=True, extra_parameters=dict(_EXTRAS))
    Options = UpstreamOptions

    def __init__(self, config: EngineConfig) -> None:
        options = UpstreamOptions.parse(config.options)
        self._url = options.url
        self._shown = _shown(self._url)
        self._model: str | None = options.model or None
        self._api_key: str | None = options.api_key or None
        self._connect_timeout = options.connect_timeout
        self._read_timeout = options.read_timeout
        self._max_connections = options.max_connections
        self._start_timeout = options.start_timeout
        self._context_length: int | None = options.context_length
        kind = options.kind
        flags = options.capabilities or {}
        chosen = {name: bool(flags.get(name, False)) for name in _FLAGS}
        if kind == "chat":
            self.capabilities = EngineCapabilities(
                chat=True, completions=True, extra_parameters=dict(_EXTRAS), **chosen
            )
        else:
            self.capabilities = EngineCapabilities(
                chat=False, completions=False, embeddings=True, token_inputs=chosen["token_inputs"]
            )
        self._client: aiohttp.ClientSession | None = None
        self._state = EngineState.LOADING
        self._active: dict[str, _Progress] = {}
        self._requests = 0
        self._failures = 0
        self._tokens_generated = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> ModelFacts:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout, sock_read=self._read_timeout),
            connector=aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=_KEEPALIVE_EXPIRY, enable_cleanup_closed=True
            ),
            # Upstream addresses come from the operator's file, never from the environment's proxies.
            trust_env=False,
            skip_auto_headers=("User-Agent",),
        )
        try:
            listed = await self._probe()
        except EngineDead:
            self._state = EngineState.DEAD
            await self._client.close()
            self._client = None
            raise
        self._learn(listed)
        self._state = EngineState.READY
        log.info("upstream %s ready (model %s)", self._shown, self._model or "unnamed")
        return ModelFacts(context_length=self._context_length or 4096, n_slots=self._max_connections)

    async def _probe(self) -> list[dict[str, Any]]:
        """``GET /models`` until it answers (or ``start_timeout`` passed): the models it lists."""
        assert self._client is not None
        deadline = time.monotonic() + self._start_timeout
        timeout = aiohttp.ClientTimeout(total=_START_PROBE_TIMEOUT, connect=self._connect_timeout)
        while True:
            try:
                async with self._client.get(f"{self._url}/models", timeout=timeout, allow_redirects=False) as response:
                    status = response.status
                    listed = await self._listed(response) if status == 200 else []
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"upstream {self._shown} is unreachable: {self._describe(exc)}"
            else:
                if status in (401, 403):
                    raise EngineDead(
                        f"upstream {self._shown} refused this deployment's credentials (HTTP {status}); "
                        "check the upstream api_key"
                    )
                if 300 <= status < 400:
                    raise EngineDead(f"upstream {self._shown} redirects (HTTP {status}); set url to the final address")
                if status < 500:
                    # A server without /models (404) still answers: it is up.
                    return listed
                problem = f"upstream {self._shown} is not ready (HTTP {status})"
            if time.monotonic() >= deadline:
                raise EngineDead(problem)
            log.info("%s; retrying", problem)
            await asyncio.sleep(_START_RETRY_DELAY)

    @staticmethod
    async def _listed(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
        try:
            data = orjson.loads(await response.read()).get("data")
        except (ValueError, AttributeError):
            return []
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    def _learn(self, listed: list[dict[str, Any]]) -> None:
        ids = [str(item.get("id")) for item in listed if item.get("id")]
        if self._model is None and ids:
            self._model = ids[0]
        elif self._model is not None and ids and self._model not in ids:
            log.warning("upstream %s does not list model %r (it lists %s)", self._shown, self._model, ids[:5])
        entry = next((item for item in listed if item.get("id") == self._model), None)
        max_model_len = entry.get("max_model_len") if entry else None
        if self._context_length is None and isinstance(max_model_len, int) and max_model_len > 0:
            self._context_length = max_model_len

    def health(self) -> EngineState:
        return self._state

    async def metrics(self) -> dict[str, float]:
        return {
            "requests": self._requests,
            "failures": self._failures,
            "tokens_generated": self._tokens_generated,
            "active": len(self._active),
        }

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        return None

    async def abort(self, request_id: str) -> None:
        progress = self._active.get(request_id)
        if progress is not None:
            await self._stop(progress)

    async def close(self) -> None:
        self._state = EngineState.DEAD
        for progress in list(self._active.values()):
            await self._stop(progress)
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    @staticmethod
    async def _stop(progress: _Progress) -> None:
        """End a request from outside its iterator: closing its response breaks its connection,
        the upstream sees the client gone, and the iterator ends without an error."""
        progress.aborted = True
        if progress.response is not None:
            progress.response.close()

    def _running(self) -> aiohttp.ClientSession:
        if self._state is not EngineState.READY or self._client is None:
            raise EngineDead(f"the upstream engine for {self._shown} is not running")
        return self._client

    # --- errors ----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"connect timeout after {self._connect_timeout:g} s"
        if isinstance(exc, TimeoutError):
            return f"read timeout: nothing for {self._read_timeout:g} s"
        return self._redact(str(exc) or type(exc).__name__)

    def _transport_failure(self, exc: BaseException) -> RequestFailed:
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            message = f"upstream {self._shown} unreachable: {self._describe(exc)}"
        elif isinstance(exc, TimeoutError):
            message = f"upstream {self._shown} timed out ({self._describe(exc)})"
        else:
            message = f"upstream {self._shown} failed: {self._describe(exc)}"
        return RequestFailed(message)

    def _failure(self, status: int | None, body: Any) -> RequestFailed:
        """The failure for an error answer: an HTTP status with its body, or an error frame
        (``status`` None, unless the frame carries an HTTP code as llama-server's do)."""
        error, message = _error_parts(body)
        message = self._redact(message)[:_MAX_MESSAGE]
        code = error.get("code")
        if status is None and isinstance(code, int) and 400 <= code < 600:
            status = code
        if status is not None and 400 <= status < 500 and status not in _NOT_CLIENT_ERRORS:
            if _is_context_error(error, message):
                return RequestFailed(message, client_error=True, code="context_length_exceeded")
            return RequestFailed(message, client_error=True, code="invalid_request")
        shown = f" (HTTP {status})" if status is not None else ""
        return RequestFailed(f"upstream {self._shown} failed{shown}: {message}")

    async def _check(self, response: aiohttp.ClientResponse, streamed: bool) -> Any:
        """Raise for an error answer, or for an answer of the wrong kind; a whole answer's body."""
        content_type = response.headers.get("content-type", "")
        if 300 <= response.status < 400:
            raise RequestFailed(f"upstream {self._shown} redirects (HTTP {response.status})")
        if streamed and response.status < 400 and not content_type.startswith("application/json"):
            return None
        limit = _MAX_ERROR_BODY if streamed or response.status >= 400 else _MAX_ANSWER
        body = _parsed(await _read_at_most(response, limit))
        if response.status >= 400:
            raise self._failure(response.status, body)
        if isinstance(body, dict) and body.get("error") is not None:
            raise self._failure(None, body)
        if streamed:
            raise RequestFailed(f"upstream {self._shown} answered with {content_type}, not an event stream")
        if not isinstance(body, dict):
            raise RequestFailed(f"upstream {self._shown} answered with {content_type}, not a JSON object")
        return body

    # --- generation ------------------------------------------------------------------------

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        return request_payload(request, _DIALECT, self._model)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        client = self._running()
        if not self.capabilities.chat:
            raise RequestFailed("this upstream deployment serves embeddings, not generations")
        chat = request.messages is not None
        url = f"{self._url}/chat/completions" if chat else f"{self._url}/completions"
        payload = self._payload(request)
        if not request.stream:
            payload["stream"] = False
            payload.pop("stream_options", None)
        progress = _Progress()
        self._requests += 1
        self._active[request.request_id] = progress
        try:
            try:
                async with await _post(client, url, payload) as response:
                    progress.response = response
                    body = await self._check(response, request.stream)
                    if body is not None:
                        for event in _whole_events(body, chat, request.logprobs, progress):
                            yield event
                        progress.done = True
                    else:
                        async for data in _sse_data(response.content.iter_any()):
                            if progress.done:
                                continue  # read to the end, so that the connection is kept
                            if data.strip() == "[DONE]":
                                progress.done = True
                                continue
                            chunk = self._chunk(data)
                            for event in _events(chunk, chat, request.logprobs, progress):
                                yield event
                            if progress.aborted:
                                return
            except (aiohttp.ClientError, TimeoutError) as exc:
                # An aborted request's response was closed under it: that is its end, not a failure.
                if progress.aborted:
                    return
                raise self._transport_failure(exc) from None
            if progress.aborted:
                return
            if not progress.done and not progress.finished:
                raise RequestFailed(f"upstream {self._shown} ended the stream before the answer was complete")
            if not progress.finished:
                yield Finish("stop")
            # No usage from the upstream: one token per chunk of text (see the module's doc).
            yield progress.usage or Usage(0, progress.text_chunks)
        except RequestFailed as exc:
            self._failures += 1
            log.log(_level(exc), "upstream request %s failed: %s", request.request_id, exc.message)
            raise
        finally:
            self._active.pop(request.request_id, None)
            self._tokens_generated += (
                progress.usage.completion_tokens if progress.usage is not None else progress.text_chunks
            )

    def _chunk(self, data: str) -> dict[str, Any]:
        try:
            chunk = orjson.loads(data)
        except ValueError:
            raise RequestFailed(f"upstream {self._shown} sent a malformed event: {data[:100]!r}") from None
        if not isinstance(chunk, dict):
            raise RequestFailed(f"upstream {self._shown} sent a malformed event: {data[:100]!r}")
        if chunk.get("error") is not None or chunk.get("object") == "error":
            raise self._failure(None, chunk)
        return chunk

    # --- embeddings ------------------------------------------------------------------------

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        client = self._running()
        if not self.capabilities.embeddings:
            raise RequestFailed("this upstream deployment serves generations, not embeddings")
        if request.images is not None:
            raise RequestFailed("this upstream deployment embeds text, not images", client_error=True)
        inputs: list[Any] = list(request.texts if request.texts is not None else request.token_ids or [])
        payload: dict[str, Any] = {"input": inputs, "encoding_format": "float"}
        if self._model is not None:
            payload["model"] = self._model
        self._requests += 1
        try:
            try:
                async with await _post(client, f"{self._url}/embeddings", payload) as response:
                    status = response.status
                    raw = await _read_at_most(response, _MAX_ANSWER)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._transport_failure(exc) from None
            body = _parsed(raw)
            if status >= 400:
                raise self._failure(status, body)
            if not isinstance(body, dict) or body.get("error") is not None:
                raise self._failure(None, body)
            return self._embeddings(body, len(inputs))
        except RequestFailed as exc:
            self._failures += 1
            log.log(_level(exc), "upstream embeddings request %s failed: %s", request.request_id, exc.message)
            raise

    def _embeddings(self, body: dict[str, Any], count: int) -> Embeddings:
        try:
            data = sorted(body["data"], key=lambda item: int(item["index"]))
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (KeyError, TypeError, ValueError):
            raise RequestFailed(f"upstream {self._shown} answered embeddings in an unexpected shape") from None
        if len(vectors) != count:
            raise RequestFailed(f"upstream {self._shown} returned {len(vectors)} embeddings for {count} inputs")
        usage = body.get("usage") or {}
        return Embeddings(vectors, int(usage.get("prompt_tokens") or 0))


async def _post(client: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
    """POST ``payload``; once more if a kept-alive connection turned out closed before any answer.

    Servers may close a connection right after a streamed answer without saying so (llama-server
    does); one taken from the pool at that moment fails before a byte of the request is read. A
    failure after the answer began is never retried."""
    data = orjson.dumps(payload)
    try:
        return await client.post(url, data=data, headers=_JSON, allow_redirects=False)
    except aiohttp.ClientConnectorError:
        raise  # a new connection that could not be opened: nothing was kept alive
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return await client.post(url, data=data, headers=_JSON, allow_redirects=False)


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes and a little more."""
    raw = bytearray()
    async for piece in response.content.iter_any():
        raw += piece
        if len(raw) > limit:
            break
    return bytes(raw)


def _parsed(raw: bytes) -> Any:
    """An answer's JSON, or its first bytes as text when it is not JSON."""
    try:
        return orjson.loads(raw)
    except ValueError:
        return raw[:_MAX_ERROR_BODY].decode("utf-8", "replace")


async def _lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Lines without their ends (CRLF, LF or CR), from bytes cut anywhere."""
    rest = b""
    async for piece in pieces:
        rest += piece
        # A CR at the end may be the first half of a CRLF: it waits for the next piece.
        cut = len(rest) - 1 if rest.endswith(b"\r") else len(rest)
        lines = _LINE_END.split(rest[:cut])
        rest = lines.pop() + rest[cut:]
        for line in lines:
            yield line.decode("utf-8", "replace")
    if rest:
        for line in _LINE_END.split(rest):
            yield line.decode("utf-8", "replace")


async def _sse_data(pieces: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event. Lines end in CRLF, LF or CR; comments and
    ``event:``/``id:``/``retry:`` fields are skipped; several ``data:`` lines make one event,
    joined by newlines; an event cut short by the end of the stream still counts."""
    buffer: list[str] = []
    async for line in _lines(pieces):
        if not line:
            if buffer:
                yield "\n".join(buffer)
                buffer = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            buffer.append(value.removeprefix(" "))
    if buffer:
        yield "\n".join(buffer)


def _whole_events(body: dict[str, Any], chat: bool, logprobs: int | None, progress: _Progress) -> list[Event]:
    """The events of a whole answer: each choice's message read as one delta."""
    choices = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if chat:
            message = dict(choice.get("message") or {})
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                message["tool_calls"] = [
                    {**call, "index": i} if isinstance(call, dict) else call for i, call in enumerate(calls)
                ]
            choice = {**choice, "delta": message}
        choices.append(choice)
    return _events({"choices": choices, "usage": body.get("usage")}, chat, logprobs, progress)


def _events(chunk: dict[str, Any], chat: bool, logprobs: int | None, progress: _Progress) -> list[Event]:
    """The events of one chunk, each choice's finish once; its usage is kept in ``progress`` for
    the end."""
    events: list[Event] = []
    for event in chunk_events(chunk, chat, logprobs):
        if isinstance(event, Usage):
            progress.usage = event
        elif not isinstance(event, Finish):
            events.append(event)
        elif event.index not in progress.finished:
            progress.finished.add(event.index)
            events.append(event)
    if any(isinstance(event, TextDelta | ToolCallDelta) for event in events):
        progress.text_chunks += 1
    return events

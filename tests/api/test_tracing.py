"""OpenTelemetry traces to a local OTLP/HTTP collector stand-in: one span per request, with the
deployment and token counts, and no secret anywhere in what is exported."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import KEY, in_process, wait_until


class _Collector(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        _Collector.bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    _Collector.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _spans() -> list[dict[str, Any]]:
    spans = []
    for body in _Collector.bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {}
                    for item in span.attributes:
                        value = item.value
                        attributes[item.key] = getattr(value, value.WhichOneof("value"))
                    spans.append({"name": span.name, "attributes": attributes})
    return spans


def test_each_request_is_a_span_with_its_usage_and_without_secrets(collector: str) -> None:
    with in_process({"otlp_endpoint": collector}) as server:
        headers = {"api-key": KEY, "x-ms-client-request-id": "trace-me-1"}
        chat = httpx.post(
            f"{server.url}/chat/completions",
            headers=headers,
            json={"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4},
        )
        assert chat.status_code == 200
        usage = chat.json()["usage"]
        refused = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer not-the-key-0123456789"})
        assert refused.status_code == 401
    # The provider is flushed at shutdown.
    wait_until(lambda: len(_spans()) >= 1, 10, "spans to reach the collector")
    spans = {span["name"]: span["attributes"] for span in _spans()}
    assert spans["POST /chat/completions"] == {
        "http.request.method": "POST",
        "url.path": "/chat/completions",
        "http.response.status_code": 200,
        "aimi.request_id": chat.headers["x-request-id"],
        "aimi.key": "key-1",
        "aimi.route": "chat",
        "aimi.surface": "azure",
        "aimi.deployment": "fake-model",
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "aimi.ttft_ms": spans["POST /chat/completions"]["aimi.ttft_ms"],
        "aimi.outcome": "ok",
    }
    assert spans["POST /chat/completions"]["aimi.ttft_ms"] > 0
    assert "GET /v1/models" not in spans  # refused by auth before tracing: it sits behind authentication
    exported = b"".join(_Collector.bodies)
    assert KEY.encode() not in exported
    assert b"not-the-key-0123456789" not in exported

"""OpenTelemetry traces, when an OTLP endpoint is configured: one span per request.

A span carries the method, the path (never the query), the status, aimi's request id, the
deployment, the key's name and the token counts. Headers, bodies and secrets are never recorded.
The tracer provider belongs to the app (not the process), and is flushed at shutdown.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimi import __version__
from aimi.auth.keys import principal_of


def tracer_provider(endpoint: str) -> Any:
    """A provider exporting to ``endpoint`` (OTLP over HTTP; ``/v1/traces`` is added if missing)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError("tracing needs the otel extra: pip install 'aimi[otel]'") from exc
    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": "aimi", "service.version": __version__}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=5)))
    return provider


class TracingMiddleware:
    def __init__(self, app: ASGIApp, provider: Any) -> None:
        self.app = app
        self.tracer = provider.get_tracer("aimi")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode

        status = 500

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(
            f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER, record_exception=False
        ) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            try:
                await self.app(scope, receive, send_traced)
            finally:
                state = scope.get("state", {})
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("aimi.request_id", state.get("request_id", ""))
                principal = principal_of(scope)
                if principal is not None:
                    span.set_attribute("aimi.key", principal.name)
                context = state.get("context")
                if context is not None:
                    span.set_attribute("aimi.route", context.kind.value)
                    span.set_attribute("aimi.surface", context.surface)
                    if context.deployment is not None:
                        span.set_attribute("aimi.deployment", context.deployment.name)
                    span.set_attribute("gen_ai.usage.input_tokens", context.prompt_tokens)
                    span.set_attribute("gen_ai.usage.output_tokens", context.completion_tokens)
                    if context.ttft_ms is not None:
                        span.set_attribute("aimi.ttft_ms", context.ttft_ms)
                    if context.outcome is not None:
                        span.set_attribute("aimi.outcome", context.outcome.value)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))

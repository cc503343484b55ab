"""Route handlers shared by every surface: read the wire body, run the pipeline, encode.

A :class:`Surface` says which wire schemas apply and which extra-parameters policy is the default;
everything between reading and encoding is the pipeline's (:mod:`aimi.pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from aimi import pipeline
from aimi.auth.keys import principal_of
from aimi.pipeline import embeddings
from aimi.pipeline.context import AZURE_OPENAI as AZURE_OPENAI_NAME
from aimi.pipeline.context import Kind, RequestContext, context_of
from aimi.pipeline.extra_parameters import Policy, policy_from_header
from aimi.pipeline.generation import collect
from aimi.pipeline.steps import may_call, route_to, until_disconnect
from aimi.pipeline.validation import (
    OUTLINE_FROM_BYTES,
    check_counts,
    check_outline,
    check_prefix,
    parse,
    parse_json_object,
)
from aimi.protocol.chat import AzureChatRequest, OpenAIChatRequest
from aimi.protocol.completions import AzureCompletionRequest, OpenAICompletionRequest
from aimi.protocol.embeddings import AzureEmbeddingsRequest, AzureImageEmbeddingsRequest, OpenAIEmbeddingsRequest
from aimi.protocol.errors import ApiError
from aimi.runtime import runtime_of
from aimi.surfaces.encode import Encoder, embeddings_body
from aimi.surfaces.json_response import JSONResponse
from aimi.surfaces.stream import EventStreamResponse


@dataclass(frozen=True)
class Surface:
    """One public API: its request schemas and its default extra-parameters policy."""

    name: str
    chat_model: type[AzureChatRequest]
    completion_model: type[AzureCompletionRequest]
    embeddings_model: type[AzureEmbeddingsRequest]
    default_policy: Policy
    azure: bool


AZURE = Surface("azure", AzureChatRequest, AzureCompletionRequest, AzureEmbeddingsRequest, Policy.ERROR, azure=True)
# OpenAI clients (and vLLM users) send engine extras through extra_body without any header.
OPENAI = Surface(
    "openai", OpenAIChatRequest, OpenAICompletionRequest, OpenAIEmbeddingsRequest, Policy.PASS_THROUGH, azure=False
)
# Azure OpenAI's data plane speaks OpenAI's wire (the openai SDK's AzureOpenAI sends it), with the
# deployment in the path.
AZURE_OPENAI = Surface(
    AZURE_OPENAI_NAME,
    OpenAIChatRequest,
    OpenAICompletionRequest,
    OpenAIEmbeddingsRequest,
    Policy.PASS_THROUGH,
    azure=False,
)
# A deployment named like a route word, as litellm's azure_ai provider calls it: given
# api_base .../deployments/chat it merges the repeated "chat" of /chat/completions and posts the
# chat body to .../deployments/chat/completions, the text-completions route.
MERGED_CHAT_NAME = "chat"


def _json_only(content_type: str | None) -> None:
    """A body declared as anything but JSON is a 415: a browser posts forms and text/plain across
    sites without asking first, never JSON. A body with no type at all is read as JSON."""
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        shown = media[:60] + ("..." if len(media) > 60 else "")
        raise ApiError(
            "unsupported_media_type", f"the request body must be application/json; got Content-Type {shown!r}"
        )


# Where a large body's prefix is read for its count of messages while the rest still arrives.
_PREFIX_CHECKS = (OUTLINE_FROM_BYTES, 1024 * 1024)


async def _body(request: Request, most_messages: int) -> bytes:
    """The request body, refused as soon as what arrived holds more messages than any deployment
    accepts: the rest of a 3.5 MB flood is then discarded by the HTTP parser as it arrives, never
    gathered, joined and scanned."""
    chunks: list[bytes] = []
    size = 0
    checks = iter(_PREFIX_CHECKS)
    due = next(checks, None)
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if due is not None and size >= due:
            check_prefix(b"".join(chunks), most_messages)
            due = next((at for at in checks if at > size), None)
    return b"".join(chunks)


async def _read(request: Request, surface: Surface, schema: type[BaseModel]) -> RequestContext:
    """The request's context with its wire body, its extra-parameters policy and the deployment it
    names (the path's, the azureml-model-deployment header's, the body's ``model``)."""
    context = context_of(request.scope)
    _json_only(request.headers.get("content-type"))
    context.policy = policy_from_header(request.headers.get("extra-parameters"), surface.default_policy)
    deployments = context.runtime.deployments
    raw = await _body(request, deployments.most_messages)
    check_outline(raw, deployments.most_messages, deployments.most_inputs)
    value = parse_json_object(raw)
    check_counts(value, deployments.most_messages, deployments.most_inputs)
    context.body = parse(schema, value)
    context.model = request.headers.get("azureml-model-deployment") or context.body.model
    context.pinned = request.path_params.get("deployment")
    return context


def _model_name(context: RequestContext, surface: Surface) -> str:
    deployment = context.serving()
    return deployment.display_name if surface.azure else deployment.name


async def _generated(context: RequestContext, encoder: Encoder) -> Response:
    encoder.prompt_filter_results = context.prompt_filter_results
    assert context.work is not None and context.generation is not None
    if context.work.stream:
        return EventStreamResponse(context, encoder)
    return JSONResponse(encoder.whole(await until_disconnect(context, collect(context))))


def _include_usage(body: AzureChatRequest | AzureCompletionRequest) -> bool:
    """OpenAI's ``stream_options.include_usage``: usage in a trailing chunk of its own. (On the Azure
    surface ``stream_options`` is no field: an extra, judged by the extra-parameters policy.)"""
    if isinstance(body, OpenAIChatRequest | OpenAICompletionRequest) and body.stream_options is not None:
        return bool(body.stream_options.include_usage)
    return False


async def chat_completions(request: Request, surface: Surface) -> Response:
    context = await pipeline.run(await _read(request, surface, surface.chat_model))
    encoder = Encoder("chat", _model_name(context, surface), surface.azure, _include_usage(context.body))
    return await _generated(context, encoder)


async def _is_merged_chat(request: Request) -> bool:
    """A chat body (``messages``, no ``prompt``) posted to /deployments/chat/completions: litellm's
    merged path for chat on the deployment named ``chat`` (see :data:`MERGED_CHAT_NAME`). Nothing
    else is read this way: a text completion on that deployment still has its ``prompt``."""
    if request.path_params.get("deployment") != MERGED_CHAT_NAME:
        return False
    body = parse_json_object(await request.body())
    return "messages" in body and "prompt" not in body


async def completions(request: Request, surface: Surface) -> Response:
    # The path's suffix can mislead the metering middleware here too: /deployments/chat/completions
    # ends like a chat route. The body decides.
    merged = await _is_merged_chat(request)
    context_of(request.scope).kind = Kind.CHAT if merged else Kind.COMPLETIONS
    if merged:
        return await chat_completions(request, surface)
    context = await pipeline.run(await _read(request, surface, surface.completion_model))
    encoder = Encoder("text", _model_name(context, surface), surface.azure, _include_usage(context.body))
    return await _generated(context, encoder)


async def _embedded(context: RequestContext, surface: Surface) -> Response:
    assert context.embedding_work is not None and context.embedded is not None
    vectors = embeddings.finish(context.embedding_work, context.embedded.vectors)
    return JSONResponse(embeddings_body(_model_name(context, surface), vectors, context.embedded.prompt_tokens))


async def text_embeddings(request: Request, surface: Surface) -> Response:
    context = await pipeline.run(await _read(request, surface, surface.embeddings_model))
    return await _embedded(context, surface)


async def image_embeddings(request: Request) -> Response:
    context = await pipeline.run(await _read(request, AZURE, AzureImageEmbeddingsRequest))
    return await _embedded(context, AZURE)


async def info(request: Request, surface: Surface) -> Response:
    """Azure ``GET /info``: the model behind the endpoint (or the path's deployment)."""
    runtime = runtime_of(request.app)
    routed = route_to(
        runtime.deployments,
        request.headers.get("azureml-model-deployment") or request.query_params.get("model"),
        request.path_params.get("deployment"),
        surface.name,
    )
    deployment = may_call(principal_of(request.scope), routed).deployment
    return JSONResponse(
        {
            "model_name": deployment.display_name,
            "model_type": deployment.profile.model_type,
            "model_provider_name": deployment.profile.provider,
        }
    )


async def models(request: Request) -> Response:
    """OpenAI ``GET /v1/models``: the deployments and endpoints the caller may use."""
    principal = principal_of(request.scope)
    deployments = runtime_of(request.app).deployments
    data = [
        {"id": d.name, "object": "model", "created": d.created, "owned_by": d.profile.provider}
        for d in deployments
        if principal is None or principal.may_use(d.name)
    ]
    data += [
        {"id": e.name, "object": "model", "created": 0, "owned_by": "aimi"}
        for e in deployments.endpoints
        if principal is None or principal.may_use(e.name)
    ]
    return JSONResponse({"object": "list", "data": data})

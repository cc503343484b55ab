"""Route handlers shared by both surfaces; a :class:`Surface` says which wire schemas apply."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from aimi.deployments.registry import Deployment, Deployments, Routed
from aimi.engines.api import Embeddings, EngineDead, RequestFailed
from aimi.pipeline import admission, canonical, embeddings
from aimi.pipeline.controls import Work
from aimi.pipeline.embeddings import EmbeddingWork
from aimi.pipeline.extra_parameters import Policy, policy_from_header
from aimi.pipeline.generation import Generation, engine_error, gather
from aimi.pipeline.validation import parse, parse_json_object
from aimi.protocol.chat import AzureChatRequest, OpenAIChatRequest
from aimi.protocol.completions import AzureCompletionRequest, OpenAICompletionRequest
from aimi.protocol.embeddings import AzureEmbeddingsRequest, AzureImageEmbeddingsRequest, OpenAIEmbeddingsRequest
from aimi.protocol.errors import ApiError, content_filtered, service_unavailable
from aimi.surfaces.encode import Encoder
from aimi.surfaces.responses import JSONResponse
from aimi.surfaces.stream import ClientGone, EventStreamResponse
from aimi.usage.meter import Meter
from aimi.usage.records import Outcome

T = TypeVar("T")
log = logging.getLogger(__name__)


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
_KINDS = {
    "chat": ("chat completions", "chat"),
    "completions": ("text completions", "completions"),
    "embeddings": ("embeddings", "embeddings"),
    "image_embeddings": ("image embeddings", "image_embeddings"),
}


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone()
    return task.result()


def _deployments(request: Request) -> Deployments:
    deployments: Deployments = request.app.state.deployments
    return deployments


def _allowed(request: Request, routed: Routed) -> Routed:
    principal = request.scope.get("state", {}).get("principal")
    if principal is not None and not principal.may_use(routed.called):
        raise ApiError("Forbidden", f"key '{principal.name}' may not use deployment '{routed.called}'")
    return routed


def _routed(request: Request, model: str | None) -> Routed:
    """Where the request goes: the path's deployment, else the azureml-model-deployment header,
    else ``model`` (the body's), checked against the caller's key."""
    name = request.headers.get("azureml-model-deployment") or model
    return _allowed(request, _deployments(request).route(name, request.path_params.get("deployment")))


def _mirror(request: Request, routed: Routed, kind: str, run: Callable[[Deployment], Awaitable[object]]) -> None:
    """Send the request to the shadow deployment too, in the background; its answer is discarded."""
    shadow = routed.shadow
    if shadow is None or not getattr(shadow.engine.capabilities, _KINDS[kind][1]):
        return

    async def mirrored() -> None:
        try:
            await run(await _loaded(request, shadow))
        except Exception as exc:  # a shadow's failure never reaches the client
            log.info("shadow request to %s failed: %s", shadow.name, exc)

    tasks: set[asyncio.Task[None]] = request.app.state.shadow_tasks
    task = asyncio.create_task(mirrored())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _meter(request: Request) -> Meter:
    """The request's usage account (opened by the metering middleware)."""
    meter: Meter | None = request.scope.get("state", {}).get("meter")
    if meter is None:  # an app without the middleware (never the served one)
        meter = Meter(request.scope.get("state", {}).get("request_id", uuid.uuid4().hex), "", "", None)
    return meter


async def _reserve(request: Request, deployment: Deployment, tokens: int) -> Meter:
    """Charge the request and ``tokens`` against its deployment's and key's quotas (429 past them)."""
    meter = _meter(request)
    metering = request.app.state.metering
    principal = request.scope.get("state", {}).get("principal")
    charged = admission.scopes(deployment, principal)
    await admission.admit(metering.quotas, metering.metrics, meter, charged, tokens)
    return meter


def _serving(routed: Routed, kind: str, request: Request) -> Deployment:
    """The routed deployment, if it serves ``kind`` requests (and now the one the request is metered to)."""
    deployment = routed.deployment
    meter = _meter(request)
    meter.deployment, meter.model, meter.prices = deployment.name, deployment.display_name, deployment.prices
    what, capability = _KINDS[kind]
    if not getattr(deployment.engine.capabilities, capability):
        raise ApiError(
            "NotFound",
            f"{what} not found on deployment '{deployment.name}', which serves {deployment.profile.model_type}",
        )
    return deployment


async def _loaded(request: Request, deployment: Deployment) -> Deployment:
    """The deployment with its model loaded (on-demand deployments load here), ready for a request."""
    try:
        await _deployments(request).ensure_loaded(deployment, request.app.state.settings.max_loaded_models)
    except EngineDead as exc:
        log.error("deployment %s failed to load: %s", deployment.name, exc)
    return deployment.ready()


async def _body(request: Request, surface: Surface, schema: type[BaseModel]) -> tuple[Any, Policy]:
    policy = policy_from_header(request.headers.get("extra-parameters"), surface.default_policy)
    return parse(schema, parse_json_object(await request.body())), policy


def _model_name(deployment: Deployment, surface: Surface) -> str:
    return deployment.display_name if surface.azure else deployment.name


async def _screen_prompt(deployment: Deployment, work: Work, meter: Meter, encoder: Encoder) -> None:
    """Content safety on the prompt: a 400 ``content_filter`` when the policy blocks it; otherwise
    the results go on the response when the policy annotates."""
    safety = deployment.safety
    if safety is None:
        return
    request = work.request
    if request.messages is not None:
        texts = [turn.content for turn in request.messages if turn.content]
        # Earlier tool calls reach the model too: their names and arguments are judged with the rest.
        texts += [f"{call.name} {call.arguments}" for turn in request.messages for call in turn.tool_calls]
        users = [turn.content for turn in request.messages if turn.content and turn.role == "user"]
    else:
        texts = users = [request.prompt or ""]
    size = sum(len(text) for text in texts)
    if size > safety.policy.max_prompt_chars:
        raise ApiError(
            "invalid_request",
            f"the prompt is {size} characters long; content safety judges at most "
            f"{safety.policy.max_prompt_chars} on this deployment",
            param="messages" if request.messages is not None else "prompt",
        )
    verdict = await safety.judge(texts, users)
    if verdict.blocked and verdict.error is not None:
        meter.prompt_tokens = 0  # not judged, never run: nothing to charge
        raise service_unavailable("content safety could not judge the prompt; retry shortly", retry_after=1)
    if verdict.blocked:
        meter.fail(Outcome.CONTENT_FILTER)
        raise content_filtered(verdict.results, "messages" if request.messages is not None else "prompt")
    if safety.policy.annotate:
        encoder.prompt_filter_results = [{"prompt_index": 0, "content_filter_results": verdict.results}]


async def _respond(request: Request, deployment: Deployment, work: Work, encoder: Encoder) -> Response:
    await _loaded(request, deployment)
    prompt = await admission.prompt_tokens(deployment, work.request)
    most = work.request.max_tokens or deployment.max_tokens
    meter = await _reserve(request, deployment, prompt + work.candidates * most)
    meter.prompt_tokens = prompt  # a prompt refused by content safety is still metered
    await _screen_prompt(deployment, work, meter, encoder)
    timeout = request.app.state.settings.request_timeout
    generation = await until_disconnect(request.receive, Generation.open(deployment, work, meter, timeout))
    if work.stream:
        return EventStreamResponse(generation, encoder)
    result = await until_disconnect(request.receive, gather(generation))
    return JSONResponse(encoder.whole(result))


async def _shadow_generation(deployment: Deployment, work: Work) -> None:
    if deployment.safety is not None:  # the shadow's own policy: what it would refuse never reaches it
        encoder = Encoder("chat", deployment.name, False)
        try:
            await _screen_prompt(deployment, work, Meter(work.request.request_id, "", "", None), encoder)
        except ApiError:
            return
    await gather(await Generation.open(deployment, work))


async def chat_completions(request: Request, surface: Surface) -> Response:
    body, policy = await _body(request, surface, surface.chat_model)
    routed = _routed(request, body.model)
    deployment = _serving(routed, "chat", request)
    work = canonical.chat_request(body, policy, deployment)
    include_usage = bool(
        isinstance(body, OpenAIChatRequest) and body.stream_options and body.stream_options.include_usage
    )
    encoder = Encoder("chat", _model_name(deployment, surface), surface.azure, include_usage)
    response = await _respond(request, deployment, work, encoder)
    # Mirrored only once the request passed its own checks (quota, content safety).
    _mirror(request, routed, "chat", lambda d: _shadow_generation(d, canonical.chat_request(body, policy, d)))
    return response


async def completions(request: Request, surface: Surface) -> Response:
    body, policy = await _body(request, surface, surface.completion_model)
    routed = _routed(request, body.model)
    deployment = _serving(routed, "completions", request)
    work = canonical.completion_request(body, policy, deployment)
    include_usage = bool(
        isinstance(body, OpenAICompletionRequest) and body.stream_options and body.stream_options.include_usage
    )
    encoder = Encoder("text", _model_name(deployment, surface), surface.azure, include_usage)
    response = await _respond(request, deployment, work, encoder)
    _mirror(
        request, routed, "completions", lambda d: _shadow_generation(d, canonical.completion_request(body, policy, d))
    )
    return response


async def info(request: Request) -> Response:
    """Azure ``GET /info``: the model behind the endpoint."""
    deployment = _routed(request, request.query_params.get("model")).deployment
    return JSONResponse(
        {
            "model_name": deployment.display_name,
            "model_type": deployment.profile.model_type,
            "model_provider_name": deployment.profile.provider,
        }
    )


async def models(request: Request) -> Response:
    """OpenAI ``GET /v1/models``."""
    principal = request.scope.get("state", {}).get("principal")
    deployments = _deployments(request)
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


async def _embedding_response(
    request: Request, deployment: Deployment, work: EmbeddingWork, surface_azure: bool
) -> Response:
    await _loaded(request, deployment)
    meter = await _reserve(request, deployment, admission.embedding_tokens(work.request))
    try:
        result = await until_disconnect(request.receive, _embed(deployment, work))
    except (RequestFailed, EngineDead) as exc:
        if not (isinstance(exc, RequestFailed) and exc.client_error):
            meter.fail(Outcome.ENGINE_ERROR)
        raise engine_error(exc) from None
    meter.prompt_tokens = result.prompt_tokens
    vectors = embeddings.finish(work, result.vectors)
    return JSONResponse(
        {
            "id": uuid.uuid4().hex,
            "object": "list",
            "model": deployment.display_name if surface_azure else deployment.name,
            "data": [{"index": i, "object": "embedding", "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
    )


async def _embed(deployment: Deployment, work: EmbeddingWork) -> Embeddings:
    """One embedding request, counted in (and out of) the deployment's admission."""
    deployment.admit()
    try:
        return await deployment.engine.embed(work.request)
    finally:
        deployment.release()


async def text_embeddings(request: Request, surface: Surface) -> Response:
    body, policy = await _body(request, surface, surface.embeddings_model)
    routed = _routed(request, body.model)
    deployment = _serving(routed, "embeddings", request)
    work = embeddings.text_request(body, policy, deployment)
    _mirror(request, routed, "embeddings", lambda d: _embed(d, embeddings.text_request(body, policy, d)))
    return await _embedding_response(request, deployment, work, surface.azure)


async def image_embeddings(request: Request) -> Response:
    body, policy = await _body(request, AZURE, AzureImageEmbeddingsRequest)
    deployment = _serving(_routed(request, body.model), "image_embeddings", request)
    work = embeddings.image_request(body, policy, deployment)
    return await _embedding_response(request, deployment, work, True)

"""Route handlers shared by both surfaces; a :class:`Surface` says which wire schemas apply."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from aimi.deployments.registry import Deployment, Deployments
from aimi.pipeline import canonical
from aimi.pipeline.controls import Work
from aimi.pipeline.extra_parameters import Policy, policy_from_header
from aimi.pipeline.generation import Generation, gather
from aimi.pipeline.validation import parse, parse_json_object
from aimi.protocol.chat import AzureChatRequest, OpenAIChatRequest
from aimi.protocol.completions import AzureCompletionRequest, OpenAICompletionRequest
from aimi.surfaces.encode import Encoder
from aimi.surfaces.responses import JSONResponse
from aimi.surfaces.stream import ClientGone, EventStreamResponse

T = TypeVar("T")


@dataclass(frozen=True)
class Surface:
    """One public API: its request schemas and its default extra-parameters policy."""

    name: str
    chat_model: type[AzureChatRequest]
    completion_model: type[AzureCompletionRequest]
    default_policy: Policy
    azure: bool


AZURE = Surface("azure", AzureChatRequest, AzureCompletionRequest, Policy.ERROR, azure=True)
# OpenAI clients (and vLLM users) send engine extras through extra_body without any header.
OPENAI = Surface("openai", OpenAIChatRequest, OpenAICompletionRequest, Policy.PASS_THROUGH, azure=False)


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


def _deployment(request: Request, model: str | None) -> Deployment:
    name = request.headers.get("azureml-model-deployment") or model
    return _deployments(request).resolve(name).ready()


async def _body(request: Request, surface: Surface, schema: type[BaseModel]) -> tuple[Any, Policy]:
    policy = policy_from_header(request.headers.get("extra-parameters"), surface.default_policy)
    return parse(schema, parse_json_object(await request.body())), policy


def _model_name(deployment: Deployment, surface: Surface) -> str:
    return deployment.display_name if surface.azure else deployment.name


async def _respond(request: Request, deployment: Deployment, work: Work, encoder: Encoder) -> Response:
    generation = await until_disconnect(request.receive, Generation.open(deployment, work))
    if work.stream:
        return EventStreamResponse(generation, encoder)
    result = await until_disconnect(request.receive, gather(generation))
    return JSONResponse(encoder.whole(result))


async def chat_completions(request: Request, surface: Surface) -> Response:
    body, policy = await _body(request, surface, surface.chat_model)
    deployment = _deployment(request, body.model)
    work = canonical.chat_request(body, policy, deployment)
    include_usage = bool(
        isinstance(body, OpenAIChatRequest) and body.stream_options and body.stream_options.include_usage
    )
    encoder = Encoder("chat", _model_name(deployment, surface), surface.azure, include_usage)
    return await _respond(request, deployment, work, encoder)


async def completions(request: Request, surface: Surface) -> Response:
    body, policy = await _body(request, surface, surface.completion_model)
    deployment = _deployment(request, body.model)
    work = canonical.completion_request(body, policy, deployment)
    include_usage = bool(
        isinstance(body, OpenAICompletionRequest) and body.stream_options and body.stream_options.include_usage
    )
    encoder = Encoder("text", _model_name(deployment, surface), surface.azure, include_usage)
    return await _respond(request, deployment, work, encoder)


async def info(request: Request) -> Response:
    """Azure ``GET /info``: the model behind the endpoint."""
    deployment = _deployments(request).resolve(request.query_params.get("model"))
    return JSONResponse(
        {
            "model_name": deployment.display_name,
            "model_type": deployment.profile.model_type,
            "model_provider_name": deployment.profile.provider,
        }
    )


async def models(request: Request) -> Response:
    """OpenAI ``GET /v1/models``."""
    data = [
        {"id": d.name, "object": "model", "created": d.created, "owned_by": d.profile.provider}
        for d in _deployments(request)
    ]
    return JSONResponse({"object": "list", "data": data})

"""The steps of the pipeline: each a small function over the request's context.

A step reads what earlier steps left on the :class:`RequestContext`, adds what it learns, or
raises the :class:`ApiError` the client gets. The order they run in is in
:mod:`aimi.pipeline` (``STEPS``), one list per kind of request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from aimi.auth.keys import Principal
from aimi.deployments.registry import Deployments, Routed
from aimi.engines.api import EngineDead, Event, Finish, RequestFailed
from aimi.pipeline import admission, canonical, embeddings
from aimi.pipeline.context import AZURE_OPENAI, RequestContext
from aimi.pipeline.generation import Generation, engine_error
from aimi.protocol.errors import ApiError, content_filtered, deployment_not_found, service_unavailable
from aimi.safety.filter import Annotation
from aimi.usage.records import Outcome

T = TypeVar("T")
log = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def until_disconnect(context: RequestContext, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await context.receive())["type"] != "http.disconnect":
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


# --- where the request goes ------------------------------------------------------------------


def route_to(deployments: Deployments, model: str | None, pinned: str | None, surface: str) -> Routed:
    """Where a request goes (:meth:`Deployments.route`). On the Azure OpenAI data plane a path
    naming no deployment is that service's ``DeploymentNotFound``, which its clients recognise."""
    if surface == AZURE_OPENAI and pinned is not None and not deployments.knows(pinned):
        raise deployment_not_found()
    return deployments.route(model, pinned)


async def route(context: RequestContext) -> None:
    """The path's deployment, else the azureml-model-deployment header's, else the body's ``model``;
    an endpoint splits traffic over several (and may name a shadow)."""
    context.routed = route_to(context.runtime.deployments, context.model, context.pinned, context.surface)


def may_call(principal: Principal | None, routed: Routed) -> Routed:
    """``routed``, if the caller's key may use the name it called; else a 403."""
    if principal is not None and not principal.may_use(routed.called):
        raise ApiError("Forbidden", f"{principal.kind} '{principal.name}' may not use deployment '{routed.called}'")
    return routed


async def authorise(context: RequestContext) -> None:
    """The caller's key may use the name it called (403), and the deployment serves this kind (404)."""
    assert context.routed is not None
    deployment = context.deployment = may_call(context.principal, context.routed).deployment
    if not getattr(deployment.engine.capabilities, context.kind.value):
        raise ApiError(
            "NotFound",
            f"{context.kind.what} not found on deployment '{deployment.name}', which serves "
            f"{deployment.profile.model_type}",
        )


# --- what the request asks for ---------------------------------------------------------------
# Canonicalising also checks capabilities: what the deployment cannot do is found while the
# body is read, and refused in one 422 listing every unsupported parameter.


async def canonical_chat(context: RequestContext) -> None:
    context.work = canonical.chat_request(context.body, context.policy, context.serving())


async def canonical_completion(context: RequestContext) -> None:
    context.work = canonical.completion_request(context.body, context.policy, context.serving())


async def canonical_embeddings(context: RequestContext) -> None:
    context.embedding_work = embeddings.text_request(context.body, context.policy, context.serving())


async def canonical_image_embeddings(context: RequestContext) -> None:
    context.embedding_work = embeddings.image_request(context.body, context.policy, context.serving())


# --- before the engine runs ------------------------------------------------------------------


async def load(context: RequestContext) -> None:
    """The deployment's model loaded (on-demand deployments load here) and ready: else a 503."""
    deployment = context.serving()
    runtime = context.runtime
    try:
        await runtime.deployments.ensure_loaded(deployment, runtime.settings.max_loaded_models)
    except EngineDead as exc:
        log.error("deployment %s failed to load: %s", deployment.name, exc)
    deployment.ready()


async def count_prompt(context: RequestContext) -> None:
    """The prompt's tokens as the engine will read them (the chat template included), or a bound
    for them, and what the request reserves: the prompt plus the most each choice may generate."""
    deployment, work = context.serving(), context.work
    assert work is not None
    bound = admission.bound_prompt_tokens(deployment, work.request)
    context.prompt_bounded = bound is not None
    context.prompt_count = bound if bound is not None else await admission.prompt_tokens(deployment, work.request)
    most = work.request.max_tokens or deployment.max_tokens
    context.reserve_tokens = context.prompt_count + work.candidates * most


async def count_inputs(context: RequestContext) -> None:
    """The most tokens the inputs can be (the engine counts them as it embeds)."""
    assert context.embedding_work is not None
    context.reserve_tokens = admission.embedding_tokens(context.embedding_work.request)


async def reserve(context: RequestContext) -> None:
    """Charge one request and its tokens against the deployment's and the key's quotas (429)."""
    runtime = context.runtime
    charged = admission.scopes(context.serving(), context.principal)
    await admission.charge(runtime.quotas, runtime.metrics, context, charged, context.reserve_tokens)
    context.prompt_tokens = context.prompt_count  # from here on the prompt is charged, even if refused


async def screen_prompt(context: RequestContext) -> None:
    """Content safety on the prompt: a 400 ``content_filter`` when the policy blocks it; otherwise
    the results go on the response when the policy annotates."""
    safety = context.serving().safety
    if safety is None:
        return
    assert context.work is not None
    request = context.work.request
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
        context.prompt_tokens = 0  # not judged, never run: nothing to charge
        raise service_unavailable("content safety could not judge the prompt; retry shortly", retry_after=1)
    if verdict.blocked:
        context.fail(Outcome.CONTENT_FILTER)
        raise content_filtered(verdict.results, "messages" if request.messages is not None else "prompt")
    if safety.policy.annotate:
        context.prompt_filter_results = [{"prompt_index": 0, "content_filter_results": verdict.results}]


async def admit(context: RequestContext) -> None:
    """A place among the deployment's slots and queue: past them, a 429 with Retry-After."""
    try:
        context.take_slot()
    except ApiError:
        context.prompt_tokens = 0  # refused before the engine read anything
        raise


# --- the engine ------------------------------------------------------------------------------


async def generate(context: RequestContext) -> None:
    """Open the generation: every choice has its first event before the response starts."""
    context.generation = await until_disconnect(context, Generation.open(context))
    context.events = context.generation.events()


async def guard_output(context: RequestContext) -> None:
    """With content safety, completions are held back in windows until judged (see
    :mod:`aimi.safety.filter`); a cut choice ends with ``finish_reason: "content_filter"``."""
    safety, generation, events = context.serving().safety, context.generation, context.events
    if safety is None or generation is None or events is None:
        return
    context.events = _marking_cuts(context, safety.hold_back(_plain(events), generation.stop_choice))


async def _plain(events: AsyncIterator[Event | Annotation]) -> AsyncIterator[Event]:
    async for event in events:
        assert not isinstance(event, Annotation)
        yield event


async def _marking_cuts(
    context: RequestContext, events: AsyncIterator[Event | Annotation]
) -> AsyncIterator[Event | Annotation]:
    async for event in events:
        if isinstance(event, Finish) and event.reason in ("content_filter", "content_filter_error"):
            context.fail(Outcome.CONTENT_FILTER)
        yield event


async def embed(context: RequestContext) -> None:
    """Embed the inputs; the slot is given back as soon as the vectors are there."""
    deployment, work = context.serving(), context.embedding_work
    assert work is not None
    try:
        context.embedded = await until_disconnect(context, deployment.engine.embed(work.request))
    except (RequestFailed, EngineDead) as exc:
        if not (isinstance(exc, RequestFailed) and exc.client_error):
            context.fail(Outcome.ENGINE_ERROR)
        raise engine_error(exc, deployment=deployment) from None
    finally:
        context.release_slot()
    context.prompt_tokens = context.embedded.prompt_tokens


# --- after the request's own checks ----------------------------------------------------------


async def mirror(context: RequestContext) -> None:
    """Send the request to the endpoint's shadow deployment too, in the background; its answer is
    discarded and its failures never reach the client. It runs the shadow's own checks (its
    content safety refuses what it would refuse), but is charged to no quota and metered nowhere."""
    shadow = context.routed.shadow if context.routed is not None else None
    if shadow is None or not getattr(shadow.engine.capabilities, context.kind.value):
        return
    from aimi.pipeline import SHADOW_STEPS  # the lists are built from these steps

    copy = context.shadow(shadow)

    async def mirrored() -> None:
        try:
            for step in SHADOW_STEPS[context.kind]:
                await step(copy)
            if copy.events is not None:
                async for _ in copy.events:
                    pass
        except ApiError as exc:  # the shadow's own refusal: its content safety quietly, the rest for the operator
            level = logging.DEBUG if exc.code == "content_filter" else logging.INFO
            log.log(level, "shadow request to %s refused: %s", shadow.name, exc.message)
        except Exception as exc:  # a shadow's failure never reaches the client
            log.info("shadow request to %s failed: %s", shadow.name, exc)
        finally:
            if copy.generation is not None:
                await copy.generation.close()
            copy.release_slot()

    context.runtime.spawn(mirrored())

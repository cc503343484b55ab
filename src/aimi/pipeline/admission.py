"""Quota admission: reserve a request and its tokens before the engine runs.

The reservation is the prompt's tokens plus what the request may generate: ``max_tokens`` for
each choice it asks for, or the default reservation when it sets none
(:func:`completion_reservation`). It is charged atomically against the
deployment's and the key's limits, and settled to the true usage when the request ends
(:mod:`aimi.pipeline.settle`).

The prompt's tokens are a bound where the engine gave one (:class:`aimi.engines.api.PromptBound`:
the chat template's share, measured when the model loaded, plus a token per byte of text), so
that no engine call precedes the generation; else the engine's own count, chat template
included. Like Azure OpenAI's estimate from the prompt's characters, a bound is never less than
the true count, and the request is settled to the engine's count when it ends.
"""

from __future__ import annotations

import math

from aimi.auth.keys import Principal
from aimi.deployments.registry import Deployment
from aimi.engines.api import EmbeddingRequest, EngineBusy, GenerationRequest
from aimi.pipeline.context import RequestContext
from aimi.protocol.errors import ApiError, service_unavailable
from aimi.quota.api import Decision, Refusal, Scope
from aimi.quota.gate import Quotas, Unavailable
from aimi.usage.metrics import Metrics

_TEMPLATE_TOKENS_PER_TURN = 8


def estimate_prompt_tokens(request: GenerationRequest) -> int:
    """An upper bound for engines that cannot count: no token is shorter than one byte."""
    if request.messages is not None:
        return sum(len((t.content or "").encode()) + _TEMPLATE_TOKENS_PER_TURN for t in request.messages)
    return len((request.prompt or "").encode()) + 1


def embedding_tokens(request: EmbeddingRequest) -> int:
    """The most tokens an embeddings request can be: a byte each, and the model's markers."""
    if request.texts is not None:
        return sum(len(text.encode()) + 2 for text in request.texts)
    if request.token_ids is not None:
        return sum(len(ids) for ids in request.token_ids)
    return sum(1 + len((image.text or "").encode()) for image in request.images or ())


def bound_prompt_tokens(deployment: Deployment, request: GenerationRequest) -> int | None:
    """The engine's bound for the prompt, without a call to it; None where it has none."""
    bound = deployment.facts.prompt_bound if deployment.facts is not None else None
    if bound is None:
        return None
    if request.messages is not None:
        return bound.of(request.messages)
    return len((request.prompt or "").encode("utf-8", "surrogatepass")) + 2  # the text and its markers


async def prompt_tokens(deployment: Deployment, request: GenerationRequest) -> int:
    """The engine's count; an engine too busy to count (a full pool of replicas) is a 429."""
    try:
        counted = await deployment.engine.count_tokens(request)
    except EngineBusy as exc:
        raise ApiError("TooManyRequests", exc.message, retry_after=exc.retry_after) from None
    return counted if counted is not None else estimate_prompt_tokens(request)


def completion_reservation(max_tokens: int | None, cap: int, default: int) -> int:
    """What one choice reserves for its completion: its ``max_tokens``; without one, ``default``
    tokens (at most the deployment's ``cap``; 0: the whole cap).

    Reserving the whole cap for every request that sets no ``max_tokens`` let the token window,
    not the slots, limit short requests: 4,096 tokens each made 200,000 a minute about 48
    requests. Like Azure OpenAI, which rates a request by an estimate and settles it afterwards,
    the reservation is settled to the tokens generated, so a longer answer is charged in full
    when it ends (the window may then be passed by what in-flight answers generated beyond
    their reservation; a request that sets ``max_tokens`` is held to the window exactly).
    """
    if max_tokens is not None:
        return max_tokens
    return min(default, cap) if default else cap


def scopes(deployment: Deployment, principal: Principal | None) -> list[Scope]:
    """What the request is charged against: its deployment and its key, where they have limits."""
    found = []
    if not deployment.quota.unlimited:
        found.append(Scope(f"deployment:{deployment.name}", deployment.quota))
    if principal is not None and principal.quota is not None and not principal.quota.unlimited:
        found.append(Scope(f"key:{principal.name}", principal.quota))
    return found


def _refused(decision: Decision, tokens: int) -> ApiError:
    scope = decision.scope or ""
    what = scope.replace(":", " '", 1) + "'" if ":" in scope else scope
    if decision.refusal is Refusal.TOO_LARGE:
        return ApiError(
            "TooManyRequests",
            f"this request reserves {tokens} tokens (its prompt plus max_tokens), more than the tokens per minute "
            f"of {what}; lower max_tokens",
            headers={"x-should-retry": "false"},  # no Retry-After, and OpenAI's SDK must not retry either
        )
    reason = {
        Refusal.REQUESTS: "requests per minute",
        Refusal.TOKENS: "tokens per minute",
        Refusal.CONCURRENCY: "concurrent requests",
    }[decision.refusal or Refusal.REQUESTS]
    retry = decision.retry_after if decision.retry_after is not None else 1.0
    return ApiError(
        "TooManyRequests",
        f"rate limit of {what} reached ({reason}); retry after {math.ceil(retry)} second(s)",
        retry_after=retry,
    )


async def charge(quotas: Quotas, metrics: Metrics, context: RequestContext, charged: list[Scope], tokens: int) -> None:
    """Reserve ``tokens`` and one request in every scope of ``charged``, or raise the 429 (or the
    503 when the shared backend is down and the policy is to fail closed)."""
    if not charged:
        return
    try:
        decision, reservation = await quotas.reserve(charged, tokens, context.id)
    except Unavailable as exc:
        raise service_unavailable(f"{exc}; retry shortly", retry_after=1) from None
    context.remaining = decision.remaining
    if not decision.admitted:
        metrics.rate_limited.labels((decision.scope or "").split(":")[0], str(decision.refusal)).inc()
        raise _refused(decision, tokens)
    context.reservation = reservation

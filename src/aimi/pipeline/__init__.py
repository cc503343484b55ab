"""The request pipeline: for each kind of request, the ordered steps it runs.

A handler reads the wire body onto the request's context (:mod:`aimi.pipeline.context`), calls
:func:`run`, and encodes what the steps left there. Each step (:mod:`aimi.pipeline.steps`) is a
small function over that one context. A step that does not apply to a kind is absent from its
list. Before the steps, the server's middleware gave the request an id, an access-log line and a
caller (the key); after the response, :func:`aimi.pipeline.settle.settle` closes its account.

    chat / completions               embeddings / image embeddings
    ------------------               -----------------------------
    route                            route
    authorise                        authorise
    canonicalise (+ capabilities)    canonicalise (+ capabilities)
    load                             load
    count_prompt                     count_inputs
    reserve                          reserve
    screen_prompt                    admit
    admit                            embed
    generate                         mirror
    guard_output
    mirror
    ... the response streams or is collected ...
    settle                           settle

A shadow copy (an endpoint's mirror) runs its kind's list without route, authorise, the counts,
reserve and mirror: it is charged to no quota, and the shadow's own checks (its content safety,
its slots) apply. Every kind mirrors at the same point, once its own request has passed its
checks and its generation (or its embedding) has begun.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aimi.pipeline import steps
from aimi.pipeline.context import Kind, RequestContext

Step = Callable[[RequestContext], Awaitable[None]]

STEPS: dict[Kind, tuple[Step, ...]] = {
    Kind.CHAT: (
        steps.route,
        steps.authorise,
        steps.canonical_chat,
        steps.load,
        steps.count_prompt,
        steps.reserve,
        steps.screen_prompt,
        steps.admit,
        steps.generate,
        steps.guard_output,
        steps.mirror,
    ),
    Kind.COMPLETIONS: (
        steps.route,
        steps.authorise,
        steps.canonical_completion,
        steps.load,
        steps.count_prompt,
        steps.reserve,
        steps.screen_prompt,
        steps.admit,
        steps.generate,
        steps.guard_output,
        steps.mirror,
    ),
    Kind.EMBEDDINGS: (
        steps.route,
        steps.authorise,
        steps.canonical_embeddings,
        steps.load,
        steps.count_inputs,
        steps.reserve,
        steps.admit,
        steps.embed,
        steps.mirror,
    ),
    Kind.IMAGE_EMBEDDINGS: (
        steps.route,
        steps.authorise,
        steps.canonical_image_embeddings,
        steps.load,
        steps.count_inputs,
        steps.reserve,
        steps.admit,
        steps.embed,
        steps.mirror,
    ),
}

_NOT_FOR_SHADOWS = {steps.route, steps.authorise, steps.count_prompt, steps.count_inputs, steps.reserve, steps.mirror}
SHADOW_STEPS: dict[Kind, tuple[Step, ...]] = {
    kind: tuple(step for step in listed if step not in _NOT_FOR_SHADOWS) for kind, listed in STEPS.items()
}


async def run(context: RequestContext, listed: Sequence[Step] | None = None) -> RequestContext:
    """Run the steps of the request's kind (or ``listed``) in order; the first refusal raises."""
    for step in STEPS[context.kind] if listed is None else listed:
        await step(context)
    return context

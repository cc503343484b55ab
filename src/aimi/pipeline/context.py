"""One request's context: what each pipeline step reads, and what it leaves for the next.

The context middleware (:mod:`aimi.server.middleware.context`) opens a :class:`RequestContext`
for every inference request before the handler reads a byte, and settles it exactly once when the
request ends, however it ends. In between, the handler puts the wire body on it and the steps of
:mod:`aimi.pipeline` fill it in, in order: where it goes, the canonical request, the reservation,
the generation. The usage record is built from it at the end (:func:`aimi.pipeline.settle.settle`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Receive, Scope

from aimi.auth.keys import Principal
from aimi.deployments.registry import Deployment, Routed
from aimi.engines.api import Embeddings
from aimi.pipeline.controls import Work
from aimi.pipeline.embeddings import EmbeddingWork
from aimi.pipeline.extra_parameters import Policy
from aimi.protocol.ids import new_id
from aimi.quota.api import Remaining, Reservation
from aimi.runtime import Runtime
from aimi.usage.records import Outcome

if TYPE_CHECKING:
    from aimi.engines.api import Event
    from aimi.pipeline.generation import Generation
    from aimi.safety.filter import Annotation


AZURE_OPENAI = "azure-openai"
"""The surface of the Azure OpenAI data plane, /openai/deployments/{name}/...: OpenAI's wire."""


class Kind(StrEnum):
    """What a request asks for; each kind runs its own list of steps."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    IMAGE_EMBEDDINGS = "image_embeddings"

    @property
    def what(self) -> str:
        """The kind in words, for messages."""
        return {"chat": "chat completions", "completions": "text completions"}.get(self.value, self.replace("_", " "))


async def _no_client() -> Message:
    """The receive of a request no client waits for (a shadow copy): it never disconnects."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable")


@dataclass
class RequestContext:
    """Everything known about one request, field by field in the order the steps learn it."""

    runtime: Runtime
    kind: Kind
    surface: str  # "azure", "openai" or "azure-openai": the surface whose route was called
    id: str = field(default_factory=new_id)
    principal: Principal | None = None
    receive: Receive = _no_client  # the client's side of the connection: its disconnect
    started: float = field(default_factory=time.monotonic)
    wall: datetime = field(default_factory=lambda: datetime.now(UTC))

    # The request as the handler read it.
    body: Any = None
    policy: Policy = Policy.ERROR
    model: str | None = None  # the deployment asked for: azureml-model-deployment, else the body's model
    pinned: str | None = None  # the deployment named by the path, /deployments/{name}/...

    # Filled in by the steps.
    routed: Routed | None = None
    deployment: Deployment | None = None
    work: Work | None = None
    embedding_work: EmbeddingWork | None = None
    prompt_count: int = 0  # the prompt's tokens as counted before the engine runs
    prompt_bounded: bool = False  # prompt_count is a bound, not the engine's count (admission.prompt_tokens)
    reserve_tokens: int = 0
    reservation: Reservation | None = None
    remaining: Remaining | None = None
    prompt_filter_results: list[dict[str, Any]] | None = None
    holds_slot: bool = False
    generation: Generation | None = None
    events: AsyncIterator[Event | Annotation] | None = None
    embedded: Embeddings | None = None  # the engine's vectors

    # The account: what the request is charged, and how it went.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token: float | None = None
    last_token: float | None = None
    gaps: list[float] = field(default_factory=list)
    outcome: Outcome | None = None

    @property
    def key(self) -> str | None:
        """The caller's name (a key's, never its secret)."""
        return self.principal.name if self.principal is not None else None

    def serving(self) -> Deployment:
        """The deployment the request was routed to (the route step ran)."""
        assert self.deployment is not None, "the route step comes first"
        return self.deployment

    def token(self) -> None:
        """A piece of output was produced (for time to first token and inter-token latency)."""
        now = time.monotonic()
        if self.first_token is None:
            self.first_token = now
        elif self.last_token is not None:
            self.gaps.append(now - self.last_token)
        self.last_token = now

    def fail(self, outcome: Outcome) -> None:
        """Mark how the request ended, if nothing marked it before."""
        if self.outcome is None:
            self.outcome = outcome

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.started) * 1000

    def take_slot(self) -> None:
        """Count the request into its deployment's slots and queue (429 past them)."""
        self.serving().ready().admit()
        self.holds_slot = True

    def release_slot(self) -> None:
        """Give the slot back; at most once."""
        if self.holds_slot:
            self.holds_slot = False
            self.serving().release()

    def shadow(self, deployment: Deployment) -> RequestContext:
        """A copy of this request for a shadow deployment: same body, its own account."""
        return RequestContext(
            self.runtime,
            self.kind,
            self.surface,
            id=f"{self.id}-shadow",
            body=self.body,
            policy=self.policy,
            routed=Routed(deployment, deployment.name),
            deployment=deployment,
        )


def context_of(scope: Scope) -> RequestContext:
    """The context the context middleware opened for this request."""
    context: RequestContext = scope["state"]["context"]
    return context

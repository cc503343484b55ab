"""What one request may ask of a deployment, and the sampling it gets when it asks for none.

Each is one model, declared once with its bounds: the server's values are a :class:`~aimi.settings.Settings`
field (``AIMI_MAX_TOKENS_LIMIT``, ``AIMI_DEFAULT_TEMPERATURE``, ...), and a deployments file's
``[deployments.limits]`` or ``[deployments.defaults]`` table is the same model, read as overrides
over the server's values (see :func:`overlay`).
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """Per-deployment bounds on what one request may ask for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: Annotated[int, Field(ge=1)] = Field(
        4096, description="Largest max_tokens a request may ask for (also capped by the context)."
    )
    max_messages: Annotated[int, Field(ge=1)] = Field(1024, description="Most messages accepted in one chat request.")
    max_queue: Annotated[int, Field(ge=0)] = Field(
        64, description="Requests that may wait for a slot; past this, 429 with Retry-After."
    )
    max_n: Annotated[int, Field(ge=1)] = Field(8, description="Most choices (n) one request may ask for.")
    max_best_of: Annotated[int, Field(ge=1)] = Field(
        8, description="Most candidates (best_of) one request may ask for."
    )
    max_logit_bias: Annotated[int, Field(ge=0)] = Field(
        300, description="Most tokens one request's logit_bias may name."
    )
    max_tools: Annotated[int, Field(ge=1)] = Field(64, description="Most tools one request may offer.")
    max_embedding_inputs: Annotated[int, Field(ge=1)] = Field(
        2048, description="Most inputs one embeddings request may hold."
    )
    max_embedding_chars: Annotated[int, Field(ge=1)] = Field(
        100_000, description="Longest text (characters) or token array one embedding input may be."
    )
    max_image_bytes: Annotated[int, Field(ge=1024)] = Field(
        8 * 1024 * 1024, description="Largest decoded image an input may carry."
    )


class SamplingDefaults(BaseModel):
    """Sampling for requests that set none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: Annotated[float, Field(ge=0, le=2)] = Field(
        0.7, description="Temperature when a request sets none (the Azure spec's default)."
    )
    top_p: Annotated[float, Field(gt=0, le=1)] | None = Field(None, description="top_p when a request sets none.")
    max_tokens: Annotated[int, Field(ge=1)] | None = Field(
        None, description="max_tokens when a request sets none (None: until the model stops or the context is full)."
    )


Model = TypeVar("Model", bound=BaseModel)


def overlay(base: Model, given: Model) -> Model:
    """``base`` with the fields ``given`` was built with explicitly: a file's table names only what
    it changes, and an absent field keeps the server's value."""
    return base.model_copy(update={name: getattr(given, name) for name in given.model_fields_set})

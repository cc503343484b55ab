"""Wire models of the legacy text completion route (``POST /completions``, ``/v1/completions``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from aimi.protocol.chat import MAX_STOP_SEQUENCES, Penalty, StreamOptions, Temperature


class AzureCompletionRequest(BaseModel):
    """The body of the Azure ``POST /completions`` (2024-04-01-preview docs)."""

    model_config = ConfigDict(extra="allow")

    prompt: str | Annotated[list[str], Field(min_length=1)] | Annotated[list[int], Field(min_length=1)]
    model: str | None = None
    stream: bool | None = False
    temperature: Temperature | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    stop: str | Annotated[list[str], Field(min_length=1, max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = None


class OpenAICompletionRequest(AzureCompletionRequest):
    """The body of OpenAI's ``POST /v1/completions``."""

    n: Annotated[int, Field(ge=1)] | None = None
    best_of: Annotated[int, Field(ge=1)] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool | None = None
    suffix: str | None = None
    logit_bias: dict[str, float] | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None

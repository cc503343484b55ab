"""Generation controls the gateway itself carries out, whichever surface they came from.

On the OpenAI surface ``n``, ``logprobs``, ``top_logprobs`` and ``logit_bias`` are fields of the
body; the rest (and all of them on the Azure surface) are the extra parameters Azure's Mistral
and Llama pages list, honoured under ``extra-parameters: pass-through``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from aimi.engines.api import GenerationRequest
from aimi.pipeline.tools import ToolPlan
from aimi.pipeline.validation import parse
from aimi.protocol.errors import invalid_request

GATEWAY_PARAMETERS = frozenset({
    "n", "best_of", "logprobs", "top_logprobs", "logit_bias", "use_beam_search", "stop_token_ids",
    "skip_special_tokens", "safe_prompt",
})  # fmt: skip
MAX_STOP_TOKEN_IDS = 64


class Controls(BaseModel):
    """The gateway's controls, typed and bounded."""

    model_config = ConfigDict(extra="forbid")

    n: Annotated[int, Field(ge=1)] = 1
    best_of: Annotated[int, Field(ge=1)] | None = None
    # Llama's extra-parameter table gives logprobs as an integer: that many alternatives.
    logprobs: bool | Annotated[int, Field(ge=0, le=20)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    use_beam_search: bool | None = None
    stop_token_ids: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=MAX_STOP_TOKEN_IDS)] | None = None
    skip_special_tokens: bool | None = None
    safe_prompt: bool | None = None

    def top_logprobs_count(self) -> int | None:
        """None when no logprobs were asked for, else the number of alternatives per token."""
        if self.logprobs is True:
            return self.top_logprobs or 0
        if isinstance(self.logprobs, int) and self.logprobs is not False:
            return self.logprobs
        if self.top_logprobs is not None:
            raise invalid_request("`top_logprobs` needs `logprobs: true`", param="top_logprobs")
        return None

    def token_bias(self) -> dict[int, float]:
        bias: dict[int, float] = {}
        for key, value in (self.logit_bias or {}).items():
            if not (key.isascii() and key.isdigit()):
                raise invalid_request(f"`logit_bias` keys must be token ids; got {key!r}", param="logit_bias")
            bias[int(key)] = value
        return bias


def read_controls(values: dict[str, Any]) -> Controls:
    """The controls of a request, or a 400 naming the field and the rule."""
    return parse(Controls, values)


@dataclass
class Work:
    """A canonical request and what the gateway does around it: ``n`` choices (fanned out over
    the engine), the best ``n`` of ``best_of`` by mean token log-probability, tools."""

    request: GenerationRequest
    n: int = 1
    best_of: int | None = None
    tools: ToolPlan | None = None

    @property
    def stream(self) -> bool:
        """Whether the client reads the answer as it comes (the request says it to the engine)."""
        return self.request.stream

    @property
    def candidates(self) -> int:
        return max(self.n, self.best_of or 1)

"""Wire models of ``POST /chat/completions`` on both surfaces.

The Azure request knows exactly the keys of the Azure AI Model Inference spec; every other
top-level key is an *extra parameter*, handled by the ``extra-parameters`` policy. The OpenAI
request knows OpenAI's keys on top of those. Unknown keys are kept (``extra="allow"``) so the
policy can name them; nested objects ignore unknown keys, as OpenAI does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Temperature = Annotated[float, Field(ge=0, le=2)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
MAX_STOP_SEQUENCES = 16


class _Nested(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Nested):
    type: Literal["text"]
    text: str


class ImageUrl(_Nested):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Nested):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(_Nested):
    data: str
    format: str


class AudioPart(_Nested):
    type: Literal["input_audio"]
    input_audio: InputAudio


class AudioUrlPart(_Nested):
    type: Literal["audio_url"]
    audio_url: dict[str, Any]


ContentPart = Annotated[TextPart | ImagePart | AudioPart | AudioUrlPart, Field(discriminator="type")]


class FunctionCall(_Nested):
    name: str
    # The Azure Python SDK sends whatever object it is given here; a dict is accepted and
    # turned into its JSON text before it reaches a chat template.
    arguments: str | dict[str, Any]


class ToolCall(_Nested):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Nested):
    role: Literal["system"]
    content: str | list[TextPart]


class DeveloperMessage(_Nested):
    role: Literal["developer"]
    content: str | list[TextPart]


class UserMessage(_Nested):
    role: Literal["user"]
    content: str | list[ContentPart]
    name: str | None = None


class AssistantMessage(_Nested):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None


class ToolMessage(_Nested):
    role: Literal["tool"]
    tool_call_id: str
    content: str | list[TextPart] | None = None


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage,
    Field(discriminator="role"),
]


class JsonSchemaFormat(_Nested):
    name: Annotated[str, Field(max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    schema_: Annotated[dict[str, Any], Field(alias="schema")]
    description: str | None = None
    strict: bool | None = False


class ResponseFormat(_Nested):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDefinition(_Nested):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Nested):
    type: Literal["function"]
    function: FunctionDefinition


class NamedToolChoice(_Nested):
    type: Literal["function"]
    function: dict[str, str]


class AzureChatRequest(BaseModel):
    """The body of the Azure ``POST /chat/completions`` (``ChatCompletionsOptions``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    messages: Annotated[list[Message], Field(min_length=1)]
    model: str | None = None
    stream: bool | None = False
    temperature: Temperature | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    stop: str | Annotated[list[str], Field(min_length=1, max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[Tool], Field(min_length=1)] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    # Azure's service takes OpenAI's newer name for max_tokens, and parallel_tool_calls.
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    parallel_tool_calls: bool | None = None


class StreamOptions(_Nested):
    include_usage: bool | None = False


class OpenAIChatRequest(AzureChatRequest):
    """The body of OpenAI's ``POST /v1/chat/completions``: the Azure keys plus OpenAI's own."""

    n: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None

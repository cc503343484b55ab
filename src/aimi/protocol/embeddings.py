"""Wire models of ``POST /embeddings``, ``/images/embeddings`` and OpenAI's ``/v1/embeddings``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

EncodingFormat = Literal["float", "base64", "int8", "uint8", "binary", "ubinary"]
InputType = Literal["text", "query", "document"]


class AzureEmbeddingsRequest(BaseModel):
    """The body of the Azure ``POST /embeddings`` (``EmbeddingsOptions``); a single string is
    accepted too, as OpenAI clients send it."""

    model_config = ConfigDict(extra="allow")

    input: str | Annotated[list[str], Field(min_length=1)]
    dimensions: Annotated[int, Field(ge=1)] | None = None
    encoding_format: EncodingFormat | None = None
    input_type: InputType | None = None
    model: str | None = None


class OpenAIEmbeddingsRequest(AzureEmbeddingsRequest):
    """OpenAI's ``POST /v1/embeddings``: token arrays are inputs too."""

    input: (  # type: ignore[assignment]
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1)]
    )
    user: str | None = None


class ImageEmbeddingInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str
    text: str | None = None


class AzureImageEmbeddingsRequest(BaseModel):
    """The body of the Azure ``POST /images/embeddings`` (``ImageEmbeddingsOptions``)."""

    model_config = ConfigDict(extra="allow")

    input: Annotated[list[ImageEmbeddingInput], Field(min_length=1)]
    dimensions: Annotated[int, Field(ge=1)] | None = None
    encoding_format: EncodingFormat | None = None
    input_type: InputType | None = None
    model: str | None = None

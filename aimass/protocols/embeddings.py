"""Wire types for /v1/embeddings (OpenAI) and /v1/rerank (the Jina / Cohere / Xinference shape).

Embeddings take ``input`` as a string, a list of strings, a list of token ids or a list of
such lists, as OpenAI does; image models take a list of ``{"image": "<data URL or base64>"}``
objects (or one such object). ``truncate`` is our extension: by default an input longer than
the model's limit is refused (400 naming the limit); with ``truncate: true`` it is cut.
Rerank documents may be strings or ``{"text": ...}`` objects; documents are always cut to the
model's limit (query and document together), as Cohere and Jina do. Types are strict: ``0``
is not a boolean, ``"8"`` is not a number.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from aimass.protocols.images import ImageInput

TokenIds = list[StrictInt]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1)
    input: StrictStr | list[StrictStr] | TokenIds | list[TokenIds] | ImageInput | list[ImageInput]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    truncate: bool = False
    """Cut over-long inputs to the model's limit instead of refusing them (extension)."""

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value):
        if isinstance(value, str):
            if not value:
                raise ValueError("input must not be an empty string")
            return value
        if isinstance(value, ImageInput):
            return value
        if not value:
            raise ValueError("input must not be an empty list")
        for i, item in enumerate(value):
            if isinstance(item, str | list) and len(item) == 0:
                raise ValueError(f"input[{i}] must not be empty")
        return value

    def images(self) -> list[str] | None:
        """The images (data URLs or base64) when ``input`` holds images, else None."""
        value = self.input
        if isinstance(value, ImageInput):
            return [value.image]
        if value and isinstance(value, list) and isinstance(value[0], ImageInput):
            return [item.image for item in value]
        return None

    def items(self) -> list[str | list[int]]:
        """The inputs as a list: each one a text or a list of token ids."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]  # one list of token ids
        return list(value)


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    text: StrictStr


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1)
    query: StrictStr = Field(min_length=1)
    documents: list[StrictStr | RerankDocument] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage

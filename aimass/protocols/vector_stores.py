"""Wire types of /v1/vector_stores (OpenAI's Vector Stores API) and AI Mass's extensions.

Requests follow OpenAI's shapes, so the official SDK works unchanged. Extensions (documented in
docs/vector_stores.md): ``embedding_model`` on create (default the built-in all-MiniLM-L6-v2),
and ``search_mode`` (``vector``, ``keyword`` or ``hybrid``, the default) and ``rerank_model`` on
search. Attribute values are strings (at most 512 characters), numbers or booleans, at most 16
keys, as OpenAI allows; metadata is at most 16 string pairs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

AttributeValue = StrictStr | StrictBool | StrictInt | StrictFloat
FileId = Annotated[StrictStr, Field(min_length=1, max_length=40)]
MAX_ATTRIBUTES = 16
MAX_FILTER_DEPTH = 8


def _check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"attribute key {key[:20]!r}... is longer than 64 characters")
        if isinstance(item, str) and len(item) > 512:
            raise ValueError(f"attribute {key!r} is longer than 512 characters")
    return value


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("at most 16 metadata pairs")
    for key, item in value.items():
        if len(key) > 64 or len(item) > 512:
            raise ValueError("metadata keys are at most 64 characters, values at most 512")
    return value


class StaticChunking(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max_chunk_size_tokens: int = Field(ge=100, le=4096)
    chunk_overlap_tokens: int = Field(ge=0)


class ChunkingStrategy(BaseModel):
    """``{"type": "auto"}`` or ``{"type": "static", "static": {...}}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["auto", "static"]
    static: StaticChunking | None = None


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class VectorStoreCreate(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    name: str | None = Field(default=None, max_length=255)
    file_ids: list[FileId] | None = Field(default=None, max_length=500)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: dict[str, StrictStr] | None = None
    expires_after: ExpiresAfter | None = None
    description: str | None = Field(default=None, max_length=512)
    embedding_model: str | None = Field(default=None, min_length=1, max_length=160)
    """AI Mass extension: the embedding model (``name`` or ``name:version``) of the store."""
    image_model: str | None = Field(default=None, min_length=1, max_length=160)
    """AI Mass extension: the image-embedding model of the store's image files (default: the
    setting ``vector_store_image_model`` when the server serves it)."""

    _metadata = field_validator("metadata")(check_metadata)


class VectorStoreUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    name: str | None = Field(default=None, max_length=255)
    metadata: dict[str, StrictStr] | None = None
    expires_after: ExpiresAfter | None = None

    _metadata = field_validator("metadata")(check_metadata)


class FileCounts(BaseModel):
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    total: int


class VectorStore(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"]
    expires_after: ExpiresAfter | None = None
    expires_at: int | None = None
    last_active_at: int | None = None
    metadata: dict[str, str]
    embedding_model: str
    """AI Mass extension: the store's embedding model."""
    image_model: str | None = None
    """AI Mass extension: the store's image-embedding model (``None``: images are found by
    their text only)."""


class VectorStoreList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStore]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class VectorStoreDeleted(BaseModel):
    id: str
    object: Literal["vector_store.deleted"] = "vector_store.deleted"
    deleted: bool


class VectorStoreFileCreate(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    file_id: str = Field(min_length=1, max_length=40)
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: ChunkingStrategy | None = None

    _attributes = field_validator("attributes")(_check_attributes)


class VectorStoreFileUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    attributes: dict[str, AttributeValue] | None

    _attributes = field_validator("attributes")(_check_attributes)


class FileBatchCreate(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    file_ids: list[FileId] = Field(min_length=1, max_length=500)
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: ChunkingStrategy | None = None

    _attributes = field_validator("attributes")(_check_attributes)


class LastError(BaseModel):
    code: Literal["server_error", "unsupported_file", "invalid_file"]
    message: str


class ChunkSizes(BaseModel):
    """The sizes a file was chunked with (``auto`` may be below 100 for a small model)."""

    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class StaticChunkingStrategy(BaseModel):
    type: Literal["static"] = "static"
    static: ChunkSizes


class VectorStoreFile(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    usage_bytes: int
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    last_error: LastError | None = None
    chunking_strategy: StaticChunkingStrategy
    attributes: dict[str, AttributeValue] | None = None


class VectorStoreFileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStoreFile]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class VectorStoreFileDeleted(BaseModel):
    id: str
    object: Literal["vector_store.file.deleted"] = "vector_store.file.deleted"
    deleted: bool


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class FileContentPage(BaseModel):
    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[TextContent]
    has_more: bool = False
    next_page: str | None = None


class FileBatch(BaseModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts


class ComparisonFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    key: str = Field(min_length=1)
    value: AttributeValue | list[AttributeValue]

    @field_validator("value")
    @classmethod
    def _list_only_for_in(cls, value, info):
        kind = info.data.get("type")
        if kind in ("in", "nin") and not isinstance(value, list):
            raise ValueError(f"'{kind}' compares with a list of values")
        if kind not in ("in", "nin") and isinstance(value, list):
            raise ValueError(f"'{kind}' compares with one value, not a list")
        return value


class CompoundFilter(BaseModel):
    """``and`` / ``or`` of filters; each one a comparison or another compound filter (OpenAI
    types the nested ones as plain objects, and so does this schema; they are checked here)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["and", "or"]
    filters: list[dict[str, Any]] = Field(min_length=1, max_length=64)

    @field_validator("filters")
    @classmethod
    def _each_a_filter(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [parse_filter(f, depth=1) for f in value]


def parse_filter(value: Any, depth: int = 0) -> dict[str, Any]:
    """A filter as a plain dict, validated as a comparison or compound filter."""
    if depth > MAX_FILTER_DEPTH:
        raise ValueError(f"filters nest at most {MAX_FILTER_DEPTH} deep")
    if not isinstance(value, dict):
        raise ValueError("a filter is an object")
    if value.get("type") in ("and", "or"):
        if not isinstance(value.get("filters"), list) or not value["filters"]:
            raise ValueError("a compound filter has a non-empty list 'filters'")
        inner = [parse_filter(f, depth + 1) for f in value["filters"]]
        return {"type": value["type"], "filters": inner}
    return ComparisonFilter.model_validate(value).model_dump()


class RankingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    ranker: Literal["auto", "default-2024-11-15", "none"] = "auto"
    score_threshold: StrictFloat | StrictInt = Field(default=0.0, ge=0.0, le=1.0)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    query: StrictStr | list[StrictStr] | None = None
    """Required unless ``query_image`` is given."""
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: ComparisonFilter | CompoundFilter | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False
    search_mode: Literal["vector", "keyword", "hybrid"] = "hybrid"
    """AI Mass extension: vector (embeddings), keyword (BM25) or both fused by rank."""
    rerank_model: str | None = Field(default=None, min_length=1, max_length=160)
    """AI Mass extension: a loaded rerank model that reorders the candidates."""
    rerank_candidates: int = Field(default=50, ge=1, le=100)
    """AI Mass extension: how many of the search's best candidates ``rerank_model`` reads (at
    least ``max_num_results``); each costs one model pair."""
    rerank_fusion: Literal["none", "rrf"] = "none"
    """AI Mass extension: ``none``, the rerank order replaces the search's; ``rrf``, the two
    orders of the candidates are fused by reciprocal rank (the model's word counts, but one
    wrong judgement cannot bury what the search ranked first)."""
    query_vector: list[StrictFloat | StrictInt] | None = Field(
        default=None, min_length=1, max_length=8192
    )
    """AI Mass extension: search the index with this vector instead of the query's embedding
    (as Qdrant and Chroma allow); ``query`` is still the text keyword search reads."""
    query_image: str | None = Field(default=None, min_length=1)
    """AI Mass extension: an image (data URL or base64) to find the store's images nearest to
    it, by the store's image model; with ``query`` too, both rankings are fused."""

    @model_validator(mode="after")
    def _something_to_search(self):
        if self.query is None and self.query_image is None:
            raise ValueError("query (text) or query_image (an image) is required")
        return self

    @field_validator("query")
    @classmethod
    def _not_empty(cls, value):
        if value is None:
            return value
        texts = [value] if isinstance(value, str) else value
        if not texts or not all(t.strip() for t in texts):
            raise ValueError("query must hold non-blank text")
        if len(texts) > 16:
            raise ValueError("at most 16 queries")
        return value

    def queries(self) -> list[str]:
        if self.query is None:
            return []
        return [self.query] if isinstance(self.query, str) else list(self.query)

    def filter_dict(self) -> dict[str, Any] | None:
        return None if self.filters is None else parse_filter(self.filters.model_dump())


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, AttributeValue] | None = None
    content: list[TextContent]


class SearchResultsPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None

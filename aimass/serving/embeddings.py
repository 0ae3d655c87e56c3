"""The work behind /v1/embeddings and /v1/rerank, callable without HTTP.

Turns a validated request into one payload (one row per input), runs it through the model's
deployment, and shapes the answer. Tokenization happens in the replica, not here, so the
event loop never spends time on it; token counts come back with the outputs.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import numpy as np
import orjson

from aimass.config import Settings
from aimass.engine.deployment import Deployment
from aimass.errors import InvalidInput, PayloadTooLarge
from aimass.protocols.embeddings import EmbeddingRequest, RerankRequest
from aimass.refs import split_model
from aimass.serving.pipeline import CallContext, Pipeline
from aimass.serving.vision import VisionService, refuse_images

DIMENSIONS_OPTION = "supports_dimensions"


def estimate_tokens(texts: list[Any]) -> int:
    """A cheap guess for quota checks before tokenizing: about four characters a token."""
    return sum(len(t) // 4 + 2 if isinstance(t, str) else len(t) + 2 for t in texts)


class EmbeddingsService:
    """Embeddings and rerank over the engine; one per app."""

    def __init__(self, pipeline: Pipeline, settings: Settings):
        self.pipeline = pipeline
        self.settings = settings
        self.vision = VisionService(pipeline, settings)

    async def embeddings(self, ctx: CallContext, req: EmbeddingRequest) -> dict[str, Any]:
        images = req.images()
        if images is not None:
            vectors = await self.vision.embeddings(ctx, req.model, images, req.dimensions)
            return _embedding_list(req, vectors, len(images))
        name, version = split_model(req.model)
        items = req.items()
        async with self.pipeline.call(ctx, name, version, estimate=estimate_tokens(items)) as call:
            dep = call.deployment
            refuse_images(dep, req.model)
            _check_task(dep, req.model, "embedding", "/v1/embeddings")
            self._check_count(len(items), "input")
            dimensions = self._check_dimensions(dep, req.dimensions)
            payload = {"text": _objects(items), "truncate": np.full(len(items), req.truncate)}
            out = await call.infer(payload)
            tokens = int(out["tokens"].sum())
            call.tokens(prompt=tokens)
        vectors = out["embedding"]
        if dimensions is not None:
            vectors = _shorten(vectors, dimensions, bool(dep.info.get("normalize", True)))
        return _embedding_list(req, vectors, tokens)

    async def rerank(self, ctx: CallContext, req: RerankRequest) -> dict[str, Any]:
        name, version = split_model(req.model)
        documents = req.texts()
        estimate = estimate_tokens([req.query, *documents])
        async with self.pipeline.call(ctx, name, version, estimate=estimate) as call:
            _check_task(call.deployment, req.model, "rerank", "/v1/rerank")
            self._check_count(len(documents), "documents")
            queries = _objects([req.query] * len(documents))
            out = await call.infer({"query": queries, "document": _objects(documents)})
            tokens = int(out["tokens"].sum())
            call.tokens(prompt=tokens)
        scores = out["score"].astype(np.float64)
        order = np.argsort(-scores, kind="stable")[: req.top_n or len(documents)]
        results = []
        for i in order:
            result: dict[str, Any] = {"index": int(i), "relevance_score": float(scores[i])}
            if req.return_documents:
                result["document"] = {"text": documents[i]}
            results.append(result)
        return {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": req.model,
            "results": results,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _check_count(self, count: int, field: str) -> None:
        limit = self.settings.max_items_per_request
        if count > limit:
            raise PayloadTooLarge(
                f"{field} has {count} items; the limit is {limit} (setting max_items_per_request)",
                param=field,
            )

    @staticmethod
    def _check_dimensions(dep: Deployment, dimensions: int | None) -> int | None:
        if dimensions is None:
            return None
        if not dep.spec.options.get(DIMENSIONS_OPTION):
            raise InvalidInput(
                f"model {dep.spec.name!r} does not support 'dimensions' "
                f"(its spec does not set options.{DIMENSIONS_OPTION})",
                param="dimensions",
            )
        full = int(dep.info.get("dimensions") or 0)
        if full and dimensions > full:
            raise InvalidInput(
                f"dimensions {dimensions} is larger than the model's {full}", param="dimensions"
            )
        return dimensions


def _embedding_list(req: EmbeddingRequest, vectors: np.ndarray, tokens: int) -> dict[str, Any]:
    """OpenAI's answer; ``tokens`` are the inputs' tokens (for images: one per image)."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _check_task(dep: Deployment, ref: str, task: str, path: str) -> None:
    if dep.spec.task != task:
        raise InvalidInput(
            f"model {ref!r} has task {dep.spec.task!r}; {path} needs a {task!r} model",
            param="model",
        )


def _objects(items: list[Any]) -> np.ndarray:
    """A 1-d object array holding each item as is (lists of ids stay lists)."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def _shorten(vectors: np.ndarray, dimensions: int, renormalize: bool) -> np.ndarray:
    """Keep the first ``dimensions`` values (Matryoshka models), unit length again if needed."""
    cut = vectors[:, :dimensions]
    if not renormalize:
        return cut
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def _encode(vector: np.ndarray, encoding_format: str) -> np.ndarray | str:
    """A float32 array (written as JSON numbers by ``render``), or base64 of its bytes."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return np.ascontiguousarray(vector, dtype=np.float32)


def render(answer: dict[str, Any]) -> bytes:
    """JSON bytes; numpy arrays are written by orjson directly (float32's shortest form).

    Writing the floats is most of an embeddings response's cost; json.dumps on Python floats
    took about a third of the server's CPU under load, orjson a small fraction of that.
    """
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)

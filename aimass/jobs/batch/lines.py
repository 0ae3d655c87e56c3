"""One batch line sent through the serving path, as the online route would send it.

The line's body goes to the same service the route calls (``EmbeddingsService``,
``LLMService``, ``TensorService``) with a ``CallContext`` of the batch's owner, so it passes the
same authorization, limits, usage and metrics; the answer is the body the route would have
written, or the error body it would have rendered, with its status code.
"""

from __future__ import annotations

from typing import Any

import orjson

from aimass.errors import AimassError, InvalidInput
from aimass.jobs.batch.validate import V2_INFER, request_model
from aimass.protocols import openai as oa
from aimass.protocols.embeddings import EmbeddingRequest, RerankRequest
from aimass.refs import parse_version
from aimass.serving.embeddings import EmbeddingsService
from aimass.serving.llm import LLMService
from aimass.serving.pipeline import CallContext
from aimass.serving.tensors import TensorService


def error_body(endpoint: str, exc: AimassError) -> dict[str, Any]:
    """The error body the route would render: the v2 shape under /v2, OpenAI's elsewhere."""
    if endpoint.startswith("/v2/"):
        return {"error": exc.message}
    return {
        "error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    }


class LineSender:
    """Sends the lines of batches to the serving services of one server."""

    def __init__(
        self, embeddings: EmbeddingsService, llm: LLMService, tensors: TensorService
    ) -> None:
        self.embeddings, self.llm, self.tensors = embeddings, llm, tensors

    async def send(self, ctx: CallContext, endpoint: str, body: dict[str, Any]) -> Any:
        """The answer body of one request (raises the ``AimassError`` the route would)."""
        if endpoint.startswith("/v2/"):
            return await self._infer(ctx, endpoint, body)
        request = request_model(endpoint).model_validate(body)
        if isinstance(request, EmbeddingRequest):
            return await self.embeddings.embeddings(ctx, request)
        if isinstance(request, RerankRequest):
            return await self.embeddings.rerank(ctx, request)
        if isinstance(request, oa.ChatCompletionRequest):
            return await self.llm.chat(ctx, request)
        return await self.llm.completion(ctx, request)

    async def _infer(self, ctx: CallContext, endpoint: str, body: dict[str, Any]) -> Any:
        name, version = V2_INFER.match(endpoint).groups()
        number = parse_version(version, "the version in the endpoint") if version else None
        call = await self.tensors.open(ctx, name, number)
        answer = await self.tensors.infer(call, orjson.dumps(body))
        if answer.binary:
            raise InvalidInput(
                "a batch writes JSON: ask for outputs without binary_data", param="parameters"
            )
        return orjson.loads(answer.head)

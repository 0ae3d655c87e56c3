"""The work behind v2 ``infer``: tensors in, tensors out, callable without HTTP.

A request is opened (authorized, admitted) before its body is read: a full queue refuses with
429 before a large body is read or decoded, which keeps overload answers cheap
(benchmarks/bench_overload.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from aimass.errors import InvalidInput
from aimass.protocols.v2 import codec
from aimass.serving.pipeline import CallContext, ModelCall, Pipeline
from aimass.serving.vision import bytes_inputs, is_image_model, triton_classification


@dataclass
class TensorAnswer:
    """A v2 response: its JSON header and, for Triton's binary extension, the tensor bytes."""

    head: bytes
    binary: bytes


def timeout_parameter(params: dict | None) -> float | None:
    """Triton's ``timeout`` request parameter (µs) as seconds, or None when absent."""
    if not params or "timeout" not in params:
        return None
    value = params["timeout"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidInput("parameter 'timeout' must be a positive number of microseconds")
    return value / 1e6


class TensorService:
    """v2 inference over the pipeline; one per server."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    async def open(self, ctx: CallContext, name: str, version: int | None) -> ModelCall:
        """Authorize and admit a request before its body is read: a full queue answers 429
        without reading or decoding anything. The call must then go to ``infer``."""
        call = await self.pipeline.open(ctx, name, version)
        try:
            call.admit()
        except BaseException as exc:
            raise call.finish(exc) from None
        return call

    async def infer(
        self, call: ModelCall, body: bytes, header_length: str | None = None
    ) -> TensorAnswer:
        """Decode, batch and run an admitted request, and finish its call; ``header_length`` is
        the ``Inference-Header-Content-Length`` of a binary request."""
        dep = call.deployment
        try:
            req, tail = codec.parse_body(body, header_length)
            images = is_image_model(dep)
            payload = codec.decode_inputs(req, tail, dep.info.get("inputs", []), raw_bytes=images)
            if images:  # encoded files, one per row; one usage unit per image
                payload = bytes_inputs(payload, dep)
                call.tokens(prompt=sum(len(a) for a in payload.values()))
            timeout_s = timeout_parameter(req.parameters)
            if timeout_s is not None:
                call.ctx.timeout_s, call.ctx.timeout_source = timeout_s, "parameter 'timeout'"
            outputs = await call.infer(payload)
            if images:
                requested = [(o.name, o.parameters or {}) for o in req.outputs or []]
                outputs = triton_classification(outputs, requested, dep.info.get("labels"))
        except BaseException as exc:
            raise call.finish(exc) from None
        call.finish()
        entries, binary = codec.encode_outputs(outputs, req)
        answer = {
            "model_name": call.name,
            "model_version": str(dep.spec.version),
            "outputs": entries,
        }
        if req.id is not None:
            answer["id"] = req.id
        if req.parameters:
            answer["parameters"] = {
                k: v for k, v in req.parameters.items() if k != "binary_data_output"
            }
        return TensorAnswer(codec.dumps(answer), binary)

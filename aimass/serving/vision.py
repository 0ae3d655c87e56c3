"""The work behind /v1/images/classifications and image inputs of /v1/embeddings, without HTTP.

Images reach a replica as the encoded files they are: JSON's data URLs and base64 are turned
into bytes here (a C loop, with the model's ``max_image_bytes`` checked before decoding), while
decoding to pixels, resizing and the model run in the replica (``runtimes/vision``), so the
event loop never touches pixels. The rows of a request are batched with other requests'.

A model's modality is what its runtime reports (``modality: image`` in the deployment's info):
an image sent to a text model, or text to an image model, is a 400 naming the model's
modality. Usage counts one unit per image (``prompt_tokens``, so a key's rate and budget limits
cover images too); metrics are the deployment's, per model, as for every model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.config import Settings
from aimass.engine.deployment import Deployment
from aimass.errors import InvalidInput, PayloadTooLarge
from aimass.media.image import ImageLimits, image_from_data_url
from aimass.refs import split_model
from aimass.serving.pipeline import CallContext, Pipeline

IMAGE = "image"
Image = bytes | str
"""An image as a request holds it: the file's bytes (multipart) or its data URL / base64."""


class VisionService:
    """Image classification and image embeddings over the pipeline; one per server."""

    def __init__(self, pipeline: Pipeline, settings: Settings):
        self.pipeline = pipeline
        self.settings = settings

    async def classify(
        self, ctx: CallContext, model: str, images: list[Image], top_k: int
    ) -> dict[str, Any]:
        """The ``top_k`` classes of each image, most probable first."""
        name, version = split_model(model)
        self._check_count(len(images))
        async with self.pipeline.call(ctx, name, version, estimate=len(images)) as call:
            dep = call.deployment
            require_images(dep, model, "classification", "/v1/images/classifications")
            out = await call.infer({IMAGE: image_rows(images, dep, "images")})
            call.tokens(prompt=len(images))
        probabilities = out["probabilities"]
        labels = dep.info.get("labels")
        return {
            "object": "list",
            "model": model,
            "data": [
                {"object": "image.classification", "index": i, "labels": _top(row, top_k, labels)}
                for i, row in enumerate(probabilities)
            ],
            "usage": _usage(len(images)),
        }

    async def embeddings(
        self, ctx: CallContext, model: str, images: list[Image], dimensions: int | None
    ) -> np.ndarray:
        """/v1/embeddings for images: one vector per image (unit length unless the model's
        ``options.normalize`` is false). Shaped into the answer by ``EmbeddingsService``."""
        name, version = split_model(model)
        self._check_count(len(images))
        async with self.pipeline.call(ctx, name, version, estimate=len(images)) as call:
            dep = call.deployment
            require_images(dep, model, "embedding", "/v1/embeddings")
            if dimensions is not None:
                raise InvalidInput(
                    f"model {model!r} does not support 'dimensions'", param="dimensions"
                )
            out = await call.infer({IMAGE: image_rows(images, dep, "input")})
            call.tokens(prompt=len(images))
        return out["embedding"]

    def _check_count(self, count: int) -> None:
        limit = self.settings.max_items_per_request
        if count > limit:
            raise PayloadTooLarge(
                f"images has {count} items; the limit is {limit} (setting max_items_per_request)",
                param="images",
            )


def is_image_model(dep: Deployment) -> bool:
    return dep.info.get("modality") == IMAGE


def modality(dep: Deployment) -> str:
    """What a model takes: ``image`` (vision models say so), ``text`` (text runtimes) or
    ``tensors`` (every other model)."""
    if is_image_model(dep):
        return IMAGE
    return "text" if dep.spec.runtime in ("transformers", "llamacpp") else "tensors"


def require_images(dep: Deployment, ref: str, task: str, path: str) -> None:
    """A 400 naming the model's modality when it does not take images, or its task when it
    takes them for another task."""
    if not is_image_model(dep):
        raise InvalidInput(
            f"model {ref!r} takes {modality(dep)} (modality {modality(dep)!r}), not images; "
            f"{path} with images needs an image {task} model",
            param="model",
        )
    if dep.spec.task != task:
        raise InvalidInput(
            f"model {ref!r} has task {dep.spec.task!r}; {path} needs an image {task!r} model",
            param="model",
        )


def refuse_images(dep: Deployment, ref: str) -> None:
    """Text sent to an image model: a 400 naming the model's modality."""
    if is_image_model(dep):
        raise InvalidInput(
            f"model {ref!r} takes images (modality 'image'), not text; send input as "
            '[{"image": "data:image/png;base64,..."}]',
            param="input",
        )


def image_rows(images: list[Image], dep: Deployment, param: str) -> np.ndarray:
    """The images as one object array of file bytes, for a replica of ``dep``: text is a data
    URL or base64 (decoded here, refused over ``max_image_bytes`` before decoding). Errors
    name ``param[i]``."""
    limits = ImageLimits(dep.spec.limits.max_image_bytes, dep.spec.limits.max_image_pixels)
    rows = np.empty(len(images), dtype=object)
    for i, image in enumerate(images):
        where = f"{param}[{i}]"
        if isinstance(image, bytes):
            data = image
        else:
            data = image_from_data_url(image, limits=limits, param=where)
        if not data:
            raise InvalidInput(f"{where}: the image is empty (0 bytes)", param=where)
        if len(data) > limits.max_bytes:
            raise PayloadTooLarge(
                f"{where}: the image is {len(data)} bytes, over the model's limit "
                f"max_image_bytes={limits.max_bytes}",
                param=where,
            )
        rows[i] = data
    return rows


def bytes_inputs(payload: dict[str, np.ndarray], dep: Deployment) -> dict[str, np.ndarray]:
    """v2 ``BYTES`` inputs of an image model as file bytes: binary elements already are; JSON
    elements are text (data URLs or base64)."""
    return {
        name: image_rows(list(array.reshape(-1)), dep, name).reshape(array.shape)
        if array.dtype.kind == "O"
        else array
        for name, array in payload.items()
    }


def triton_classification(
    outputs: dict[str, np.ndarray], requested: list[tuple[str, dict]], labels: list[str] | None
) -> dict[str, np.ndarray]:
    """Triton's classification extension: an output requested with the parameter
    ``classification: k`` (``InferRequestedOutput(name, class_count=k)``) comes back as
    ``BYTES`` [rows, k] of ``"score:index:label"``, most probable first, as Triton answers."""
    for name, parameters in requested:
        k = parameters.get("classification")
        if k is None or name not in outputs:
            continue
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInput(
                f"output {name!r}: parameter 'classification' must be a positive integer"
            )
        rows = outputs[name].reshape(len(outputs[name]), -1)
        best = [_top(row, k, labels) for row in rows]
        text = np.empty((len(rows), min(k, rows.shape[1])), dtype=object)
        for i, classes in enumerate(best):
            text[i] = [f"{c['score']:f}:{c['index']}:{c['label']}" for c in classes]
        outputs = {**outputs, name: text}
    return outputs


def _top(row: np.ndarray, k: int, labels: list[str] | None) -> list[dict[str, Any]]:
    k = min(k, len(row))
    best = np.argpartition(-row, k - 1)[:k]
    best = best[np.argsort(-row[best], kind="stable")]
    return [
        {
            "index": int(i),
            "label": labels[i] if labels else str(i),
            "score": float(row[i]),
        }
        for i in best
    ]


def _usage(images: int) -> dict[str, int]:
    return {"images": images, "prompt_tokens": images, "total_tokens": images}

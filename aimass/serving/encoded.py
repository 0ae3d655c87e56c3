"""Encoded files (images, sound) on their way to a replica: the checks that need no decoding,
and the one shape they travel in.

A file is decoded in the replica, under the model's limits; what can be refused without
decoding is refused here first: a model of another task, an empty file, a file over the
model's byte limit (so an oversized upload never crosses the pipe).
"""

from __future__ import annotations

import numpy as np

from aimass.errors import InvalidInput, PayloadTooLarge
from aimass.serving.pipeline import ModelCall


def check_upload(
    call: ModelCall, ref: str, task: str, path: str, size: int, limit: str, param: str
) -> None:
    """Refuse a model of another task (400), an empty file (400) or one over the model's
    byte limit ``limit`` (413), before the file is sent to a replica."""
    spec = call.deployment.spec
    if spec.task != task:
        raise InvalidInput(
            f"model {ref!r} has task {spec.task!r}; {path} needs a {task!r} model", param="model"
        )
    if size == 0:
        raise InvalidInput(f"{param} is empty (0 bytes)", param=param)
    most = getattr(spec.limits, limit)
    if size > most:
        raise PayloadTooLarge(
            f"{param} is {size} bytes, over the model's limit {limit}={most}", param=param
        )


def blobs(*items: bytes) -> np.ndarray:
    """A 1-d object array of encoded files (one row each), as a replica receives them."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array

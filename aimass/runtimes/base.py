"""The contract between the scheduler and a model engine: load / infer(batch) / unload.

A batch is a ``Payload``: a dict of numpy arrays whose first axis is the row. The batcher
concatenates requests along that axis before ``infer`` and splits the outputs after it, so a
runtime never sees requests, only rows. Text goes in as numpy object arrays of ``str``.

A runtime may report a problem with single rows (an over-long text, say) without failing the
whole batch: it returns ``ROW_ERRORS`` as a list with ``None``, a message (a 400) or an
``AimassError`` (its own status: an image over a size limit is a 413) per row, and only the
requests owning those rows fail.

Generative runtimes (LLMs) add a step API used by the worker loop for continuous batching:
``add`` a sequence, ``step`` all active sequences once, ``cancel`` one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aimass.spec import ModelSpec

Payload = dict[str, np.ndarray]
ROW_ERRORS = "__errors__"


@dataclass(frozen=True)
class TensorInfo:
    """A named tensor as the Open Inference Protocol describes it (``-1`` = any size)."""

    name: str
    datatype: str
    shape: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class StepEvent:
    """What one decode step produced for one sequence; ``done`` ends the stream."""

    req_id: str
    data: dict[str, Any]
    done: bool = False


class Runtime(ABC):
    """A model engine living inside one replica (a worker process or, in tests, a thread)."""

    generative: bool = False

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    @abstractmethod
    def load(self) -> None:
        """Read the model from ``spec.source``; raise with a clear message if it cannot."""

    def inputs(self) -> list[TensorInfo]:
        return []

    def outputs(self) -> list[TensorInfo]:
        return []

    def infer(self, batch: Payload) -> Payload:
        """Compute a whole batch; every output keeps the batch's rows on axis 0."""
        raise TypeError(f"runtime {self.spec.runtime!r} does not take tensor batches")

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Release what ``load`` took; the process ends right after in process mode."""

    def describe(self) -> dict[str, Any]:
        """Extra metadata shown by the model endpoints (e.g. context size, dimensions)."""
        return {}


class GenerativeRuntime(Runtime):
    """A runtime that generates token by token for many sequences at once."""

    generative = True

    @abstractmethod
    def add(self, req_id: str, request: dict[str, Any]) -> None:
        """Admit a sequence; raise ``AimassError`` (e.g. InvalidInput) to refuse it."""

    @abstractmethod
    def cancel(self, req_id: str) -> None:
        """Drop a sequence at once and free what it holds; unknown ids are ignored."""

    @abstractmethod
    def has_work(self) -> bool:
        """True while any sequence is running or waiting."""

    @abstractmethod
    def step(self) -> list[StepEvent]:
        """Advance every active sequence by one decode step."""

    def stats(self) -> dict[str, float]:
        """Gauges for metrics: running, waiting, kv_used, kv_total."""
        return {}

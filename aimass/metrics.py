"""Prometheus metrics of the serving core, labelled by model and version, and each
deployment's ``InferenceStats`` (Triton's statistics extension).

Defined once here (not in the transport layer) because the scheduler records most of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

_LABELS = ("model", "version")
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip

REQUESTS = Counter("aimass_requests_total", "Inference requests by outcome", (*_LABELS, "status"))
LATENCY = Histogram(
    "aimass_request_latency_seconds",
    "Request latency by stage: queue (waiting for a batch), compute (batch on a replica), total",
    (*_LABELS, "stage"),
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "aimass_batch_size",
    "Rows per batch sent to a replica",
    _LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
QUEUE_DEPTH = Gauge("aimass_queue_depth", "Requests waiting in the model's queue", _LABELS)
REPLICAS_UP = Gauge("aimass_replicas_up", "Replicas loaded and serving", _LABELS)
RESTARTS = Counter("aimass_replica_restarts_total", "Replica restarts after a crash", _LABELS)


def labels(name: str, version: int) -> dict[str, str]:
    return {"model": name, "version": str(version)}


def forget(name: str, version: int) -> None:
    """Drop the gauges of an unloaded model so /metrics does not report ghosts."""
    for gauge in (QUEUE_DEPTH, REPLICAS_UP):
        try:
            gauge.remove(name, str(version))
        except KeyError:
            pass


@dataclass
class Duration:
    """A count and the nanoseconds it took in all, as Triton reports each statistic."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += round(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class InferenceStats:
    """Cumulative figures of one loaded model version for Triton's statistics extension
    (``GET /v2/models/stats``), measured at the same points as the Prometheus metrics above.

    Unlike Prometheus counters, these belong to the deployment: a version loaded again starts
    from zero, as in Triton. ``queue`` and ``compute_infer`` count batch entries (a request
    split across batches counts once per batch); a batch's whole time on its replica (the
    pipe both ways and the runtime) is ``compute_infer``.
    """

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    inference_count: int = 0
    """Rows computed in batches that succeeded (one per successful generation for LLMs)."""
    execution_count: int = 0
    """Batches a replica computed (LLM replicas batch continuously: none are counted)."""
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)
    """Successful batches by their number of rows, with their compute time."""

    def request(self, ok: bool, seconds: float, inferences: int = 0) -> None:
        """One finished request (answered, refused by the deployment or cancelled)."""
        (self.success if ok else self.fail).add(seconds)
        self.inference_count += inferences if ok else 0
        self.last_inference_ms = int(time.time() * 1000)

    def batch(self, rows: int, waits: list[float], seconds: float, ok: bool) -> None:
        """One batch of ``rows`` on a replica, whose entries waited ``waits`` in the queue."""
        for wait in waits:
            self.queue.add(wait)
        self.compute_infer.add(seconds * len(waits), len(waits))
        if ok:
            self.execution_count += 1
            self.inference_count += rows
            self.batches.setdefault(rows, Duration()).add(seconds)

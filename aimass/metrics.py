"""Prometheus metrics of the serving core, labelled by model and version.

Defined once here (not in the transport layer) because the scheduler records most of them.
"""

from __future__ import annotations

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

"""This server as a Ray driver: one connection per process, made when the first replica starts.

``address`` is what ``ray.init`` takes: ``auto`` (the cluster this machine joined with
``ray start``), ``ray://HOST:PORT`` (Ray Client) or a GCS ``HOST:PORT``. Replicas are named
actors in the ``aimass`` namespace, so an operator finds them with ``ray list actors``.
"""

from __future__ import annotations

import threading

import ray

NAMESPACE = "aimass"
_lock = threading.Lock()


def connect(address: str) -> None:
    """Join the cluster once; later calls (from any thread) return at once."""
    with _lock:
        if not ray.is_initialized():
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)

"""Prometheus metrics of text generation, labelled by model and version.

Recorded by the OpenAI serving layer from what it sees (first token, gaps between tokens)
and from the runtime's ``stats`` (running and waiting sequences, KV-cache cells in use or
kept by the prefix cache). Those gauges are per replica (label ``replica``): each replica
holds its own sequences and KV cache, and the server stamps its index into the ``stats`` it
receives (``engine/local/replica.py``). The replica's worker loop puts fresh ``stats`` on the
last event of every step, and after a sequence is admitted or cancelled sends them on a live
sequence's stream even when no token came out; a replica left with no sequence zeroes its
own gauges (``record_replica_idle``), and with none left in any replica the serving layer
zeroes them all (``record_idle``). The prefix-cache counters are recorded by the replica from
each request's usage.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_LABELS = ("model", "version")
_REPLICA_LABELS = (*_LABELS, "replica")

TTFT = Histogram(
    "aimass_llm_time_to_first_token_seconds",
    "Time from request arrival to the first generated text",
    _LABELS,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
INTER_TOKEN = Histogram(
    "aimass_llm_inter_token_latency_seconds",
    "Time between two streamed text pieces of one sequence",
    _LABELS,
    buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5),
)
GENERATED_TOKENS = Counter(
    "aimass_llm_generated_tokens_total", "Tokens generated (completion tokens)", _LABELS
)
PROMPT_TOKENS = Counter("aimass_llm_prompt_tokens_total", "Prompt tokens processed", _LABELS)
PREFIX_HITS = Counter(
    "aimass_llm_prefix_cache_hit_tokens_total",
    "Prompt tokens whose KV cells were reused from the prefix cache instead of computed",
    _LABELS,
)
PREFILLED = Counter(
    "aimass_llm_prefill_tokens_total",
    "Prompt tokens computed (prompt tokens less those from the prefix cache)",
    _LABELS,
)
RUNNING = Gauge("aimass_llm_running_sequences", "Sequences decoding in a replica", _REPLICA_LABELS)
WAITING = Gauge("aimass_llm_waiting_sequences", "Sequences waiting for a slot", _REPLICA_LABELS)
KV_USED = Gauge(
    "aimass_llm_kv_cache_used_cells", "KV-cache cells holding running sequences", _REPLICA_LABELS
)
KV_CACHED = Gauge(
    "aimass_llm_kv_cache_cached_cells",
    "KV-cache cells kept by the prefix cache for later requests",
    _REPLICA_LABELS,
)
KV_USAGE = Gauge(
    "aimass_llm_kv_cache_usage_ratio",
    "KV-cache cells of running sequences / total",
    _REPLICA_LABELS,
)
_GAUGES = (RUNNING, WAITING, KV_USED, KV_CACHED, KV_USAGE)
_replicas: dict[tuple[str, int], set[str]] = {}
"""The replica labels each model's gauges have, so they can be zeroed and removed."""


def _labels(name: str, version: int) -> dict[str, str]:
    return {"model": name, "version": str(version)}


_children: dict[tuple[str, int, str], tuple[Any, ...]] = {}
"""Each replica's labelled gauges (in ``_GAUGES`` order), looked up once: the gauges are set
on every generated token, and a ``labels()`` lookup costs more than the ``set``."""


def _replica_gauges(name: str, version: int, replica: str) -> tuple[Any, ...]:
    key = (name, version, replica)
    children = _children.get(key)
    if children is None:
        _replicas.setdefault((name, version), set()).add(replica)
        children = tuple(g.labels(name, str(version), replica) for g in _GAUGES)
        _children[key] = children
    return children


def record_stats(name: str, version: int, stats: dict[str, Any]) -> None:
    """Set one replica's gauges from a runtime's ``stats()`` snapshot (as carried in events,
    with the ``replica`` index the server stamped in)."""
    replica = str(int(stats.get("replica", 0)))
    running, waiting, kv_used, kv_cached, kv_usage = _replica_gauges(name, version, replica)
    running.set(stats.get("running", 0))
    waiting.set(stats.get("waiting", 0))
    kv_used.set(stats.get("kv_used", 0))
    kv_cached.set(stats.get("kv_cached", 0))
    total = stats.get("kv_total") or 0
    kv_usage.set(stats.get("kv_used", 0) / total if total else 0.0)


def record_replica_idle(name: str, version: int, replica: int, stats: dict[str, Any]) -> None:
    """A replica has no sequence left: zero what ran, keep what its prefix cache holds."""
    record_stats(name, version, {"replica": replica, "kv_cached": stats.get("kv_cached", 0)})


def record_idle(name: str, version: int) -> None:
    """No sequence of the model is running or waiting in any replica."""
    for replica in _replicas.get((name, version), {"0"}):
        labels = {**_labels(name, version), "replica": replica}
        for gauge in (RUNNING, WAITING, KV_USED, KV_USAGE):
            gauge.labels(**labels).set(0)


def record_prompt(name: str, version: int, prompt_tokens: int, cached_tokens: int) -> None:
    """One request's prompt: how much of it came from the prefix cache."""
    labels = _labels(name, version)
    PREFIX_HITS.labels(**labels).inc(cached_tokens)
    PREFILLED.labels(**labels).inc(max(prompt_tokens - cached_tokens, 0))


def record_first_token(name: str, version: int, seconds: float) -> None:
    TTFT.labels(**_labels(name, version)).observe(seconds)


_gaps: dict[tuple[str, int], Any] = {}
"""Each model's labelled inter-token histogram (observed on every generated token)."""


def record_gap(name: str, version: int, seconds: float) -> None:
    child = _gaps.get((name, version))
    if child is None:
        child = _gaps[(name, version)] = INTER_TOKEN.labels(name, str(version))
    child.observe(seconds)


def record_usage(name: str, version: int, prompt_tokens: int, completion_tokens: int) -> None:
    labels = _labels(name, version)
    PROMPT_TOKENS.labels(**labels).inc(prompt_tokens)
    GENERATED_TOKENS.labels(**labels).inc(completion_tokens)


def forget(name: str, version: int) -> None:
    """Drop an unloaded model's gauges."""
    for replica in _replicas.pop((name, version), set()):
        _children.pop((name, version, replica), None)
        for gauge in _GAUGES:
            with contextlib.suppress(KeyError):
                gauge.remove(name, str(version), replica)

"""LLM metrics with two replicas: each replica's gauges are its own series, and the prefix
cache's reuse is counted."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.conftest import run_server
from tests.integration.conftest_llm import gemma_file, llm_spec, metric, until_text

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"


@pytest.fixture(scope="module")
def server(pytestconfig, tmp_path_factory):
    spec = llm_spec(gemma_file(pytestconfig), replicas=2)
    with run_server(tmp_path_factory.mktemp("llm-replicas"), models=[spec]) as url:
        yield url


def running_by_replica(server: str) -> dict[str, float]:
    pattern = re.compile(r'aimass_llm_running_sequences\{.*replica="(\d+)".*\} (\S+)')
    text = httpx.get(f"{server}/metrics").text
    return {m[1]: float(m[2]) for m in pattern.finditer(text) if 'model="gemma"' in m[0]}


def test_each_replica_reports_its_own_gauges(server):
    body = {"model": "gemma", "prompt": COUNTING, "max_tokens": 400, "temperature": 0}
    with (
        httpx.stream(
            "POST", f"{server}/v1/completions", json={**body, "stream": True}, timeout=60
        ) as a,
        httpx.stream(
            "POST", f"{server}/v1/completions", json={**body, "stream": True}, timeout=60
        ) as b,
    ):
        _held = until_text(a), until_text(b)  # both run, one on each replica
        assert running_by_replica(server) == {"0": 1.0, "1": 1.0}
    deadline = time.monotonic() + 5  # cancelled at once: see test_llm_server's FREED_WITHIN_S
    while any(running_by_replica(server).values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running_by_replica(server) == {"0": 0.0, "1": 0.0}


def test_prefix_cache_hits_are_counted(server):
    before = metric(server, "aimass_llm_prefix_cache_hit_tokens_total")
    prompt = "A long shared system prompt. " * 20
    for _ in range(3):  # two replicas: by the third request one of them has seen it
        answer = httpx.post(
            f"{server}/v1/completions",
            json={"model": "gemma", "prompt": prompt, "max_tokens": 2, "temperature": 0},
            timeout=60,
        )
        answer.raise_for_status()
    assert metric(server, "aimass_llm_prefix_cache_hit_tokens_total") - before >= 100
    assert metric(server, "aimass_llm_prefill_tokens_total") > 0

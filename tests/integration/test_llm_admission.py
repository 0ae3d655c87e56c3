"""LLM admission is exact when requests arrive together (issue 16): a deployment takes
``replicas × max_concurrent + max_queue`` sequences, however close together they come.

Requests sent in the same instant reach the replica in one drain of its inbox, before a step
has given the first its slot; the replica must count them against its slots and its queue
together, not against the queue alone.
"""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.conftest import run_server
from tests.integration.conftest_llm import gemma_file, llm_spec, until_text, wait_for_metric

ROUNDS = 8
SHORT = {"model": "gemma", "prompt": "Hi", "max_tokens": 8, "temperature": 0}
LONG = {"model": "gemma", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 450, "temperature": 0}


@pytest.fixture(scope="module")
def one_slot(pytestconfig, tmp_path_factory):
    """The documented example: one slot and one queue place, so two sequences at a time."""
    spec = llm_spec(gemma_file(pytestconfig), limits={"max_concurrent": 1, "max_queue": 1})
    with run_server(tmp_path_factory.mktemp("llm-one-slot"), models=[spec]) as url:
        yield url


@pytest.fixture(scope="module")
def two_slots(pytestconfig, tmp_path_factory):
    spec = llm_spec(gemma_file(pytestconfig), limits={"max_concurrent": 2, "max_queue": 1})
    with run_server(tmp_path_factory.mktemp("llm-two-slots"), models=[spec]) as url:
        yield url


@pytest.fixture
def busy_replica(two_slots):
    """A long stream that keeps the replica stepping (and one of its two slots taken)."""
    with httpx.stream(
        "POST", f"{two_slots}/v1/completions", json={**LONG, "stream": True}, timeout=120
    ) as resp:
        _held = until_text(resp)  # generating now (held: see until_text)
        yield two_slots
    wait_for_metric(two_slots, "aimass_llm_running_sequences", lambda v: v == 0)


async def test_two_completions_sent_together_are_both_served(one_slot):
    client = openai.AsyncOpenAI(base_url=f"{one_slot}/v1", api_key="unused", max_retries=0)
    async with client:
        for _ in range(ROUNDS):
            answers = await asyncio.gather(
                client.completions.create(**SHORT), client.completions.create(**SHORT)
            )
            assert all(a.choices[0].finish_reason in ("stop", "length") for a in answers)


async def test_arrivals_during_a_step_fill_the_free_slot_and_the_queue(busy_replica):
    """With one slot free and one queue place, two requests sent together while the replica
    computes are both admitted, round after round."""
    async with httpx.AsyncClient(base_url=busy_replica, timeout=120) as client:
        for _ in range(ROUNDS):
            answers = await asyncio.gather(
                client.post("/v1/completions", json=SHORT),
                client.post("/v1/completions", json=SHORT),
            )
            assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]


async def test_exactly_the_documented_number_is_admitted(busy_replica):
    """2 slots + 1 queue place, one slot held: of three long requests sent together, two are
    served and one is refused with a 429 that names the limit."""
    body = {**SHORT, "max_tokens": 48}
    async with httpx.AsyncClient(base_url=busy_replica, timeout=120) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/completions", json=body) for _ in range(3))
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 429], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 429)
    message = refused.json()["error"]["message"]
    assert "the limit is 3" in message and "limits.max_queue" in message
    assert refused.headers["retry-after"] == "1"

"""One slot and one queue place: a queued client that leaves gives its place back, and a
request beyond the queue is a 429 the official SDK reads as RateLimitError."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import run_server
from tests.integration.conftest_llm import (
    gemma_file,
    llm_spec,
    metric,
    raw_request,
    until_text,
    wait_for_metric,
)

# Greedy counting runs its whole length: the first request holds the only slot for many
# seconds, far longer than any bound below.
LONG = {"model": "gemma", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 450, "temperature": 0}
WITHIN_S = 3.0


@pytest.fixture(scope="module")
def server(pytestconfig, tmp_path_factory):
    spec = llm_spec(gemma_file(pytestconfig), limits={"max_concurrent": 1, "max_queue": 1})
    with run_server(tmp_path_factory.mktemp("llm-queue"), models=[spec]) as url:
        yield url


@pytest.fixture
def slot_taken(server):
    """A streaming request that holds the only slot until the test ends."""
    with httpx.stream(
        "POST", f"{server}/v1/completions", json={**LONG, "stream": True}, timeout=60
    ) as resp:
        _held = until_text(resp)  # a token came: it runs (held: see until_text)
        wait_for_metric(server, "aimass_llm_running_sequences", lambda v: v == 1)
        yield
    wait_for_metric(server, "aimass_llm_running_sequences", lambda v: v == 0, WITHIN_S)


@pytest.mark.parametrize("stream", [False, True])
def test_queued_client_that_leaves_never_runs(server, slot_taken, stream):
    with raw_request(server, "/v1/completions", {**LONG, "stream": stream}):
        wait_for_metric(server, "aimass_llm_waiting_sequences", lambda v: v == 1)
    # Gone from the replica's queue now, while the slot is still taken.
    wait_for_metric(server, "aimass_llm_waiting_sequences", lambda v: v == 0, WITHIN_S)
    assert metric(server, "aimass_llm_running_sequences") == 1


def test_request_beyond_the_queue_is_rate_limited(server, slot_taken):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    with raw_request(server, "/v1/completions", LONG):
        wait_for_metric(server, "aimass_llm_waiting_sequences", lambda v: v == 1)
        with pytest.raises(openai.RateLimitError) as info:
            client.completions.create(model="gemma", prompt="Hi", max_tokens=2)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "1"
    message = info.value.body["message"]
    assert "the limit is 2" in message and "limits.max_queue" in message
    assert info.value.body["type"] == "rate_limit_error"

"""OpenAI conformance of /v1/completions and /v1/chat/completions, with the official SDK."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

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

PROMPTS = ["The capital of France is", "Once upon a time", "def add(a, b):", "Water boils at"]


@pytest.fixture(scope="module")
def server(pytestconfig, tmp_path_factory):
    gguf = gemma_file(pytestconfig)
    exact = llm_spec(gguf, name="gemma-exact", options={"batch_invariant": True})
    with run_server(tmp_path_factory.mktemp("llm"), models=[llm_spec(gguf), exact]) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def complete(client, prompt: str, n: int = 16, model: str = "gemma") -> str:
    out = client.completions.create(model=model, prompt=prompt, max_tokens=n, temperature=0)
    return out.choices[0].text


def test_completion(client):
    out = client.completions.create(model="gemma", prompt=PROMPTS[0], max_tokens=8, temperature=0)
    assert out.object == "text_completion" and out.model == "gemma"
    assert out.choices[0].finish_reason == "length" and out.choices[0].text
    assert out.usage.completion_tokens == 8 and out.usage.prompt_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + 8


def test_chat(client):
    out = client.chat.completions.create(
        model="gemma",
        messages=[{"role": "system", "content": "Answer."}, {"role": "user", "content": "Hi"}],
        max_tokens=6,
        temperature=0,
    )
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason in ("stop", "length")


def test_streaming_chat_matches_whole_answer_and_reports_usage(client):
    kwargs = dict(
        model="gemma",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12,
        temperature=0,
    )
    whole = client.chat.completions.create(**kwargs)
    chunks = list(
        client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_streaming_completion_ends_with_done(server):
    body = {"model": "gemma", "prompt": PROMPTS[1], "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][len("data: ") :])
    assert last["choices"][0]["finish_reason"] == "length"


def test_json_schema_output_validates(client):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    out = client.chat.completions.create(
        model="gemma",
        messages=[{"role": "user", "content": "A person as JSON."}],
        max_tokens=64,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    value = json.loads(out.choices[0].message.content)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)


def test_batch_invariant_model_gives_the_same_greedy_answer_concurrently(client):
    """``options.batch_invariant`` over HTTP: answers do not depend on what else runs (the
    default trades this for a lone request's full speed and llama.cpp's own answer)."""
    alone = [complete(client, p, model="gemma-exact") for p in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: complete(client, p, model="gemma-exact"), PROMPTS))
    assert together == alone


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="nope", prompt="x", max_tokens=1)
    assert "nope" in info.value.body["message"]


def test_context_overflow_is_400_naming_the_numbers(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gemma", prompt="x", max_tokens=4000)
    assert "4000" in info.value.body["message"] and "512" in info.value.body["message"]
    assert info.value.body["param"] == "max_tokens"


def test_bad_field_is_400_in_openai_shape(server):
    resp = httpx.post(
        f"{server}/v1/chat/completions",
        json={"model": "gemma", "messages": [{"role": "user", "content": "x"}], "top_p": 7},
    )
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["param"] == "top_p" and err["type"] == "invalid_request_error"


# Counting greedily never reaches an end of text: a sequence of COUNT_TOKENS runs its full
# length (many seconds on 2 cores), far beyond the bounds within which a cancel must show.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
COUNT_TOKENS = 450
FREED_WITHIN_S = 3.0


def test_disconnect_mid_stream_frees_the_slot_at_once(server):
    before = metric(server, "aimass_llm_generated_tokens_total")
    body = {"model": "gemma", "prompt": COUNTING, "max_tokens": COUNT_TOKENS, "temperature": 0}
    with httpx.stream(
        "POST", f"{server}/v1/completions", json={**body, "stream": True}, timeout=60
    ) as resp:
        _held = until_text(resp)  # a token came: it runs (held: see until_text)
        wait_for_metric(server, "aimass_llm_running_sequences", lambda v: v == 1)
    wait_for_metric(server, "aimass_llm_running_sequences", lambda v: v == 0, FREED_WITHIN_S)
    assert metric(server, "aimass_llm_kv_cache_used_cells") == 0
    # A finished sequence would have counted its tokens; a cancelled one never does.
    assert metric(server, "aimass_llm_generated_tokens_total") == before


def test_whole_answer_client_leaving_frees_its_slot(server):
    before = metric(server, "aimass_llm_generated_tokens_total")
    body = {"model": "gemma", "prompt": COUNTING, "max_tokens": COUNT_TOKENS, "temperature": 0}
    with raw_request(server, "/v1/completions", body):
        wait_for_metric(server, "aimass_llm_running_sequences", lambda v: v == 1)
    wait_for_metric(server, "aimass_llm_running_sequences", lambda v: v == 0, FREED_WITHIN_S)
    assert metric(server, "aimass_llm_generated_tokens_total") == before


def test_metrics_after_requests(server, client):
    for prompt in PROMPTS[:2]:
        chunks = client.completions.create(
            model="gemma", prompt=prompt, max_tokens=8, temperature=0, stream=True
        )
        assert "".join(c.choices[0].text for c in chunks if c.choices)
    text = httpx.get(f"{server}/metrics").text
    for name in ("time_to_first_token_seconds", "inter_token_latency_seconds"):
        count = metric(server, f"aimass_llm_{name}_count", text)
        total = metric(server, f"aimass_llm_{name}_sum", text)
        assert count >= 2 and 0 < total / count < 30
    assert metric(server, "aimass_llm_generated_tokens_total", text) >= 16
    assert metric(server, "aimass_llm_prompt_tokens_total", text) >= 2
    for idle in ("running_sequences", "waiting_sequences", "kv_cache_used_cells"):
        assert metric(server, f"aimass_llm_{idle}", text) == 0
    body = {"model": "gemma", "prompt": COUNTING, "max_tokens": COUNT_TOKENS, "stream": True}
    with httpx.stream(
        "POST", f"{server}/v1/completions", json={**body, "temperature": 0}, timeout=60
    ) as resp:
        _held = until_text(resp)  # a token came: it runs (held: see until_text)
        wait_for_metric(server, "aimass_llm_kv_cache_used_cells", lambda v: v > 8)
        used = metric(server, "aimass_llm_kv_cache_used_cells")
        ratio = metric(server, "aimass_llm_kv_cache_usage_ratio")
        assert used <= 512 and ratio == pytest.approx(used / (4 * 512), abs=0.02)
        assert metric(server, "aimass_llm_running_sequences") == 1
    wait_for_metric(server, "aimass_llm_running_sequences", lambda v: v == 0, FREED_WITHIN_S)
    assert metric(server, "aimass_llm_kv_cache_usage_ratio") == 0


def test_request_timeout_header_ends_the_request_with_504(server):
    body = {"model": "gemma", "prompt": COUNTING, "max_tokens": COUNT_TOKENS, "temperature": 0}
    started = time.monotonic()
    resp = httpx.post(
        f"{server}/v1/completions", json=body, headers={"Request-Timeout": "1"}, timeout=60
    )
    assert resp.status_code == 504 and time.monotonic() - started < 10
    err = resp.json()["error"]
    assert err["type"] == "timeout_error" and "Request-Timeout" in err["message"]
    wait_for_metric(server, "aimass_llm_running_sequences", lambda v: v == 0, FREED_WITHIN_S)


@pytest.mark.parametrize("value", ["soon", "0", "-2", "inf", "nan"])
def test_bad_request_timeout_header_is_400(client, value):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gemma",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=2,
            extra_headers={"Request-Timeout": value},
        )
    assert "Request-Timeout" in info.value.body["message"]
    assert info.value.body["param"] == "Request-Timeout"


def test_request_timeout_header_longer_than_needed_is_fine(client):
    out = client.completions.create(
        model="gemma",
        prompt=PROMPTS[0],
        max_tokens=4,
        temperature=0,
        extra_headers={"Request-Timeout": "60"},
    )
    assert out.usage.completion_tokens == 4


def _requests_total(server: str, status: str) -> float:
    lines = httpx.get(f"{server}/metrics").text.splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("aimass_requests_total{")
        and 'model="gemma"' in line
        and f'status="{status}"' in line
    )


def _usage(server: str) -> dict[str, tuple[int, int]]:
    rows = httpx.get(f"{server}/v1/usage").json()["data"]
    return {r["model"]: (r["requests"], r["errors"]) for r in rows}


def test_refusals_before_generation_are_counted_once_and_made_up_names_add_nothing(server):
    """The pipeline counts a refusal that never reached the model in usage and in
    aimass_requests_total, like any request; a model name the server does not serve adds no
    usage row and no metric label (clients could otherwise grow both without bound)."""
    requests_before, errors_before = _usage(server).get("gemma", (0, 0))
    refused_before = _requests_total(server, "400")
    over = {"model": "gemma", "prompt": "x", "max_tokens": 10**6}
    assert httpx.post(f"{server}/v1/completions", json=over).status_code == 400
    bad_version = {"model": "gemma:x", "prompt": "x"}
    assert httpx.post(f"{server}/v1/completions", json=bad_version).status_code == 400
    for name in ("made-up-a", "made-up-b"):
        body = {"model": name, "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(f"{server}/v1/chat/completions", json=body).status_code == 404
    usage = _usage(server)
    assert usage["gemma"] == (requests_before + 1, errors_before + 1)
    assert not any(model.startswith("made-up") for model in usage)
    assert _requests_total(server, "400") == refused_before + 1
    assert "made-up" not in httpx.get(f"{server}/metrics").text

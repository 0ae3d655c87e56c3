"""The llama.cpp runtime's prefix cache, n > 1 choices, logprobs and seeds, driven directly."""

from __future__ import annotations

import itertools
import math

import pytest

from aimass.errors import InvalidInput
from aimass.runtimes.llamacpp.runtime import LlamaCppRuntime
from tests.integration.conftest_llm import gemma_file, llm_spec

FACTS = " ".join(f"Fact {i}: {i} times {i} is {i * i}." for i in range(40))
QUESTIONS = ["What is the capital of France?", "Name a color.", "What is 2 + 2?"]


@pytest.fixture(scope="module")
def gguf(pytestconfig):
    return gemma_file(pytestconfig)


def load(gguf, **options):
    rt = LlamaCppRuntime(llm_spec(gguf, options={"n_ctx_per_seq": 1024, **options}))
    rt.load()
    return rt


@pytest.fixture(scope="module")
def runtime(gguf):
    rt = load(gguf)
    yield rt
    rt.unload()


def drain(rt, requests: dict) -> dict:
    """Add all requests, step until done; returns (req_id, index) -> (text, last event,
    logprobs)."""
    for rid, req in requests.items():
        rt.add(rid, req)
    out: dict = {}
    while rt.has_work():
        for ev in rt.step():
            assert "error" not in ev.data, ev.data
            key = (ev.req_id, ev.data.get("index", 0))
            text, last, logprobs = out.get(key, ("", None, []))
            text += ev.data.get("text", "")
            logprobs = logprobs + (ev.data.get("logprobs") or [])
            out[key] = (text, ev.data if ev.data.get("finish_reason") else last, logprobs)
    return out


def chat(rt, cache_key: str, turns: int = 3) -> list[tuple[str, dict]]:
    """A multi-turn chat over a shared history: each turn's answer goes back into it."""
    messages = [{"role": "user", "content": f"{FACTS}\n{QUESTIONS[0]}"}]
    answers = []
    for turn in range(turns):
        request = {"messages": messages, "max_tokens": 16, "temperature": 0}
        text, last, _ = drain(rt, {f"{cache_key}{turn}": request})[(f"{cache_key}{turn}", 0)]
        answers.append((text, last["usage"]))
        messages = [
            *messages,
            {"role": "assistant", "content": text},
            {"role": "user", "content": QUESTIONS[(turn + 1) % len(QUESTIONS)]},
        ]
    return answers


def test_multi_turn_chat_reuses_the_history_and_answers_as_without_cache(runtime, gguf):
    cached = chat(runtime, "on")
    plain_rt = load(gguf, prefix_cache=False)
    try:
        plain = chat(plain_rt, "off")
    finally:
        plain_rt.unload()
    assert [text for text, _ in cached] == [text for text, _ in plain]
    assert all(usage["cached_tokens"] == 0 for _, usage in plain)
    for (_, before), (_, usage) in itertools.pairwise(cached):
        # the previous prompt is reused (cut to blocks of 4), its answer is computed again
        assert before["prompt_tokens"] - 8 <= usage["cached_tokens"] <= before["prompt_tokens"]


def test_an_evicted_prefix_moves_to_the_least_recently_used_slot(runtime, gguf):
    """Two users alternate: each one's history survives the other's turn (moved to another
    slot by a stream copy, then copied back), and answers as computed from scratch."""
    a = {"prompt": f"{FACTS} Alice asks:", "max_tokens": 8, "temperature": 0}
    b = {"prompt": f"{FACTS[::-1]} Bob asks:", "max_tokens": 8, "temperature": 0}
    a2 = {**a, "prompt": a["prompt"] + " again"}
    drain(runtime, {"a1": a, "b1": b})
    drain(runtime, {"b2": {**b, "prompt": b["prompt"] + " again"}})
    again = drain(runtime, {"a2": a2})[("a2", 0)]
    n_a = len(runtime.llm.tokenize(a["prompt"], add_special=True))
    assert again[1]["usage"]["cached_tokens"] >= n_a - 8  # see prefix_cache.reusable
    assert runtime.stats()["kv_used"] == 0 and runtime.stats()["kv_cached"] > 0
    plain_rt = load(gguf, prefix_cache=False)
    try:
        assert drain(plain_rt, {"a2": a2})[("a2", 0)][0] == again[0]
    finally:
        plain_rt.unload()


def test_n_choices_share_one_prefill_of_the_prompt(gguf):
    rt = load(gguf, prefix_cache=False)
    try:
        prompt = "Once upon a time, in a land far away,"
        n_prompt = len(rt.llm.tokenize(prompt, add_special=True))
        one = drain(rt, {1: {"prompt": prompt, "max_tokens": 12, "temperature": 0}})[(1, 0)]
        before = rt.prefilled_tokens
        out = drain(rt, {2: {"prompt": prompt, "max_tokens": 12, "temperature": 0, "n": 3}})
        assert rt.prefilled_tokens - before == n_prompt  # read once, not three times
        assert [out[(2, i)][0] for i in range(3)] == [one[0]] * 3  # greedy: the same answer
        assert [out[(2, i)][1]["usage"]["completion_tokens"] for i in range(3)] == [12] * 3
        assert rt.stats()["running"] == 0
    finally:
        rt.unload()


def test_seeded_choices_differ_from_each_other_and_repeat_exactly(runtime):
    req = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 1.0, "seed": 11, "n": 3}
    first = drain(runtime, {"s1": req})
    again = drain(runtime, {"s2": req})
    texts = [first[("s1", i)][0] for i in range(3)]
    assert texts == [again[("s2", i)][0] for i in range(3)]
    assert len(set(texts)) > 1
    alone = drain(runtime, {"s3": {**req, "n": 1}})[("s3", 0)][0]
    assert alone == texts[0]


def test_logprobs_are_a_distribution_and_name_the_sampled_token(runtime):
    req = {"prompt": "The three primary colors are", "max_tokens": 10, "temperature": 0}
    text, last, logprobs = drain(runtime, {"l": {**req, "logprobs": True, "top_logprobs": 5}})[
        ("l", 0)
    ]
    assert len(logprobs) == last["usage"]["completion_tokens"]
    assert "".join(e["token"] for e in logprobs) == text
    for entry in logprobs:
        top = entry["top_logprobs"]
        assert len(top) == 5 and entry["logprob"] <= 0
        assert sum(math.exp(t["logprob"]) for t in top) <= 1 + 1e-6
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert top[0]["token"] == entry["token"]  # greedy picks the most likely token
        assert top[0]["logprob"] == pytest.approx(entry["logprob"])
        assert bytes(entry["bytes"]).decode("utf-8", "replace") == entry["token"]
    plain = drain(runtime, {"p": req})[("p", 0)]
    assert plain[0] == text and plain[2] == []


def test_n_and_top_logprobs_out_of_range_name_the_field(runtime):
    with pytest.raises(InvalidInput) as info:
        runtime.add("n", {"prompt": "x", "max_tokens": 2, "n": 5})  # 4 slots in llm_spec
    assert info.value.param == "n"
    with pytest.raises(InvalidInput) as info:
        runtime.add("t", {"prompt": "x", "max_tokens": 2, "logprobs": True, "top_logprobs": 21})
    assert info.value.param == "top_logprobs"
    assert not runtime.has_work()

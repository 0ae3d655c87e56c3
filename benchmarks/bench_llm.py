"""LLM serving throughput: AI Mass vs llama-cpp-python's OpenAI server vs a raw decode loop.

Gemma 3 270M Q4_K_M, 2 threads, N concurrent clients each asking for ``--tokens`` tokens
(greedy, streamed). Three contenders, measured in the same run:

* ``raw loop``: the ceiling. In-process llama.cpp, all prompts prefilled, then one batched
  ``llama_decode`` per step over all sequences, argmax sampling. No HTTP, no processes.
* ``AI Mass``: ``aimass serve`` with the same model (continuous batching in a replica).
* ``llama-cpp-python server``: ``python -m llama_cpp.server`` (one sequence at a time).

Aggregate tokens/s = completion tokens of all clients / wall time from the first request
to the last answer. TTFT = time to the first streamed text chunk, per request.

    .venv/bin/python benchmarks/bench_llm.py --clients 8 1 --tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import (
    append_section,
    command,
    machine_note,
    percentile,
    stamp,
    table,
)

from tests.conftest import free_port, run_server, stop_server

PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "The history of the Roman Empire begins",
    "Here is a recipe for a simple tomato soup:",
    "The three most important inventions of the 20th century are",
    "Dear diary, today I",
    "In computer science, a hash table is",
    "The weather forecast for tomorrow says",
    "My favourite book is",
]


def prompts(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)]


# ---- the ceiling: a raw batched decode loop ---------------------------------------------


def raw_loop(gguf: Path, clients: int, tokens: int, threads: int) -> dict[str, float]:
    """Prefill every prompt, then decode all sequences together, one llama_decode per step."""
    import llama_cpp as lc

    from aimass.runtimes.llamacpp.batch import TokenBatch
    from aimass.runtimes.llamacpp.model import ContextConfig, LlamaModel

    model = LlamaModel(str(gguf), ContextConfig(max(clients, 1), 512, 512, threads))
    batch = TokenBatch(512)
    started = time.perf_counter()
    last, pos, ttft = [], [], []
    for slot, text in enumerate(prompts(clients)):
        toks = model.tokenize(text, add_special=True)
        batch.clear()
        index = batch.add(toks, 0, slot, True)
        batch.decode(model.ctx)
        last.append(_argmax(lc, model, index))
        pos.append(len(toks))
        ttft.append(time.perf_counter() - started)
    for _ in range(tokens - 1):
        batch.clear()
        rows = [batch.add([last[s]], pos[s], s, True) for s in range(clients)]
        batch.decode(model.ctx)
        for s, index in enumerate(rows):
            last[s] = _argmax(lc, model, index)
            pos[s] += 1
    wall = time.perf_counter() - started
    model.close()
    return {"tokens": clients * tokens, "wall": wall, "ttft": ttft}


def _argmax(lc, model, index: int) -> int:
    logits = lc.llama_get_logits_ith(model.ctx, index)
    return int(np.ctypeslib.as_array(logits, shape=(model.n_vocab,)).argmax())


# ---- HTTP clients ------------------------------------------------------------------------


async def one_stream(client: httpx.AsyncClient, url: str, model: str, prompt: str, tokens: int):
    """One streamed completion; returns (completion tokens, seconds to first text)."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first, pieces, usage = None, 0, None
    async with client.stream("POST", f"{url}/v1/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                usage = data["usage"]["completion_tokens"]
            if data.get("choices") and data["choices"][0].get("text"):
                pieces += 1
                if first is None:
                    first = time.perf_counter() - started
    return (usage if usage is not None else pieces), first


async def load(url: str, model: str, clients: int, tokens: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await one_stream(client, url, model, "Warm up", 4)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, url, model, p, tokens) for p in prompts(clients))
        )
        wall = time.perf_counter() - started
    return {
        "tokens": sum(r[0] for r in results),
        "wall": wall,
        "ttft": [r[1] for r in results if r[1] is not None],
    }


def aimass_run(gguf: Path, tmp: Path, clients: list[int], tokens: int, invariant: bool):
    spec = {
        "name": "gemma",
        "task": "text-generation",
        "runtime": "llamacpp",
        "source": str(gguf),
        "threads": 2,
        "limits": {"max_concurrent": max(clients), "max_queue": 64, "timeout_s": 600},
        "options": {"n_ctx_per_seq": 512, "batch_invariant": invariant},
    }
    out = {}
    with run_server(tmp / f"aimass-{invariant}", models=[spec]) as server:
        for n in clients:
            out[n] = asyncio.run(load(server, "gemma", n, tokens))
    return out


def llama_server_run(gguf: Path, tmp: Path, clients: list[int], tokens: int):
    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
        "gemma", "--n_threads", "2", "--n_threads_batch", "2", "--n_ctx", "2048",
        "--interrupt_requests", "False", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log = (tmp / "llama_server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc)
        return {n: asyncio.run(load(url, "gemma", n, tokens)) for n in clients}
    finally:
        stop_server(proc)
        log.close()


def _wait_up(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("llama_cpp.server exited; install the bench extra")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("llama_cpp.server did not start")


# ---- report ------------------------------------------------------------------------------


def row(name: str, clients: int, r: dict, base: dict | None, ceiling: dict | None) -> list:
    rate = r["tokens"] / r["wall"]
    vs_base = rate / (base["tokens"] / base["wall"]) if base else float("nan")
    vs_ceiling = rate / (ceiling["tokens"] / ceiling["wall"]) if ceiling else float("nan")
    ttft = [t * 1000 for t in r["ttft"]]
    return [
        name, clients, r["tokens"], rate, vs_base, vs_ceiling,
        percentile(ttft, 0.5), percentile(ttft, 0.95),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    from aimass.provision.builtin import gemma_spec

    tmp = Path(tempfile.mkdtemp(prefix="bench_llm_"))
    gguf = Path(gemma_spec(tmp / "home").source)
    raw = {n: raw_loop(gguf, n, args.tokens, 2) for n in args.clients}
    ours = aimass_run(gguf, tmp, args.clients, args.tokens, invariant=True)
    fast = aimass_run(gguf, tmp, args.clients, args.tokens, invariant=False)
    theirs = llama_server_run(gguf, tmp, args.clients, args.tokens)

    rows = []
    for n in args.clients:
        rows.append(row("raw batched llama_decode loop", n, raw[n], theirs[n], None))
        rows.append(row("llama-cpp-python server", n, theirs[n], theirs[n], raw[n]))
        rows.append(row("AI Mass (batch_invariant, default)", n, ours[n], theirs[n], raw[n]))
        rows.append(row("AI Mass (batch_invariant: false)", n, fast[n], theirs[n], raw[n]))
    header = [
        "contender", "clients", "tokens", "tokens/s", "× llama-cpp-python server",
        "× raw loop", "TTFT p50 ms", "TTFT p95 ms",
    ]  # fmt: skip
    lines = [
        f"## LLM serving: continuous batching (bench_llm.py, {stamp()})",
        "",
        f"Gemma 3 270M Q4_K_M, 2 threads, each client streams one greedy completion of "
        f"{args.tokens} tokens; all clients start together. {machine_note()}.",
        "",
        *table(header, rows),
        "",
        "Command: `" + command("bench_llm.py", args, ["--clients", "--tokens"]) + "`",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()

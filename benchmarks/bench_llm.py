"""LLM serving throughput: AI Mass vs llama-cpp-python (in process and its server) vs a raw loop.

Gemma 3 270M Q4_K_M, 2 threads, N concurrent clients each asking for ``--tokens`` tokens
(greedy, streamed, aiohttp in one process). The contenders:

* ``raw loop``: the ceiling for N > 1. In-process llama.cpp, all prompts prefilled, then one
  batched ``llama_decode`` per step over all sequences, argmax sampling. No HTTP, no processes.
* ``llama-cpp-python in process``: ``Llama(path, n_threads=2)(prompt, temperature=0)``, one
  sequence: the single-user ceiling the 1-client figure is held to (goal >= 0.95x).
* ``AI Mass``: ``aimass serve`` with the same model (continuous batching in a replica), by
  default and with ``options.batch_invariant: true``.
* ``llama-cpp-python server``: ``python -m llama_cpp.server`` (one sequence at a time).

The goals are measured interleaved: ``--rounds`` rounds, each running the baseline and then
AI Mass on the same prompts, seconds apart; the figure is the median of the rounds' ratios
(this shared machine drifts by 0.3x over minutes, baselines included). The other contenders
run once each afterwards.

Aggregate tokens/s = completion tokens of all clients / wall time from the first request
to the last answer. TTFT = time to the first streamed text chunk, per request.

CPU time per generated token (utime + stime from ``/proc``, or ``time.process_time``) is
reported for the 1-client runs: AI Mass's gateway, its replica and the HTTP client, against
llama-cpp-python in process. On 2 cores every millisecond the gateway and the client spend
per token is taken from llama.cpp's 2 threads. The AI Mass servers run with the server's own
reconcile interval (the test fixture's 0.5 s re-reads the registry four times as often).

Two more scenarios on AI Mass: a multi-turn chat over a ~1,000-token history (TTFT of turns
2..5, prefix cache on vs ``options.prefix_cache: false``; goal >= 3x faster), and one
request with ``n=4`` vs 4 separate requests sent together.

    .venv/bin/python benchmarks/bench_llm.py --clients 8 1 --tokens 64 --rounds 5
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
    cpu_seconds,
    descendants,
    machine_note,
    percentile,
    stamp,
    table,
)

from aimass.config import Settings
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


def prompts(n: int, offset: int = 0) -> list[str]:
    return [PROMPTS[(i + offset) % len(PROMPTS)] for i in range(n)]


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


def in_process(llm, prompt: str, tokens: int) -> dict[str, float]:
    """llama-cpp-python in process, one sequence: ``Llama(path, n_threads=2)(prompt,
    temperature=0)`` from a clean context."""
    llm.reset()  # else llama-cpp-python reuses the previous prompt's shared prefix
    started, cpu_started = time.perf_counter(), time.process_time()
    out = llm(prompt, max_tokens=tokens, temperature=0)
    wall = time.perf_counter() - started
    cpu = {"in process": time.process_time() - cpu_started}
    return {"tokens": out["usage"]["completion_tokens"], "wall": wall, "ttft": [], "cpu": cpu}


def _argmax(lc, model, index: int) -> int:
    logits = lc.llama_get_logits_ith(model.ctx, index)
    return int(np.ctypeslib.as_array(logits, shape=(model.n_vocab,)).argmax())


# ---- HTTP clients ------------------------------------------------------------------------


async def one_stream(session, url: str, model: str, prompt: str, tokens: int):
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
    first, pieces, usage, rest = None, 0, None, b""
    async with session.post(f"{url}/v1/completions", json=body) as resp:
        resp.raise_for_status()
        async for raw in resp.content.iter_any():
            *events, rest = (rest + raw.replace(b"\r\n", b"\n")).split(b"\n\n")
            for event in events:
                # JSON is parsed only where it decides something: until the first text, and
                # the usage chunk. The client shares the 2 cores with the server it measures,
                # and llama-cpp-python in process, the baseline, pays for no client at all.
                if first is None or b'"completion_tokens"' in event:
                    if not event.startswith(b"data: {"):
                        continue
                    data = json.loads(event[6:])
                    if data.get("usage"):
                        usage = data["usage"]["completion_tokens"]
                    if first is None and data.get("choices") and data["choices"][0].get("text"):
                        first = time.perf_counter() - started
                pieces += event.startswith(b"data: {")
    return (usage if usage is not None else pieces), first


def session(clients: int):
    """An aiohttp session (0.1 ms of client CPU per streamed token here, httpx 0.3 ms)."""
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients + 2),
        timeout=aiohttp.ClientTimeout(total=600),
    )


async def load(url: str, model: str, clients: int, tokens: int, offset: int = 0) -> dict:
    """``clients`` streams started together; prompts rotate with ``offset`` (the round)."""
    async with session(clients) as client:
        await one_stream(client, url, model, "Warm up", 4)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, url, model, p, tokens) for p in prompts(clients, offset))
        )
        wall = time.perf_counter() - started
    return {
        "tokens": sum(r[0] for r in results),
        "wall": wall,
        "ttft": [r[1] for r in results if r[1] is not None],
    }


def gemma(gguf: Path, name: str, slots: int, **options) -> dict:
    return {
        "name": name,
        "task": "text-generation",
        "runtime": "llamacpp",
        "source": str(gguf),
        "threads": 2,
        "limits": {"max_concurrent": slots, "max_queue": 64, "timeout_s": 600},
        "options": {"n_ctx_per_seq": 2048, **options},
    }


def interleaved(gguf: Path, tmp: Path, clients: list[int], tokens: int, rounds: int) -> dict:
    """AI Mass (default spec) and its baselines, taken in turns, ``rounds`` times.

    Each round measures, for every client count, the baseline (llama-cpp-python in process
    for 1 client, the raw loop for more) and right after it AI Mass on the same prompts.
    The machine drifts by 0.3x over minutes (other tenants); a baseline and its AI Mass run
    are seconds apart, so their ratio is what one round shows, and the median of the
    rounds' ratios is the figure."""
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_threads=2, verbose=False)
    spec = gemma(gguf, "gemma", max(clients))
    env = {"AIMASS_RECONCILE_INTERVAL_S": str(Settings().reconcile_interval_s)}
    out: dict[int, dict[str, list]] = {n: {"base": [], "ours": []} for n in clients}
    with run_server(tmp / "aimass-default", models=[spec], env=env) as server:
        pids = {"gateway": [server.proc.pid], "replica": descendants(server.proc.pid)}
        for rnd in range(rounds):
            for n in clients:
                if n == 1:
                    base = in_process(llm, PROMPTS[rnd % len(PROMPTS)], tokens)
                else:
                    base = raw_loop(gguf, n, tokens, 2)
                before = {name: cpu_seconds(p) for name, p in pids.items()}
                client_started = time.process_time()
                ours = asyncio.run(load(server, "gemma", n, tokens, offset=rnd))
                ours["cpu"] = {name: cpu_seconds(p) - before[name] for name, p in pids.items()}
                ours["cpu"]["client"] = time.process_time() - client_started
                out[n]["base"].append(base)
                out[n]["ours"].append(ours)
                print(f"round {rnd} clients {n}: {rate(ours) / rate(base):.2f}x", flush=True)
    del llm
    return out


def aimass_run(gguf: Path, tmp: Path, clients: list[int], tokens: int, invariant: bool):
    spec = gemma(gguf, "gemma", max(clients), batch_invariant=invariant)
    env = {"AIMASS_RECONCILE_INTERVAL_S": str(Settings().reconcile_interval_s)}
    with run_server(tmp / f"aimass-{invariant}", models=[spec], env=env) as server:
        return {n: asyncio.run(load(server, "gemma", n, tokens)) for n in clients}


# ---- multi-turn chat and n > 1 -----------------------------------------------------------

HISTORY = " ".join(f"Note {i}: item {i} costs {i * 3 + 1} dollars." for i in range(75))
QUESTIONS = [
    "Which item costs 10 dollars?",
    "And which one costs 31 dollars?",
    "Name a colour.",
    "What is 2 + 2?",
    "Say goodbye.",
]


async def chat_turns(client: httpx.AsyncClient, url: str, model: str) -> list[float]:
    """Five turns over a ~1,000-token history; returns each turn's TTFT (seconds)."""
    messages = [{"role": "user", "content": f"{HISTORY}\n{QUESTIONS[0]}"}]
    ttfts = []
    for turn in range(len(QUESTIONS)):
        body = {"model": model, "messages": messages, "max_tokens": 24, "temperature": 0}
        started = time.perf_counter()
        first, answer = None, []
        async with client.stream(
            "POST", f"{url}/v1/chat/completions", json={**body, "stream": True}
        ) as resp:
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                piece = choices[0].get("delta", {}).get("content")
                if piece:
                    first = first or time.perf_counter() - started
                    answer.append(piece)
        ttfts.append(first or time.perf_counter() - started)
        nxt = QUESTIONS[(turn + 1) % len(QUESTIONS)]
        messages += [
            {"role": "assistant", "content": "".join(answer)},
            {"role": "user", "content": nxt},
        ]
    return ttfts


async def n_vs_separate(client: httpx.AsyncClient, url: str, tokens: int) -> tuple[float, float]:
    """Wall time of one request with n=4 and of 4 separate requests sent together."""
    body = {"model": "gemma", "prompt": PROMPTS[0], "max_tokens": tokens, "temperature": 0.8}
    url = f"{url}/v1/completions"
    started = time.perf_counter()
    (await client.post(url, json={**body, "n": 4, "seed": 1})).raise_for_status()
    together = time.perf_counter() - started
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(client.post(url, json={**body, "seed": 1 + i}) for i in range(4))
    )
    for answer in answers:
        answer.raise_for_status()
    return together, time.perf_counter() - started


async def scenarios(url: str, tokens: int) -> dict:
    async with httpx.AsyncClient(timeout=600) as client:
        warm = {"model": "gemma", "prompt": "Warm up", "max_tokens": 4}
        (await client.post(f"{url}/v1/completions", json=warm)).raise_for_status()
        cached = await chat_turns(client, url, "gemma")
        plain = await chat_turns(client, url, "gemma-nocache")
        n4, separate = await n_vs_separate(client, url, tokens)
    return {"cached": cached, "plain": plain, "n4": n4, "separate": separate}


def scenario_run(gguf: Path, tmp: Path, tokens: int) -> dict:
    specs = [gemma(gguf, "gemma", 4), gemma(gguf, "gemma-nocache", 4, prefix_cache=False)]
    with run_server(tmp / "aimass-scenarios", models=specs) as server:
        return asyncio.run(scenarios(server, tokens))


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


def rate(r: dict) -> float:
    return r["tokens"] / r["wall"]


def per_token(r: dict, process: str) -> float:
    """Milliseconds of CPU time that ``process`` spent per generated token."""
    return r["cpu"][process] / r["tokens"] * 1000


def merged(runs: list[dict]) -> dict:
    """The rounds' runs as one: tokens, wall time, TTFTs and CPU times added up."""
    cpu: dict[str, float] = {}
    for r in runs:
        for name, seconds in r.get("cpu", {}).items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    return {
        "tokens": sum(r["tokens"] for r in runs),
        "wall": sum(r["wall"] for r in runs),
        "ttft": [t for r in runs for t in r["ttft"]],
        "cpu": cpu,
    }


def goal_rows(paired: dict, clients: list[int]) -> tuple[list[list], dict[int, float]]:
    """One row per client count: median rates and the median of the rounds' ratios."""
    rows, medians = [], {}
    for n in clients:
        base, ours = paired[n]["base"], paired[n]["ours"]
        ratios = [rate(o) / rate(b) for o, b in zip(ours, base, strict=True)]
        medians[n] = float(np.median(ratios))
        ttft = [t * 1000 for r in ours for t in r["ttft"]]
        rows.append([
            n, "llama-cpp-python in process" if n == 1 else "raw batched llama_decode loop",
            float(np.median([rate(b) for b in base])), float(np.median([rate(o) for o in ours])),
            medians[n], f"{min(ratios):.2f}-{max(ratios):.2f}", percentile(ttft, 0.5),
            ">= 0.95x" if n == 1 else ">= 0.9x",
        ])  # fmt: skip
    return rows, medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    from aimass.provision.builtin import gemma_spec

    tmp = Path(tempfile.mkdtemp(prefix="bench_llm_"))
    gguf = Path(gemma_spec(tmp / "home").source)
    paired = interleaved(gguf, tmp, args.clients, args.tokens, args.rounds)
    invariant = aimass_run(gguf, tmp, args.clients, args.tokens, invariant=True)
    theirs = llama_server_run(gguf, tmp, args.clients, args.tokens)
    extra = scenario_run(gguf, tmp, args.tokens)

    rows, medians = goal_rows(paired, args.clients)
    goals = table(
        [
            "clients", "baseline (same round)", "baseline tokens/s", "AI Mass tokens/s",
            "AI Mass × baseline (median)", "range over rounds", "AI Mass TTFT p50 ms", "goal",
        ],
        rows,
    )  # fmt: skip
    others = []
    for n in args.clients:
        ours = merged(paired[n]["ours"])
        for name, r in (
            ("llama-cpp-python server", theirs[n]),
            ("AI Mass (default, rounds above)", ours),
            ("AI Mass (batch_invariant: true)", invariant[n]),
        ):
            ttft = [t * 1000 for t in r["ttft"]]
            others.append([
                name, n, rate(r), rate(r) / rate(theirs[n]),
                percentile(ttft, 0.5), percentile(ttft, 0.95),
            ])  # fmt: skip
    side = table(
        ["contender", "clients", "tokens/s", "× llama-cpp-python server", "TTFT p50 ms",
         "TTFT p95 ms"],
        others,
    )  # fmt: skip
    summary = []
    if 1 in args.clients:
        ours, base = merged(paired[1]["ours"]), merged(paired[1]["base"])
        summary.append(
            f"- 1 client: AI Mass **{medians[1]:.2f}x** llama-cpp-python in process (median of "
            f"{args.rounds} rounds; goal >= 0.95x); batch_invariant: true "
            f"{rate(invariant[1]) / rate(base):.2f}x the rounds' in-process rate."
        )
        summary.append(
            "- CPU time per generated token, 1 client (AI Mass default, all rounds): "
            + ", ".join(f"{k} {per_token(ours, k):.2f} ms" for k in ours["cpu"])
            + f"; llama-cpp-python in process {per_token(base, 'in process'):.2f} ms."
        )
    many = max(args.clients)
    if many > 1:
        summary.append(
            f"- {many} clients: AI Mass **{medians[many]:.2f}x** the raw batched loop (median "
            f"of {args.rounds} rounds; goal >= 0.9x)."
        )
    cached, plain = extra["cached"][1:], extra["plain"][1:]
    speedup = float(np.mean(plain)) / float(np.mean(cached))
    summary.append(
        "- Multi-turn chat, ~1,000-token history, TTFT of turns 2..5: prefix cache "
        + ", ".join(f"{t * 1000:.0f}" for t in cached)
        + " ms; without (`prefix_cache: false`) "
        + ", ".join(f"{t * 1000:.0f}" for t in plain)
        + f" ms: **{speedup:.1f}x** faster (goal >= 3x)."
    )
    summary.append(
        f"- `n=4` ({args.tokens} tokens, temperature 0.8): one request {extra['n4']:.2f} s, "
        f"4 separate requests together {extra['separate']:.2f} s "
        f"({extra['separate'] / extra['n4']:.2f}x)."
    )
    lines = [
        f"## LLM serving: continuous batching (bench_llm.py, {stamp()})",
        "",
        f"Gemma 3 270M Q4_K_M, 2 threads, each client streams one greedy completion of "
        f"{args.tokens} tokens (aiohttp, one process); all clients "
        f"start together; AI Mass with 2,048 cells per slot and {many} slots. "
        f"{machine_note()}.",
        "",
        f"Against the baselines, interleaved: {args.rounds} rounds, each measuring the "
        "baseline and then AI Mass on the same prompts, seconds apart.",
        "",
        *goals,
        "",
        "Measured once each, after the rounds:",
        "",
        *side,
        "",
        *summary,
        "",
        "Command: `" + command("bench_llm.py", args, ["--clients", "--tokens", "--rounds"]) + "`",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()

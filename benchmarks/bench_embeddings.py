"""Embeddings throughput: AI Mass vs. the usual ways to serve all-MiniLM-L6-v2, in one run.

64 concurrent clients each send one short sentence per request (closed loop) for
``--duration`` seconds to each HTTP server in turn:

* ``aimass``       AI Mass serving the built-in int8 version (gated) — the claim;
* ``aimass-fp32``  AI Mass serving the fp32 version (same model as the baselines);
* ``aimass-old``   AI Mass serving the previous int8 recipe (``quantize_dynamic``, one
                   activation scale per batch), built here from the same fp32 export;
* ``fastapi``      (a) a plain FastAPI + sentence-transformers server encoding per request;
* ``ray``          (b) Ray Serve with ``@serve.batch`` around sentence-transformers;
* ``ceiling``      (c) in-process batched onnxruntime int8, tokenization included, no HTTP;
* ``ceiling-old``  the same loop on the previous int8 recipe.

Sentences/s and p50/p99 latency per system, then both int8 recipes' quality against the fp32
model (the gate's sentences) and how much a text's vector moves when it shares a batch of 32
mixed-length texts or is padded to 128 tokens; the tables and the exact command are appended
to benchmarks/RESULTS.md. Everything shares this machine's cores with the load generator
(aiohttp, one process), as a real deployment on one box would.

    .venv/bin/python benchmarks/bench_embeddings.py --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from common import append_section, cpu_seconds, descendants

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = (
    "the cat",
    "a young engineer",
    "my neighbour",
    "the new manager",
    "our team",
    "a tourist",
)
VERBS = ("reads", "writes", "builds", "fixes", "orders", "finds")
OBJECTS = (
    "a long report",
    "the train timetable",
    "fresh bread",
    "a small robot",
    "the bug",
    "a map",
)
ENDINGS = (
    "before lunch.",
    "every Monday.",
    "in the garden.",
    "with great care.",
    "at the station.",
)
SENTENCES = [
    f"{s.capitalize()} {v} {o} {e}"
    for s in SUBJECTS
    for v in VERBS
    for o in OBJECTS
    for e in ENDINGS
][::7]


# ---- load generation ----------------------------------------------------------------------

JSON = {"content-type": "application/json"}


async def _client(session, url: str, body, offset: int, stop: float, lat: list, errors: list):
    i = offset
    while time.perf_counter() < stop:
        payload = body(SENTENCES[i % len(SENTENCES)])
        i += 1
        start = time.perf_counter()
        try:
            # orjson, not aiohttp's json.dumps: the load generator shares the 2 cores
            async with session.post(url, data=orjson.dumps(payload), headers=JSON) as response:
                await response.read()
                ok = response.status == 200
        except Exception as exc:  # keep going; the error count shows in the table
            errors.append(repr(exc))
            continue
        if ok:
            lat.append(time.perf_counter() - start)
        else:
            errors.append(response.status)


async def _drive(url: str, body, clients: int, seconds: float) -> tuple[list, list]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        lat: list[float] = []
        errors: list = []
        stop = time.perf_counter() + seconds
        await asyncio.gather(
            *(_client(session, url, body, i * 13, stop, lat, errors) for i in range(clients))
        )
        return lat, errors


def load_test(url: str, body, clients: int, duration: float, warmup: float) -> dict:
    asyncio.run(_drive(url, body, clients, warmup))
    started = time.perf_counter()
    lat, errors = asyncio.run(_drive(url, body, clients, duration))
    elapsed = time.perf_counter() - started
    return _summary(len(lat), elapsed, lat, len(errors), errors[:3])


def _summary(count: int, elapsed: float, lat: list[float], errors: int, sample: list) -> dict:
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {
        "elapsed": elapsed,
        "sentences_per_s": count / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": errors,
        "error_sample": [str(e) for e in sample],
    }


# ---- servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(url: str, body: dict, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.post(url, json=body, timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def aimass_server(spec, work: Path, port: int) -> subprocess.Popen:
    import yaml

    config = work / f"aimass-{spec.version}.yaml"
    config.write_text(yaml.safe_dump({"models": [spec.model_dump(mode="json")]}))
    cmd = [
        sys.executable,
        "-m",
        "aimass",
        "serve",
        "--port",
        str(port),
        "--no-builtins",
        "--config",
        str(config),
        "--log-level",
        "warning",
    ]
    return start(cmd, work / f"aimass-{spec.version}.log", {"AIMASS_HOME": str(work / "home")})


def serve_fastapi(port: int, model_dir: str, threads: int) -> None:
    """(a): what a quick FastAPI wrapper looks like — one encode() call per request."""
    import torch
    import uvicorn
    from fastapi import Body, FastAPI
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    app = FastAPI()

    @app.post("/embed")
    def embed(body: dict = Body(...)) -> dict:
        return {"embedding": model.encode([body["input"]])[0].tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def serve_ray(port: int, model_dir: str, threads: int) -> None:
    """(b): Ray Serve's documented batching pattern around sentence-transformers."""
    import ray
    from ray import serve
    from starlette.requests import Request

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})

    @serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 1})
    class Embedder:
        def __init__(self) -> None:
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(threads)
            self.model = SentenceTransformer(model_dir, device="cpu")

        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
        async def encode(self, texts: list[str]) -> list[list[float]]:
            return [v.tolist() for v in self.model.encode(texts, batch_size=64)]

        async def __call__(self, request: Request) -> dict:
            body = await request.json()
            return {"embedding": await self.encode(body["input"])}

    serve.run(Embedder.bind(), route_prefix="/embed", blocking=False)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    serve.shutdown()


# ---- the ceiling ------------------------------------------------------------------------


def ceiling(int8_spec, duration: float, batch: int) -> dict:
    """(c): tokenize + onnxruntime int8 + pooling in this process, full batches, no HTTP."""
    runtime = loaded(int8_spec)
    ceiling_loop(runtime, 2, batch)  # warm-up
    return ceiling_loop(runtime, duration, batch)


def loaded(spec):
    from aimass.runtimes.text.runtime import TransformersRuntime

    runtime = TransformersRuntime(spec)
    runtime.load()
    return runtime


def ceiling_loop(runtime, duration: float, batch: int, offset: int = 0) -> dict:
    texts = np.empty(batch, dtype=object)
    lat: list[float] = []
    count, i = 0, offset
    started = time.perf_counter()
    while time.perf_counter() - started < duration:
        texts[:] = [SENTENCES[(i + k) % len(SENTENCES)] for k in range(batch)]
        t0 = time.perf_counter()
        runtime.infer({"text": texts})
        lat.append(time.perf_counter() - t0)
        count += batch
        i += batch
    return _summary(count, time.perf_counter() - started, lat, 0, [])


def paired(specs, work: Path, args) -> dict:
    """AI Mass (int8) and the in-process ceiling in turns, ``--rounds`` times, each for
    ``--duration`` seconds; the server stays up (idle) while the ceiling runs. This machine
    drifts by 0.15x over minutes, so the figure is the median of the rounds' ratios."""
    port = free_port()
    spec = specs[-1]
    proc = aimass_server(spec, work, port)
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    body = functools.partial(_openai_body, f"{spec.name}:{spec.version}")
    runtime = loaded(spec)
    rounds: list[dict] = []
    try:
        wait_until(url, body("warm up"), proc)
        ceiling_loop(runtime, args.warmup, args.batch)
        load_test(url, body, args.clients, args.warmup, 0.5)
        for rnd in range(args.rounds):
            order = ("ceiling", "aimass") if rnd % 2 == 0 else ("aimass", "ceiling")
            got = {}
            for name in order:
                pids = {"gateway": [proc.pid], "replica": descendants(proc.pid)}
                before = {k: cpu_seconds(p) for k, p in pids.items()}
                here = time.process_time()
                if name == "ceiling":
                    got[name] = ceiling_loop(runtime, args.duration, args.batch, rnd * 17)
                else:  # warm since the first round: no warm-up inside the CPU window
                    got[name] = load_test(url, body, args.clients, args.duration, 0.0)
                cpu = {k: cpu_seconds(p) - before[k] for k, p in pids.items()}
                cpu["client" if name == "aimass" else "in process"] = time.process_time() - here
                got[name]["cpu"] = cpu
            got["ratio"] = got["aimass"]["sentences_per_s"] / got["ceiling"]["sentences_per_s"]
            print(f"round {rnd}: {got['ratio']:.2f}x", flush=True)
            rounds.append(got)
    finally:
        stop(proc)
    return {"rounds": rounds}


def paired_table(result: dict) -> str:
    rounds = result["rounds"]
    ratios = [r["ratio"] for r in rounds]
    lines = [
        "| round | ceiling sentences/s | AI Mass sentences/s | AI Mass p50 / p99 ms | "
        "AI Mass × ceiling |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(rounds):
        ours = r["aimass"]
        lines.append(
            f"| {i} | {r['ceiling']['sentences_per_s']:.0f} | {ours['sentences_per_s']:.0f} | "
            f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f} | {r['ratio']:.2f}× |"
        )
    lines.append(
        f"\nAI Mass × the in-process int8 loop, median of {len(rounds)} rounds: "
        f"**{float(np.median(ratios)):.2f}×** (range {min(ratios):.2f}–{max(ratios):.2f}; "
        "goal ≥ 0.85×)."
    )
    lines.append("\n" + _cpu_line(rounds))
    return "\n".join(lines)


def _cpu_line(rounds: list[dict]) -> str:
    """CPU milliseconds per sentence of each process, over all rounds: what the gateway and
    the load generator add to the replica's work, against the in-process loop's."""

    def per_sentence(name: str, process: str) -> float:
        seconds = sum(r[name]["cpu"][process] for r in rounds)
        sentences = sum(r[name]["sentences_per_s"] * r[name]["elapsed"] for r in rounds)
        return seconds / sentences * 1000

    ours = ", ".join(
        f"{p} {per_sentence('aimass', p):.3f}" for p in ("replica", "gateway", "client")
    )
    return (
        f"CPU ms per sentence, all rounds: AI Mass {ours}; the in-process loop "
        f"{per_sentence('ceiling', 'in process'):.3f}."
    )


# ---- orchestration ----------------------------------------------------------------------


def run_http(name: str, proc: subprocess.Popen, url: str, body, args) -> dict:
    try:
        wait_until(url, body("warm up"), proc)
        return load_test(url, body, args.clients, args.duration, args.warmup)
    finally:
        stop(proc)


def _openai_body(model: str, text: str) -> dict:
    return {"model": model, "input": text}


def old_recipe_spec(specs, work: Path):
    """The int8 variant as earlier releases built it (``quantize_dynamic``: per-channel
    weights, one activation scale per batch tensor), served as version 3 of the same model."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from aimass.runtimes.text.export import export_onnx
    from aimass.runtimes.text.layout import read_layout

    path = work / "model_int8_old.onnx"
    if not path.exists():
        fp32 = export_onnx(read_layout(specs[0]), work / "model_fp32.onnx")
        quantize_dynamic(
            str(fp32),
            str(path),
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
        )
    old = specs[-1].model_copy(
        update={
            "version": 3,
            "options": {**specs[-1].options, "onnx": str(path)},
            "description": "int8 ONNX, previous recipe (one activation scale per batch)",
        }
    )
    return old.model_copy(update={"sha256": old.digests()})


def quality(specs, work: Path) -> str:
    """Both int8 recipes against fp32 (the gate's sentences), and batch/padding invariance."""
    from aimass.provision import optimize
    from aimass.runtimes.text.backends import OnnxBackend, TorchBackend
    from aimass.runtimes.text.layout import read_layout
    from aimass.runtimes.text.runtime import TextPipeline

    layout = read_layout(specs[0])
    sets = (list(optimize.GATE_SENTENCES), list(optimize.SHORT_INPUTS))
    reference = TextPipeline(layout, TorchBackend(layout, 2), None)
    expected = [reference.run_texts(texts)["embedding"] for texts in sets]
    mixed = sets[0][:24] + sets[1]  # 32 texts of 3 to 60 tokens
    lines = [
        "| int8 recipe | mean / min cosine to fp32 (38 sentences) | one- and two-word inputs "
        "| alone vs in a batch of 32: min cosine, max abs diff | alone vs padded to 128 |",
        "|---|---|---|---|---|",
    ]
    recipes = (
        ("per row (this release)", specs[-1]),
        ("per batch (previous)", old_recipe_spec(specs, work)),
    )
    for label, spec in recipes:
        pipeline = TextPipeline(layout, OnnxBackend(Path(spec.options["onnx"]), 2), None)
        cos = [
            optimize.cosines(e, pipeline.run_texts(t)["embedding"])
            for e, t in zip(expected, sets, strict=True)
        ]
        alone = np.concatenate([pipeline.run_texts([t])["embedding"] for t in mixed])
        batched = pipeline.run_texts(mixed)["embedding"]
        padded = np.concatenate([_padded(pipeline, t, 128) for t in mixed])
        lines.append(
            f"| {label} | {cos[0].mean():.4f} / {cos[0].min():.4f} "
            f"| {cos[1].mean():.4f} / {cos[1].min():.4f} "
            f"| {_moved(alone, batched)} | {_moved(alone, padded)} |"
        )
    return "\n".join(lines)


def _padded(pipeline, text: str, width: int) -> np.ndarray:
    """One text's embedding with its row padded to ``width`` tokens (mask 0 there)."""
    from aimass.runtimes.text.batching import pad_rows
    from aimass.runtimes.text.pooling import normalize, pool

    rows = pipeline.tokenizer.encode_texts([text], [False])
    feeds = pad_rows(rows.ids, rows.type_ids, pipeline.tokenizer.pad_id)
    extra = width - feeds["input_ids"].shape[1]
    pad_id = pipeline.tokenizer.pad_id
    feeds = {
        name: np.pad(value, ((0, 0), (0, extra)), constant_values=pad_id * (name == "input_ids"))
        for name, value in feeds.items()
    }
    return normalize(pool(pipeline.backend.run(feeds), feeds["attention_mask"], "mean"))


def _moved(alone: np.ndarray, other: np.ndarray) -> str:
    from aimass.provision import optimize

    return f"{optimize.cosines(alone, other).min():.6f}, {np.abs(alone - other).max():.1e}"


def run_system(name: str, specs, model_dir: str, work: Path, args) -> dict:
    port = free_port()
    if name in ("aimass", "aimass-fp32", "aimass-old"):
        spec = {"aimass": specs[-1], "aimass-fp32": specs[0]}.get(name) or old_recipe_spec(
            specs, work
        )
        proc = aimass_server(spec, work, port)
        body = functools.partial(_openai_body, f"{spec.name}:{spec.version}")
        return run_http(name, proc, f"http://127.0.0.1:{port}/v1/embeddings", body, args)
    if name in ("fastapi", "ray"):
        cmd = [sys.executable, __file__, f"--serve-{name}", str(port), model_dir, str(args.threads)]
        proc = start(cmd, work / f"{name}.log")
        return run_http(name, proc, f"http://127.0.0.1:{port}/embed", lambda s: {"input": s}, args)
    spec = specs[-1] if name == "ceiling" else old_recipe_spec(specs, work)
    return ceiling(spec, args.duration, args.batch)


def table(results: dict[str, dict], goals: dict[str, str]) -> str:
    lines = [
        "| system | sentences/s | p50 ms | p99 ms | errors | AI Mass × this |",
        "|---|---|---|---|---|---|",
    ]
    ours = results.get("aimass", {}).get("sentences_per_s")
    for name, r in results.items():
        if "failed" in r:
            lines.append(f"| {name} | could not run: {r['failed']} | | | | |")
            continue
        ratio = f"{ours / r['sentences_per_s']:.2f}×" if ours and name != "aimass" else ""
        if goals.get(name) and ratio:
            ratio += f" (goal {goals[name]})"
        lines.append(
            f"| {name} | {r['sentences_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['errors']} | {ratio} |"
        )
    return "\n".join(lines)


def recipe_speed(results: dict[str, dict]) -> str:
    """This release's int8 recipe over the previous one, in process and over HTTP."""
    parts = []
    for new, old, where in (
        ("ceiling", "ceiling-old", "in process"),
        ("aimass", "aimass-old", "over HTTP"),
    ):
        a, b = (results.get(n, {}).get("sentences_per_s") for n in (new, old))
        if a and b:
            parts.append(f"{a / b:.2f}× {where} ({new} / {old})")
    return f"Per-row recipe vs previous recipe, speed: {'; '.join(parts)}.\n\n" if parts else ""


def append_results(text: str, command: str, args, specs, load_before: float) -> None:
    load_after = os.getloadavg()[0]
    header = "## Embeddings: all-MiniLM-L6-v2, 64 clients × one sentence per request"
    body = (
        f"\n{header}\n\nCommand: `{command}`  \n"
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"{args.clients} clients, {args.duration:.0f} s per system after {args.warmup:.0f} s "
        f"warm-up; 1-minute load average {load_before:.1f} before the run, {load_after:.1f} "
        f"after (other work shares this machine; a load above 2 depresses every row). "
        f"AI Mass serves version "
        f"{specs[-1].version} ({specs[-1].description}). Latency of `ceiling` is per batch of "
        f"{args.batch}.\n\n{text}\n"
    )
    append_section(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per system")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="batch size of the ceiling")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of baselines")
    parser.add_argument(
        "--systems", default="aimass,aimass-fp32,aimass-old,fastapi,ray,ceiling,ceiling-old"
    )
    parser.add_argument("--home", type=Path, default=None, help="AIMASS_HOME for the model")
    parser.add_argument(
        "--rounds", type=int, default=0,
        help="measure AI Mass against the ceiling interleaved, this many rounds of --duration "
        "seconds each (instead of --systems)",
    )  # fmt: skip
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--serve-fastapi", nargs=3, metavar=("PORT", "DIR", "THREADS"))
    parser.add_argument("--serve-ray", nargs=3, metavar=("PORT", "DIR", "THREADS"))
    args = parser.parse_args()
    if args.serve_fastapi:
        return serve_fastapi(
            int(args.serve_fastapi[0]), args.serve_fastapi[1], int(args.serve_fastapi[2])
        )
    if args.serve_ray:
        return serve_ray(int(args.serve_ray[0]), args.serve_ray[1], int(args.serve_ray[2]))

    from aimass.config import Settings
    from aimass.provision.builtin import minilm_specs

    specs = minilm_specs(args.home or Settings().home)
    if len(specs) < 2:
        sys.exit("the int8 variant did not pass the quality gate here; nothing to benchmark")
    results: dict[str, dict] = {}
    load_before = os.getloadavg()[0]
    if args.rounds:
        with tempfile.TemporaryDirectory() as tmp:
            text = paired_table(paired(specs, Path(tmp), args))
            print("measuring quality and invariance of both int8 recipes ...", flush=True)
            text += "\n\n" + quality(specs, Path(tmp))
        print(text)
        if not args.no_append:
            append_results(text, "python " + " ".join(sys.argv), args, specs, load_before)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems.split(","):
            print(f"running {name} ...", flush=True)
            try:
                results[name] = run_system(name, specs, specs[0].source, Path(tmp), args)
            except Exception as exc:
                log = Path(tmp) / f"{name}.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                results[name] = {"failed": f"{type(exc).__name__}: {exc}"}
                print(f"{name} failed: {exc}\n{tail}", flush=True)
            print(json.dumps(results[name]), flush=True)
        print("measuring quality and invariance of both int8 recipes ...", flush=True)
        measured = quality(specs, Path(tmp))
    goals = {"ceiling": "≥ 0.85×", "fastapi": "≥ 10×", "ray": "≥ 2×"}
    text = table(results, goals) + "\n\n" + recipe_speed(results) + measured
    print(text)
    if not args.no_append:
        command = "python " + " ".join(sys.argv)
        append_results(text, command, args, specs, load_before)


if __name__ == "__main__":
    main()

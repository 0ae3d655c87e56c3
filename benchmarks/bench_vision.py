"""Image classification over HTTP vs. an in-process batched onnxruntime loop, in one run.

The built-in EfficientNet-Lite0 classifier (exported once into a temporary AIMASS_HOME, or
``--home``) on scikit-image's sample photos, encoded as JPEG:

* ``aimass``     ``--clients`` closed-loop clients, each sending one image per request to
                 ``POST /v1/images/classifications`` (JSON, a base64 data URL; top 5 classes
                 back), one replica with ``--threads`` intra-op threads, dynamic batching;
* ``in-process`` the same model in this process, no HTTP: batches of ``--clients`` images
                 decoded, cropped, resized and normalized (the runtime's own code) and run
                 by onnxruntime with the same thread count, back to back.

The two alternate in ``--phase``-second phases until ``--duration`` is spent, so machine
noise hits both alike. The claim: images/s(aimass) >= 0.85 x images/s(in-process).

    .venv/bin/python benchmarks/bench_vision.py [--duration 60] [--phase 5] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from common import (
    RawClient,
    append_section,
    command,
    machine_note,
    pcts,
    raw_request,
    run_async,
    serve,
    server_stats,
    stamp,
    table,
)
from PIL import Image

from aimass.provision import builtin
from aimass.runtimes import create_runtime

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "hubble_deep_field",
          "immunohistochemistry", "colorwheel", "camera")  # fmt: skip
MODEL = builtin.EFFICIENTNET


class Tally:
    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self.errors = 0
        self.failures: dict[int, bytes] = {}
        self.latencies: list[float] = []

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def photos() -> list[bytes]:
    from skimage import data

    out = []
    for name in PHOTOS:
        buf = io.BytesIO()
        Image.fromarray(getattr(data, name)()).convert("RGB").save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def spec(home: Path, threads: int, clients: int):
    (classifier,) = builtin.efficientnet_classifier(home)
    batching = classifier.spec.batching.model_copy(update={"max_batch_size": clients})
    return classifier.spec.model_copy(update={"threads": threads, "batching": batching})


def in_process_phase(runtime, images: list[bytes], batch: int, seconds: float, t: Tally):
    """Batches of ``batch`` encoded images through the runtime, back to back."""
    end = time.monotonic() + seconds
    started, i = time.monotonic(), 0
    while time.monotonic() < end:
        rows = np.empty(batch, dtype=object)
        rows[:] = [images[(i + k) % len(images)] for k in range(batch)]
        i += batch
        begin = time.perf_counter()
        runtime.infer({"image": rows})
        t.latencies.append((time.perf_counter() - begin) * 1e3)
        t.images += batch
    t.seconds += time.monotonic() - started


async def http_phase(clients: list[RawClient], requests: list[bytes], seconds: float, t: Tally):
    end = time.monotonic() + seconds

    async def loop(n: int, client: RawClient) -> None:
        i = n
        while time.monotonic() < end:
            start = time.perf_counter()
            status, body = await client.send(requests[i % len(requests)])
            i += 1
            if status == 200:
                t.images += 1
                t.latencies.append((time.perf_counter() - start) * 1e3)
            else:
                t.errors += 1
                t.failures.setdefault(status, body[:200])

    started = time.monotonic()
    await asyncio.gather(*(loop(n, c) for n, c in enumerate(clients)))
    t.seconds += time.monotonic() - started


def http_requests(server, images: list[bytes]) -> list[bytes]:
    out = []
    for data in images:
        url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
        body = orjson.dumps({"model": MODEL, "images": [{"image": url}], "top_k": 5})
        headers = {"content-type": "application/json"}
        out.append(raw_request(server, "/v1/images/classifications", body, headers))
    return out


async def measure(server, runtime, images, args) -> dict[str, Tally]:
    reqs = http_requests(server, images)
    clients = [await RawClient(server.port).connect() for _ in range(args.clients)]
    await http_phase(clients, reqs, 2.0, Tally())  # warm-up
    in_process_phase(runtime, images, args.clients, 2.0, Tally())
    tallies = {"aimass": Tally(), "in-process": Tally()}
    rounds = max(1, round(args.duration / (2 * args.phase)))
    for r in range(rounds):
        order = ("aimass", "in-process") if r % 2 == 0 else ("in-process", "aimass")
        for name in order:
            if name == "aimass":
                await http_phase(clients, reqs, args.phase, tallies[name])
            else:
                in_process_phase(runtime, images, args.clients, args.phase, tallies[name])
    for c in clients:
        c.close()
    return tallies


def report(tallies: dict[str, Tally], stats: dict, images: list[bytes], args) -> str:
    base = tallies["in-process"].rate
    rows = []
    for name, t in tallies.items():
        p50, _, p99 = pcts(t.latencies)
        unit = "ms/request" if name == "aimass" else f"ms/batch of {args.clients}"
        latency = f"{p50:.0f} / {p99:.0f} {unit}"
        rows.append([name, f"{t.rate:.1f}", f"{t.rate / base:.2f}×", latency, t.errors])
    ratio = tallies["aimass"].rate / base
    verdict = "meets" if ratio >= 0.85 else "MISSES"
    cmd = command("bench_vision.py", args, ["--duration", "--phase", "--clients", "--threads"])
    size = sum(len(i) for i in images) / len(images) / 1024
    return "\n".join([
        f"## Image classification, EfficientNet-Lite0, {args.clients} clients ({stamp()})",
        "",
        f"`{cmd}` — {machine_note()}.",
        f"{len(images)} scikit-image photos as JPEG (mean {size:.0f} KiB, 300-1000 px a side), "
        f"centre-cropped and resized to 224x224. `aimass`: {args.clients} closed-loop clients, "
        "one image per request as a JSON data URL to `/v1/images/classifications` (top 5), "
        f"1 replica with {args.threads} intra-op threads, max_batch_size {args.clients}, "
        f"max_delay_ms 2; mean rows per batch {stats.get('rows_per_batch', 0):.1f}. "
        "`in-process`: the same runtime code in the benchmark's process (decode + crop + "
        f"resize + normalize + onnxruntime, {args.threads} threads) on batches of "
        f"{args.clients}, no HTTP. Alternating {args.phase:g} s phases.",
        "",
        *table(["system", "images/s", "vs in-process", "p50 / p99", "errors"], rows),
        "",
        f"HTTP vs in-process: {ratio:.2f}× ({verdict} the ≥ 0.85× goal).",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="Seconds of measurement.")
    parser.add_argument("--phase", type=float, default=5, help="Seconds per phase.")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="Intra-op threads.")
    parser.add_argument("--home", type=Path, help="AIMASS_HOME holding the exported model.")
    parser.add_argument("--no-append", action="store_true", help="Print only.")
    args = parser.parse_args()
    images = photos()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = spec(args.home or tmp / "home", args.threads, args.clients)
        runtime = create_runtime(model)
        runtime.load()
        with serve(tmp, [model.model_dump(mode="json")]) as server:
            tallies = run_async(measure(server, runtime, images, args))
            stats = server_stats(server, MODEL)
    for status, body in tallies["aimass"].failures.items():
        print(f"HTTP {status}: {body.decode(errors='replace')}", file=sys.stderr)
    text = report(tallies, stats, images, args)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()

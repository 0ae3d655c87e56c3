"""OCR throughput: AI Mass's /v1/ocr at 4 clients vs. RapidOCR in process, in one run.

Rendered pages (English and Chinese lines, PIL and a CJK font) are read:

* ``in-process``  one ``RapidOCR()`` engine reading the PNG bytes in a loop (onnxruntime uses
  both cores; the engine does not batch, so a loop is what the library does best here);
* ``aimass``      the built-in ``pp-ocrv4`` (one replica, 2 threads), 4 clients each posting a
  page as a multipart upload in a closed loop.

Both run in turn, ``--rounds`` times, ``--duration`` seconds each (the machine is shared, so
the baseline is measured between the server's rounds); the best round of each is compared.
Every answer's text is checked against the in-process text of the same page. The table and
the exact command are appended to benchmarks/RESULTS.md.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_ocr.py --duration 40 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from common import append_section, command, machine_note, serve, stamp, table

from aimass.provision.builtin import OCR, ocr_builtins
from tests.factories_vision import render

PAGES = [
    ["Invoice 2024-117: total due 1,250.00 USD", "Pay by bank transfer within 30 days."],
    ["人工智能大模型即服务", "图像识别与多模态交互"],
    ["Meeting notes, March 3", "Decisions: ship the OCR API", "Owner: platform team"],
    ["订单编号 88231 已发货", "预计三天内送达"],
]


def in_process(engine, pages: list[bytes], duration: float) -> tuple[float, list[str]]:
    """Images/s of a loop over ``pages``; and each page's text (the reference)."""
    texts = ["\n".join(t for _, t, _ in (engine(page)[0] or [])) for page in pages]
    done, started = 0, time.monotonic()
    while time.monotonic() - started < duration:
        engine(pages[done % len(pages)])
        done += 1
    return done / (time.monotonic() - started), texts


async def served(url: str, pages: list[bytes], texts: list[str], clients: int, duration: float):
    """Images/s and median latency of ``clients`` closed-loop clients; every text checked."""
    latencies: list[float] = []
    mismatches = 0
    stop = time.monotonic() + duration

    async def client(offset: int, http: httpx.AsyncClient) -> None:
        nonlocal mismatches
        i = offset
        while time.monotonic() < stop:
            files = {"file": ("page.png", pages[i % len(pages)], "image/png")}
            sent = time.monotonic()
            r = await http.post(f"{url}/v1/ocr", files=files, data={"model": OCR})
            latencies.append(time.monotonic() - sent)
            r.raise_for_status()
            mismatches += r.json()["text"] != texts[i % len(pages)]
            i += 1

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=300) as http:
        await asyncio.gather(*(client(c, http) for c in range(clients)))
    took = time.monotonic() - started
    return len(latencies) / took, sorted(latencies)[len(latencies) // 2], mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    from rapidocr_onnxruntime import RapidOCR

    pages = [render(lines) for lines in PAGES]
    engine = RapidOCR()
    base, ours, p50s, mismatches = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        spec = ocr_builtins(Path(tmp))[0].spec
        with serve(Path(tmp), [spec.model_dump(mode="json")]) as url:
            for _ in range(args.rounds):
                rate, texts = in_process(engine, pages, args.duration)
                base.append(rate)
                rate, p50, bad = asyncio.run(served(url, pages, texts, args.clients, args.duration))
                ours.append(rate)
                p50s.append(p50)
                mismatches += bad
                print(f"in-process {base[-1]:.2f} img/s, aimass {rate:.2f} img/s, p50 {p50:.2f} s")
    ratio = max(ours) / max(base)
    rows = [
        ["in-process RapidOCR (loop)", f"{max(base):.2f}", "-", "-"],
        [f"aimass /v1/ocr, {args.clients} clients", f"{max(ours):.2f}", f"{min(p50s):.2f}",
         f"{ratio:.2f}x"],
    ]  # fmt: skip
    flags = ["--duration", "--rounds", "--clients"]
    append_section(
        "\n".join(
            [
                f"## OCR throughput (bench_ocr.py, {stamp()})",
                "",
                f"`flock /tmp/bench.lock {command('bench_ocr.py', args, flags)}`",
                "",
                f"Built-in `{OCR}` (RapidOCR PP-OCRv4, one replica, 2 threads) on {len(pages)} "
                "rendered English and Chinese pages; best of "
                f"{args.rounds} interleaved rounds of {args.duration:g} s each. Texts differing "
                f"from the in-process reading of the same page: {mismatches}.",
                "",
                *table(["system", "images/s", "p50 latency (s)", "vs in-process"], rows),
                "",
                machine_note(),
            ]
        )
    )


if __name__ == "__main__":
    main()
